"""The proxy's one redaction function, and the secrets the composition root gives it."""

from __future__ import annotations

from app import create_app
from app.api import BACKEND_KEY
from backends.proxy.redaction import MASK, Secrets


def test_every_secret_is_masked_in_keys_and_values_at_any_depth():
    secrets = Secrets(["sk-up", "sk-up-longer", "", None, "admin-1"])
    value = {"a sk-up key": ["x sk-up-longer y", {"deep": "admin-1admin-1"}, 7, None, True]}
    assert secrets.redacted(value) == {f"a {MASK} key": [f"x {MASK} y", {"deep": MASK * 2}, 7, None, True]}
    assert secrets.redacted("nothing secret") == "nothing secret"


def test_no_secrets_leave_values_as_they_are():
    value = {"k": ["v"]}
    assert Secrets([]).redacted(value) is value


def test_the_proxy_masks_the_upstream_key_the_gateway_keys_and_the_admin_key():
    settings = {"upstream_api_key": "sk-up", "api_keys": "gw-1,gw-2", "admin_key": "admin-1"}
    app = create_app({"backend": "proxy", "upstream_url": "http://127.0.0.1:9", **settings})
    assert set(app.app.extensions[BACKEND_KEY].upstream.secrets.values) == {"sk-up", "gw-1", "gw-2", "admin-1"}
