"""Faults and reloads of the scripted backend, as the official SDK and an operator meet them."""

from __future__ import annotations

import signal
import time

import anthropic
import pytest

MODEL = "claude-sonnet-4-5"


def ask(server, *, stream=False, **options):
    messages = [{"role": "user", "content": "hi"}]
    with anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key, max_retries=0, **options) as client:
        if not stream:
            return client.messages.create(model=MODEL, max_tokens=100, messages=messages)
        with client.messages.stream(model=MODEL, max_tokens=100, messages=messages) as events:
            return events.get_final_message()


def test_stall_longer_than_the_client_timeout(understudy):
    server = understudy([{"reply": {"text": "late", "fault": {"kind": "stall", "seconds": 3}}}])
    with pytest.raises(anthropic.APITimeoutError):
        ask(server, timeout=0.5)
    assert ask(server, timeout=10).content[0].text == "late"


@pytest.mark.parametrize(
    ("stream", "raised"),
    [
        (False, anthropic.APIConnectionError),  # the SDK wraps a cut response
        (True, anthropic.APIConnectionError),  # a stream cut mid-way too, since anthropic 2.17
    ],
)
def test_disconnect_cuts_the_connection(understudy, stream, raised):
    server = understudy([{"reply": {"text": "a b c d e f", "fault": {"kind": "disconnect", "after_events": 4}}}])
    with pytest.raises(raised, match=r"peer closed connection|Connection error|disconnected"):
        ask(server, stream=stream)


@pytest.mark.parametrize(
    ("status", "error_code", "raised"),
    [
        (400, "organization_url_fetch_disabled", anthropic.OrganizationURLFetchDisabledError),
        (503, "storage_not_ready", anthropic.StorageNotReadyError),
        # The SDK picks a code's class by the status and the code together: any other pairing is the status's class.
        (400, "storage_not_ready", anthropic.BadRequestError),
    ],
)
def test_a_scripted_error_code_raises_the_sdks_own_class(understudy, status, error_code, raised):
    error = {"status": status, "message": "Not now", "details": {"error_code": error_code}}
    server = understudy([{"reply": {"error": error}}])
    with pytest.raises(raised) as caught:
        ask(server)
    assert type(caught.value) is raised
    assert caught.value.error_code == error_code and caught.value.api_message == "Not now"


def wait_for(condition, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_edits_and_sighup_reload_and_a_broken_script_keeps_the_old_one(understudy, tmp_path):
    """After any reload (an edit, SIGHUP), every answer, whichever worker gives it, is the last good script's."""
    script = tmp_path / "live.yaml"
    script.write_text("- reply: {text: first version}\n")
    server = understudy(script, workers=2)
    assert all(ask(server).content[0].text == "first version" for _ in range(6))  # both workers have answered

    script.write_text("- reply: {text: second version}\n")
    assert wait_for(lambda: ask(server).content[0].text == "second version")
    assert all(ask(server).content[0].text == "second version" for _ in range(6))

    script.write_text("- reply: {text: [broken\n")
    server.process.process.send_signal(signal.SIGHUP)  # gunicorn restarts its workers onto the file
    assert wait_for(lambda: "serving the last script that loaded" in server.process.output)
    assert all(ask(server).content[0].text == "second version" for _ in range(6))
    assert f"{script}:2: not valid YAML" in server.process.output


def test_a_script_cannot_make_a_refused_request_succeed(understudy):
    server = understudy([{"reply": {"text": "scripted"}}])
    with anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key, max_retries=0) as client:
        with pytest.raises(anthropic.BadRequestError, match='tool_choice: type "tool" and "any" are not supported'):
            client.messages.create(
                model="claude-opus-5-5",
                max_tokens=100,
                tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
                tool_choice={"type": "any"},
                messages=[{"role": "user", "content": "hi"}],
            )
        with pytest.raises(anthropic.BadRequestError, match="temperature: Extra inputs are not permitted"):
            client.messages.create(
                model="claude-sonnet-5-5",
                max_tokens=100,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"temperature": 0.5},
            )
        # A request the rules accept gets the script's reply as written.
        reply = client.messages.create(
            model="claude-opus-5-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.content[0].text == "scripted"
    assert [entry["status"] for entry in server.journal()] == [400, 400, 200]
