"""The echo backend's semantics, and the events a message streams as."""

from backends import tokens
from backends.echo import echo_message
from backends.events import events_from_message
from backends.schema_example import is_valid
from backends.wire import compact_json

from builders import message_body, weather_tool


def text_of(message):
    return "".join(block["text"] for block in message["content"] if block["type"] == "text")


def test_echoes_the_last_user_message_and_the_model():
    body = message_body(model="any-model-at-all")
    body["messages"] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": [{"type": "text", "text": "look at"}, {"type": "image", "source": {}}]},
    ]
    message = echo_message(body)
    assert text_of(message) == "look at\n[image]"
    assert message["model"] == "any-model-at-all"
    assert message["id"].startswith("msg_") and message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == tokens.count("look at\n[image]")
    assert message["usage"]["input_tokens"] == tokens.count_input(body)


def test_max_tokens_cuts_the_text():
    message = echo_message(message_body("one two three four five", max_tokens=3))
    assert text_of(message) == "one two three"
    assert message["stop_reason"] == "max_tokens" and message["usage"]["output_tokens"] == 3


def test_earliest_stop_sequence_wins_and_is_left_out():
    message = echo_message(message_body("alpha STOP beta END gamma", stop_sequences=["END", "STOP"]))
    assert text_of(message) == "alpha "
    assert message["stop_reason"] == "stop_sequence" and message["stop_sequence"] == "STOP"


def test_max_tokens_before_the_stop_sequence_wins():
    message = echo_message(message_body("a b c d STOP e", stop_sequences=["STOP"], max_tokens=2))
    assert text_of(message) == "a b" and message["stop_reason"] == "max_tokens"
    assert message["stop_sequence"] is None


def test_forced_tool_use_validates_against_the_schema():
    tool = weather_tool()
    for choice in ({"type": "any"}, {"type": "tool", "name": "get_weather"}):
        message = echo_message(message_body("Paris?", tools=[tool], tool_choice=choice))
        (block,) = message["content"]
        assert block["type"] == "tool_use" and block["name"] == "get_weather"
        assert block["id"].startswith("toolu_")
        assert is_valid(tool["input_schema"], block["input"])
        assert message["stop_reason"] == "tool_use"


def test_auto_tool_choice_answers_with_text():
    message = echo_message(message_body("hi", tools=[weather_tool()], tool_choice={"type": "auto"}))
    assert [block["type"] for block in message["content"]] == ["text"]


def test_thinking_comes_first_and_is_signed():
    message = echo_message(message_body("hi", max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024}))
    thinking, text = message["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] and thinking["signature"]
    assert text == {"type": "text", "text": "hi"}
    again = echo_message(message_body("hi", max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024}))
    assert again["content"][0] == thinking  # deterministic


def test_stream_events_follow_the_api_sequence():
    message = echo_message(message_body("Hello there, how are you today?", tools=[weather_tool()]))
    events = list(events_from_message(message))
    kinds = [event["type"] for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert events[0]["message"]["content"] == [] and events[0]["message"]["stop_reason"] is None
    assert "ping" in kinds
    deltas = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert deltas == text_of(message)
    assert events[-2]["usage"]["output_tokens"] == message["usage"]["output_tokens"]
    assert events[-2]["delta"]["stop_reason"] == "end_turn"


def test_tool_use_streams_as_json_fragments():
    message = echo_message(message_body("Paris", tools=[weather_tool()], tool_choice={"type": "any"}))
    events = list(events_from_message(message))
    start = next(e for e in events if e["type"] == "content_block_start")
    assert start["content_block"]["input"] == {}
    fragments = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert len(fragments) > 1
    assert "".join(fragments) == compact_json(message["content"][0]["input"])
