"""A full disk under the state file, on a real 2 MB file system (a tmpfs; root only, else skipped).

What needs no write carries on (a plain scripted reply, count_tokens, the
models, reading the journal); a sequence that cannot advance is a 503
api_error that says why; /health is a 503 `degraded`, so a load balancer
sends traffic elsewhere; clearing the journal or a reset works on the full
disk; and when room returns the server recovers by itself. The portable
half, SQLite's page limit, is in tests/unit/test_state.py.
"""

from __future__ import annotations

import http.client
import json

import anthropic
import pytest

from small_disk import fill

MODEL = "claude-sonnet-4-5"
SCRIPT = """
rules:
  - name: sequence
    match: {user_text: {contains: next}}
    replies: [{text: one}, {text: two}]
  - name: plain
    match: {user_text: {contains: plain}}
    reply: {text: plain reply}
"""


@pytest.fixture
def server(understudy, small_disk):
    """A scripted server of two workers whose state file is on the small disk, every response checked."""
    env = {"UNDERSTUDY_STATE_FILE": str(small_disk / "state.sqlite3"), "UNDERSTUDY_VALIDATE_RESPONSES": "true"}
    running = understudy(SCRIPT, workers=2, env=env)
    running.sdk = anthropic.Anthropic(base_url=running.base_url, api_key=running.api_key, max_retries=0, timeout=30)
    yield running
    running.sdk.close()


def ask(server, text: str) -> str:
    reply = server.sdk.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": text}])
    return reply.content[0].text


def call(server, method: str, path: str) -> tuple[int, dict | None]:
    connection = http.client.HTTPConnection("127.0.0.1", server.process.port, timeout=30)
    connection.request(method, path, headers={"x-understudy-admin-key": server.admin_key})
    response = connection.getresponse()
    status, body = response.status, response.read()
    connection.close()
    return status, json.loads(body) if body else None


def refused_once_full(server) -> anthropic.APIStatusError:
    """Sequence requests, each journaled with a 2 KB body, until one is refused; the ones before all succeed."""
    for _ in range(2_000):
        try:
            assert ask(server, "next " + "x" * 2000) in ("one", "two")
        except anthropic.APIStatusError as refused:
            return refused
    raise AssertionError("the disk never filled")


def assert_full(server, refused: anthropic.APIStatusError) -> None:
    assert refused.status_code == 503 and refused.body["error"]["type"] == "api_error", refused.body
    assert "The state store is full (database or disk is full)" in refused.body["error"]["message"]
    assert call(server, "GET", "/health") == (503, {"status": "degraded", "backend": "scripted", "store": "full"})
    assert ask(server, "plain") == "plain reply"  # needs no write; its journal entry is lost, not its reply
    assert server.sdk.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "a b"}]).input_tokens
    assert server.sdk.models.list().data
    assert call(server, "GET", "/_understudy/requests?limit=1")[0] == 200


def test_when_the_journal_fills_the_disk_clearing_it_or_a_reset_makes_room(server):
    assert_full(server, refused_once_full(server))
    assert call(server, "DELETE", "/_understudy/requests") == (204, None)
    assert call(server, "GET", "/health") == (200, {"status": "ok", "backend": "scripted", "store": "ok"})
    assert ask(server, "next") in ("one", "two") and ask(server, "plain") == "plain reply"

    assert_full(server, refused_once_full(server))  # and again: the reserve was made again
    assert call(server, "POST", "/_understudy/reset") == (204, None)
    assert ask(server, "next") == "one" and call(server, "GET", "/health")[0] == 200
    assert [entry["rule"] for entry in server.journal()] == ["sequence"]


def test_when_something_else_fills_the_disk_the_server_recovers_as_room_returns(server, small_disk):
    assert ask(server, "next") == "one"
    filler = fill(small_disk)
    assert_full(server, refused_once_full(server))
    filler.unlink()
    assert ask(server, "next") in ("one", "two")  # nothing done but room given back
    assert call(server, "GET", "/health") == (200, {"status": "ok", "backend": "scripted", "store": "ok"})
    assert server.journal()[-1]["rule"] == "sequence"
