"""Key checks (app/api/auth.py): every comparison of a key is constant-time, and none stops at the first match.

Timing cannot be measured reliably in a test, so these tests check the
mechanism instead: each key a request presents is compared with
hmac.compare_digest against every configured key, whether or not one of
them matches, and the admin key the same way.
"""

from __future__ import annotations

import hmac
from types import SimpleNamespace

import pytest

from app.api import auth
from backends.wire import SETTINGS_KEY, ApiError

KEYS = frozenset({"key-one", "key-two", "key-three", "key-four"})


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every hmac.compare_digest call app.api.auth makes, recorded (and still made)."""
    made: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def recording(given: bytes, known: bytes) -> bool:
        made.append((given, known))
        return compare(given, known)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    return made


def request_with(**settings: object) -> SimpleNamespace:
    return SimpleNamespace(scope={SETTINGS_KEY: SimpleNamespace(**settings)})


@pytest.mark.parametrize("presented", ["key-one", "key-two", "key-four", "wrong", "key-on", "key-one-and-more"])
def test_every_configured_key_is_compared_whatever_matches(comparisons, presented):
    accepted = auth.key_is_accepted(presented, KEYS)

    assert accepted == (presented in KEYS)
    assert sorted(known for _, known in comparisons) == sorted(key.encode() for key in KEYS)
    assert {given for given, _ in comparisons} == {presented.encode()}


def test_no_key_configured_accepts_any_non_empty_key_without_comparing(comparisons):
    assert auth.key_is_accepted("anything", frozenset())
    assert not auth.key_is_accepted("", frozenset())
    assert not auth.key_is_accepted("", KEYS)
    assert comparisons == []


@pytest.mark.parametrize("check", [auth.check_api_key, auth.check_bearer_token])
def test_both_schemes_compare_in_constant_time(comparisons, check):
    request = request_with(api_keys=KEYS)
    assert check("key-three", request=request) == {"sub": "client"}
    with pytest.raises(ApiError) as refused:
        check("key-thre", request=request)
    assert refused.value.status == 401 and refused.value.message == "invalid x-api-key"
    assert len(comparisons) == 2 * len(KEYS)


def test_the_admin_key_is_compared_in_constant_time(comparisons):
    request = request_with(admin_key="the-admin-key")
    assert auth.check_admin_key("the-admin-key", request=request) == {"sub": "admin"}
    with pytest.raises(ApiError) as refused:
        auth.check_admin_key("the-admin-kez", request=request)
    assert refused.value.status == 401
    assert comparisons == [(b"the-admin-key", b"the-admin-key"), (b"the-admin-kez", b"the-admin-key")]


def test_no_admin_key_refuses_every_key(comparisons):
    with pytest.raises(ApiError):
        auth.check_admin_key("anything", request=request_with(admin_key=None))
