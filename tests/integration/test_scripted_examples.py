"""The scripts in examples/, each run with the official SDK through the pytest plugin's `understudy` fixture."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import pytest

from builders import weather_tool

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = "claude-sonnet-4-5"


def client_for(server, **options):
    return anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key, **options)


def ask(client, text="hi", **fields):
    return client.messages.create(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": text}], **fields)


def test_sdk_retries_a_529_then_succeeds(understudy):
    server = understudy(EXAMPLES / "retry_on_529.yaml", workers=2)
    with client_for(server, max_retries=2) as client:
        message = ask(client)
    assert message.content[0].text == "Answered on attempt 2."
    assert [entry["status"] for entry in server.journal()] == [529, 200]
    assert {entry["rule"] for entry in server.journal()} == {"overloaded-then-ok"}


def test_sdk_without_retries_sees_the_overloaded_error(understudy):
    server = understudy(EXAMPLES / "retry_on_529.yaml")
    with client_for(server, max_retries=0) as client, pytest.raises(anthropic.OverloadedError) as error:
        ask(client)
    assert error.value.type == "overloaded_error" and error.value.request_id.startswith("req_")


def test_two_step_tool_agent_loop(understudy):
    server = understudy(EXAMPLES / "tool_agent_loop.yaml")
    with client_for(server, max_retries=0) as client:
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        first = client.messages.create(model=MODEL, max_tokens=200, tools=[weather_tool()], messages=messages)
        assert first.stop_reason == "tool_use"
        tool_use = next(block for block in first.content if block.type == "tool_use")
        assert tool_use.input == {"city": "Paris", "unit": "celsius"}
        messages += [
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "22C, sunny"}]},
        ]
        second = client.messages.create(model=MODEL, max_tokens=200, tools=[weather_tool()], messages=messages)
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == f"The tool said: [tool_result {tool_use.id}: 22C, sunny]"
    bodies = [entry["body"] for entry in server.journal(path="/v1/messages")]
    assert len(bodies) == 2 and bodies[1]["messages"][2]["content"][0]["tool_use_id"] == tool_use.id


def test_unmatched_request_names_the_closest_rule(understudy):
    server = understudy(EXAMPLES / "tool_agent_loop.yaml")
    with client_for(server, max_retries=0) as client, pytest.raises(anthropic.BadRequestError) as error:
        ask(client, "weather in Paris", tools=[weather_tool(name="other_tool")])
    assert "Closest: rule 'ask-for-weather'" in error.value.api_message
    assert "no tool named 'get_weather' is offered" in error.value.api_message


def test_slow_stream_cancelled_by_the_client(understudy):
    server = understudy(EXAMPLES / "slow_stream.yaml")
    with client_for(server, max_retries=0) as client:
        started = time.monotonic()
        with client.messages.stream(
            model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "go"}]
        ) as stream:
            first = next(iter(stream.text_stream))
        waited = time.monotonic() - started
        assert first == "This answer"
        assert 0.4 < waited < 5  # the first token's half-second delay, and no waiting for the rest
        assert ask(client, "still serving?").content[0].text.startswith("This answer")  # one slow reply, non-streamed


def test_rate_limit_retry_after_is_honoured(understudy):
    server = understudy(EXAMPLES / "rate_limit.yaml")
    started = time.monotonic()
    with client_for(server, max_retries=1) as client:
        message = ask(client)
    assert message.content[0].text == "Worth the wait."
    assert time.monotonic() - started >= 0.9  # the SDK waited the second retry-after asked for
    first = server.journal()[0]
    assert first["status"] == 429


def test_rate_limit_headers_reach_the_sdk(understudy):
    server = understudy(EXAMPLES / "rate_limit.yaml")
    with client_for(server, max_retries=0) as client, pytest.raises(anthropic.RateLimitError) as error:
        ask(client)
    assert error.value.response.headers["retry-after"] == "1"
    assert error.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_mid_stream_error_raises_in_the_sdk(understudy):
    server = understudy(EXAMPLES / "mid_stream_error.yaml")
    received = []
    with (
        client_for(server, max_retries=0) as client,
        pytest.raises(anthropic.APIStatusError) as error,
        client.messages.stream(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "go"}]) as stream,
    ):
        for text in stream.text_stream:
            received.append(text)
    assert error.value.type == "overloaded_error"
    assert received and "".join(received) != "This stream will not get far before the server gives up on it."


def test_sequences_and_journal_hold_across_workers(understudy):
    replies = [{"text": f"reply {n}"} for n in range(1, 31)]
    server = understudy([{"name": "numbered", "replies": replies, "when_exhausted": "fail"}], workers=3)
    with client_for(server, max_retries=0) as client:
        with ThreadPoolExecutor(max_workers=6) as pool:
            texts = list(pool.map(lambda n: ask(client, f"call {n}").content[0].text, range(30)))
        assert sorted(texts, key=lambda text: int(text.split()[1])) == [f"reply {n}" for n in range(1, 31)]
        journal = server.journal(path="/v1/messages")
        assert len(journal) == 30 and {entry["status"] for entry in journal} == {200}
        assert sorted(entry["body"]["messages"][0]["content"] for entry in journal) == sorted(
            f"call {n}" for n in range(30)
        )
        assert all(entry["headers"]["authorization"] == "[masked]" for entry in journal)  # the 2.x SDK sends Bearer
        server.reset()
        assert server.journal() == [] and ask(client).content[0].text == "reply 1"
