"""The official Python SDK against a real server: it must not tell Understudy from the API."""

from __future__ import annotations

import anthropic
import pytest

from backends.schema_example import is_valid

from builders import weather_tool

MODEL = "claude-sonnet-4-5"


def ask(sdk, text, **fields):
    fields.setdefault("max_tokens", 200)
    return sdk.messages.create(model=MODEL, messages=[{"role": "user", "content": text}], **fields)


def test_create(sdk):
    message = ask(sdk, "Hello, Claude")
    assert isinstance(message, anthropic.types.Message)
    assert message.content[0].text == "Hello, Claude"
    assert message.model == MODEL and message.role == "assistant" and message.stop_reason == "end_turn"
    assert message.id.startswith("msg_") and message._request_id.startswith("req_")
    assert message.usage.input_tokens == 3 and message.usage.output_tokens == 3  # Hello , Claude


def test_stream_text_and_final_message(sdk):
    prompt = "Streaming, one small piece at a time, is how the real API answers long replies."
    with sdk.messages.stream(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": prompt}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == prompt
    assert final.content[0].text == prompt and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == ask(sdk, prompt).usage.output_tokens


def test_raw_stream_events_in_order(sdk):
    events = list(ask(sdk, "one two three four five six seven", stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert [e.index for e in events if e.type == "content_block_start"] == [0]
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens == 7


def test_stop_sequences(sdk):
    message = ask(sdk, "count: one two three four", stop_sequences=["three", "two"])
    assert message.content[0].text == "count: one "
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "two"


def test_max_tokens(sdk):
    message = ask(sdk, "one two three four five", max_tokens=2)
    assert message.content[0].text == "one two"
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_tool_use(sdk, choice):
    tool = weather_tool()
    message = ask(sdk, "Weather in Paris?", tools=[tool], tool_choice=choice)
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.id.startswith("toolu_")
    assert is_valid(tool["input_schema"], block.input)
    assert message.stop_reason == "tool_use"


def test_tool_use_streams_parsed_input(sdk):
    tool = weather_tool()
    with sdk.messages.stream(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[tool],
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and is_valid(tool["input_schema"], final.content[0].input)


def test_tool_round_trip(sdk):
    tool = weather_tool()
    first = ask(sdk, "Weather in Paris?", tools=[tool], tool_choice={"type": "any"})
    second = sdk.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[tool],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": first.content[0].id, "content": "22C"}],
            },
        ],
    )
    assert second.content[0].text == f"[tool_result {first.content[0].id}: 22C]"


def test_thinking(sdk):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    message = ask(sdk, "Think first", max_tokens=2048, thinking=thinking)
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].signature
    with sdk.messages.stream(
        model=MODEL, max_tokens=2048, thinking=thinking, messages=[{"role": "user", "content": "Think first"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].thinking == message.content[0].thinking
    assert final.content[0].signature == message.content[0].signature


def test_count_tokens(sdk):
    counted = sdk.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hello, Claude"}])
    assert counted.input_tokens == ask(sdk, "Hello, Claude").usage.input_tokens


def test_models_pagination(sdk):
    everything = list(sdk.models.list(limit=3))  # the SDK follows has_more / last_id page by page
    first_page = sdk.models.list(limit=3)
    assert len(first_page.data) == 3 and first_page.has_more
    assert len(everything) == len({model.id for model in everything}) > 3
    assert everything[:3] == first_page.data
    assert sdk.models.retrieve(everything[-1].id).id == everything[-1].id


def test_bad_request_error(sdk):
    with pytest.raises(anthropic.BadRequestError) as error:
        ask(sdk, "hi", max_tokens=-1)  # 0 warms the cache (test_sdk_beta.py)
    assert error.value.status_code == 400 and error.value.type == "invalid_request_error"
    assert error.value.request_id.startswith("req_")
    assert error.value.body["request_id"] == error.value.request_id
    assert "max_tokens" in error.value.api_message


def test_authentication_error(server):
    with (
        anthropic.Anthropic(base_url=server.base_url, api_key="wrong", max_retries=0) as sdk,
        pytest.raises(anthropic.AuthenticationError) as error,
    ):
        ask(sdk, "hi")
    assert error.value.status_code == 401 and error.value.request_id.startswith("req_")


def test_not_found_error(sdk):
    with pytest.raises(anthropic.NotFoundError) as error:
        sdk.models.retrieve("claude-does-not-exist")
    assert error.value.type == "not_found_error" and error.value.request_id.startswith("req_")


def test_request_too_large_error(sdk):
    with pytest.raises(anthropic.ContentTooLargeError) as error:
        ask(sdk, "x" * (33 * 1024 * 1024))
    assert error.value.status_code == 413 and error.value.type == "request_too_large"
    assert error.value.request_id.startswith("req_")
