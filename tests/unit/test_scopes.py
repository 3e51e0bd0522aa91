"""Scopes in one server: the header or a configured API key picks the scope, and each scope's state is its own."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from app import create_app
from app.settings import ConfigError, load_settings

ADMIN = {"x-understudy-admin-key": "admin"}
SEQUENCE = ["one", "two", *(f"reply {number}" for number in range(3, 41))]
SCRIPT = f"- name: counted\n  replies: [{', '.join(f'{{text: {word}}}' for word in SEQUENCE)}]\n"


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """One server for the module: each test keeps to scopes of its own (`run`), as test runs sharing it would."""
    tmp_path = tmp_path_factory.mktemp("scopes")
    script = tmp_path / "script.yaml"
    script.write_text(SCRIPT)
    app = create_app(
        {
            "backend": "scripted",
            "script": script,
            "admin_key": "admin",
            "api_keys": "k,team-a-key",
            "key_scopes": "team-a-key=team-a",
            "state_file": tmp_path / "state.sqlite3",
        }
    )
    with app.test_client() as client:
        yield client


@pytest.fixture
def run() -> Callable[[str], str]:
    """Names scopes of this test's own: run("a") is another scope in every test."""
    token = secrets.token_hex(4)
    return lambda name: f"{name}-{token}"


def ask(client, scope: str | None = None, key: str = "k"):
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    if scope is not None:
        headers["x-understudy-scope"] = scope
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    return client.post("/v1/messages", headers=headers, json=body)


def text(response) -> str:
    return response.json()["content"][0]["text"]


def journal(client, scope: str | None = None) -> list[dict]:
    headers = {**ADMIN, **({"x-understudy-scope": scope} if scope else {})}
    return client.get("/_understudy/requests", headers=headers).json()["data"]


def test_each_scope_has_its_own_sequences_and_journal(scripted, run):
    answers = [text(ask(scripted, run("a"))), text(ask(scripted, run("a"))), text(ask(scripted, run("b")))]
    assert answers == ["one", "two", "one"]
    assert [entry["headers"]["x-understudy-scope"] for entry in journal(scripted, run("a"))] == [run("a")] * 2
    assert len(journal(scripted, run("b"))) == 1


def test_the_admin_routes_reset_one_scope(scripted, run):
    ask(scripted, run("a"))
    ask(scripted, run("b"))
    reset = scripted.post("/_understudy/reset", headers={**ADMIN, "x-understudy-scope": run("a")})
    assert reset.status_code == 204
    assert journal(scripted, run("a")) == [] and len(journal(scripted, run("b"))) == 1
    assert text(ask(scripted, run("a"))) == "one" and text(ask(scripted, run("b"))) == "two"


def test_a_key_configured_to_a_scope_works_in_it_whatever_the_header_says(scripted, run):
    """team-a-key is configured to the scope team-a: whatever scope its requests name, they count in team-a."""
    before = text(ask(scripted, key="team-a-key"))
    after = text(ask(scripted, run("elsewhere"), key="team-a-key"))
    assert SEQUENCE.index(after) == SEQUENCE.index(before) + 1  # team-a's sequence moved on
    assert journal(scripted, run("elsewhere")) == []
    assert text(ask(scripted, run("elsewhere"))) == "one"


@pytest.mark.parametrize("scope", ["../default", "a}b", "{x}", "a:b", "-x", "x" * 65, "a b"])
def test_a_scope_name_that_could_reach_elsewhere_is_a_400_and_touches_no_state(scripted, run, scope):
    """A bad name is the spec's 400 and moves no sequence: not the default scope's, where its request is journaled
    (only this test uses the default scope in this module)."""
    before = text(ask(scripted))
    response = ask(scripted, scope)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    assert "x-understudy-scope" in response.json()["error"]["message"]
    assert SEQUENCE.index(text(ask(scripted))) == SEQUENCE.index(before) + 1


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"UNDERSTUDY_STATE_URL": "redis://host:port/0"}, "UNDERSTUDY_STATE_URL: must be redis://HOST:PORT/DB"),
        ({"UNDERSTUDY_STATE_URL": "redis://host:6379/zero"}, "UNDERSTUDY_STATE_URL: must be redis://HOST:PORT/DB"),
        ({"UNDERSTUDY_STATE_URL": "postgres://host/db"}, "UNDERSTUDY_STATE_URL: must be redis://HOST:PORT/DB"),
        ({"UNDERSTUDY_STATE_PREFIX": "a{b}"}, "UNDERSTUDY_STATE_PREFIX: must be 1-64 letters"),
        ({"UNDERSTUDY_KEY_SCOPES": "key=../x"}, "UNDERSTUDY_KEY_SCOPES: must be KEY=SCOPE pairs"),
        ({"UNDERSTUDY_KEY_SCOPES": "key"}, "UNDERSTUDY_KEY_SCOPES: must be KEY=SCOPE pairs"),
    ],
)
def test_a_malformed_state_setting_stops_start_up_with_one_line_naming_it(environ, named):
    with pytest.raises(ConfigError) as error:
        load_settings(environ)
    assert str(error.value).startswith(named) and "\n" not in str(error.value)


def test_a_password_in_the_state_url_is_not_repeated_in_a_mistake():
    with pytest.raises(ConfigError) as error:
        load_settings({"UNDERSTUDY_STATE_URL": "redis://:hunter2@host:port/0"})
    assert "hunter2" not in str(error.value)
