"""The echo backend's semantics, and the events a message streams as."""

import dataclasses
import json

import pytest

from backends import tokens
from backends.catalogue import UNLISTED_MODEL, ModelDefaults
from backends.echo import echo_message
from backends.events import events_from_message, message_from_events
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


@pytest.mark.parametrize("thinking", [{"type": "adaptive"}, {"type": "enabled", "budget_tokens": 1024}])
def test_max_tokens_0_answers_nothing_not_even_thinking(thinking):
    # max_tokens 0 warms the cache: no output token, so no block at all (was an empty, signed thinking block).
    message = echo_message(message_body("hi", max_tokens=0, thinking=thinking))
    assert message["content"] == [] and message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 0 and "output_tokens_details" not in message["usage"]


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


# ---------------------------------------------------------------------------------------- today's API

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_a_structured_output_format_gives_json_valid_against_its_schema():
    for fields in (
        {"output_config": {"format": {"type": "json_schema", "schema": PERSON}}},
        {"output_format": {"type": "json_schema", "schema": PERSON}},  # the structured-outputs beta's spelling
    ):
        message = echo_message(message_body("Ada Lovelace", **fields))
        assert is_valid(PERSON, json.loads(text_of(message)))
        assert message["stop_reason"] == "end_turn"


def test_a_strict_tool_gets_an_input_valid_against_its_schema():
    tool = {"name": "add_person", "description": "Add", "input_schema": PERSON, "strict": True}
    (block,) = echo_message(message_body("Ada", tools=[tool], tool_choice={"type": "any"}))["content"]
    assert block["type"] == "tool_use" and is_valid(PERSON, block["input"])
    assert block["caller"] == {"type": "direct"}


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ({"type": "bash_20250124", "name": "bash"}, {"command": "echo 'list files'"}),
        ({"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}, {"command": "view", "path": "/"}),
        ({"type": "text_editor_20250124", "name": "str_replace_editor"}, {"command": "view", "path": "/"}),
        ({"type": "memory_20250818", "name": "memory"}, {"command": "view", "path": "/memories"}),
        ({"type": "computer_20250124", "name": "computer"}, {"action": "screenshot"}),
    ],
)
def test_a_built_in_client_tool_gets_its_documented_first_input(tool, expected):
    for choice in ({"type": "any"}, {"type": "tool", "name": tool["name"]}):
        (block,) = echo_message(message_body("list files", tools=[tool], tool_choice=choice))["content"]
        assert block["type"] == "tool_use" and block["name"] == tool["name"] and block["input"] == expected


WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}
WEB_FETCH = {"type": "web_fetch_20250910", "name": "web_fetch"}


def test_web_search_is_a_server_tool_call_its_result_and_the_text():
    message = echo_message(message_body("cats on the moon", tools=[WEB_SEARCH], tool_choice={"type": "any"}))
    use, result, answer = message["content"]
    assert use["type"] == "server_tool_use" and use["name"] == "web_search" and use["id"].startswith("srvtoolu_")
    assert use["input"] == {"query": "cats on the moon"}
    assert result["type"] == "web_search_tool_result" and result["tool_use_id"] == use["id"]
    assert [hit["url"] for hit in result["content"]] == [
        "https://example.com/cats-on-the-moon/1",
        "https://example.com/cats-on-the-moon/2",
    ]
    assert answer == {"type": "text", "text": "cats on the moon"}
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}
    again = echo_message(message_body("cats on the moon", tools=[WEB_SEARCH], tool_choice={"type": "any"}))
    assert again["content"][1]["content"] == result["content"]  # derived from the input alone


def test_web_search_past_max_uses_is_the_api_error_result_and_not_counted():
    body = message_body("more", tools=[{**WEB_SEARCH, "max_uses": 1}], tool_choice={"type": "any"})
    body["messages"] = [
        {"role": "user", "content": "first"},
        {
            "role": "assistant",
            "content": [{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}}],
        },
        {"role": "user", "content": "more"},
    ]
    message = echo_message(body)
    assert message["content"][1]["content"] == {
        "type": "web_search_tool_result_error",
        "error_code": "max_uses_exceeded",
    }
    assert message["usage"]["server_tool_use"]["web_search_requests"] == 0


def test_web_fetch_fetches_the_url_in_the_text_or_says_there_is_none():
    fetched = echo_message(message_body("read https://example.org/a", tools=[WEB_FETCH], tool_choice={"type": "any"}))
    use, result, _ = fetched["content"]
    assert use["input"] == {"url": "https://example.org/a"}
    assert result["content"]["type"] == "web_fetch_result" and result["content"]["url"] == "https://example.org/a"
    assert fetched["usage"]["server_tool_use"] == {"web_search_requests": 0, "web_fetch_requests": 1}
    unfetched = echo_message(message_body("read it", tools=[WEB_FETCH], tool_choice={"type": "any"}))
    assert unfetched["content"][1]["content"]["error_code"] == "url_not_in_prior_context"


@pytest.mark.parametrize(
    ("version", "name", "result"),
    [
        ("code_execution_20250522", "code_execution", "code_execution_tool_result"),
        ("code_execution_20250825", "bash_code_execution", "bash_code_execution_tool_result"),
        ("code_execution_20260120", "bash_code_execution", "bash_code_execution_tool_result"),
    ],
)
def test_code_execution_prints_the_text_in_a_container(version, name, result):
    tool = {"type": version, "name": "code_execution"}
    message = echo_message(message_body("hello", tools=[tool], tool_choice={"type": "any"}))
    use, output, _ = message["content"]
    assert use["name"] == name and output["type"] == result
    assert output["content"]["stdout"] == "hello\n" and output["content"]["return_code"] == 0
    assert message["container"]["id"].startswith("container_")


def test_tool_search_references_the_deferred_tools_that_match():
    deferred = {"name": "get_weather", "description": "Weather now", "input_schema": {"type": "object"}}
    tools = [
        {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
        {**deferred, "defer_loading": True},
        {**deferred, "name": "get_stock", "description": "Prices", "defer_loading": True},
    ]
    message = echo_message(message_body("what is the weather", tools=tools, tool_choice={"type": "any"}))
    result = message["content"][1]
    assert result["type"] == "tool_search_tool_result"
    assert result["content"]["tool_references"] == [{"type": "tool_reference", "tool_name": "get_weather"}]


def test_a_turn_of_several_server_tools_pauses_between_them():
    body = message_body("see https://example.org", tools=[WEB_SEARCH, WEB_FETCH], tool_choice={"type": "any"})
    first = echo_message(body)
    assert [block["type"] for block in first["content"]] == ["server_tool_use", "web_search_tool_result"]
    assert first["stop_reason"] == "pause_turn"
    body["messages"].append({"role": "assistant", "content": first["content"]})  # sent back as it is: go on
    second = echo_message(body)
    assert [block["type"] for block in second["content"]] == ["server_tool_use", "web_fetch_tool_result", "text"]
    assert second["stop_reason"] == "end_turn"


def test_a_citable_document_is_quoted_with_its_location():
    document = {
        "type": "document",
        "title": "Colours",
        "citations": {"enabled": True},
        "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green. The sky is blue."},
    }
    content = [{**document, "citations": {"enabled": False}}, document, {"type": "text", "text": "Colours?"}]
    message = echo_message(message_body(content))
    quote = message["content"][-1]
    assert quote["text"] == "The grass is green."
    assert quote["citations"] == [
        {
            "type": "char_location",
            "cited_text": "The grass is green.",
            "document_index": 1,
            "document_title": "Colours",
            "start_char_index": 0,
            "end_char_index": 19,
        }
    ]
    streamed = message_from_events(events_from_message(message))
    assert streamed["content"][-1]["citations"] == quote["citations"]


def test_thinking_tokens_are_counted_even_when_not_shown():
    for display in ("summarized", "omitted"):
        body = message_body("hi", max_tokens=2000, thinking={"type": "adaptive", "display": display})
        message = echo_message(body)
        thinking_tokens = message["usage"]["output_tokens_details"]["thinking_tokens"]
        assert thinking_tokens > 0 and message["usage"]["output_tokens"] == thinking_tokens + 1
        assert (message["content"][0]["thinking"] == "") == (display == "omitted")


def test_the_context_window_cuts_the_reply_with_its_own_stop_reason():
    message = echo_message(message_body("one two three four", max_tokens=100), window_room=2)
    assert text_of(message) == "one two" and message["stop_reason"] == "model_context_window_exceeded"
    assert echo_message(message_body("one two", max_tokens=100), window_room=50)["stop_reason"] == "end_turn"


def test_usage_reports_speed_and_inference_geo():
    usage = echo_message(message_body("hi", speed="fast", inference_geo="us"))["usage"]
    assert usage["speed"] == "fast" and usage["inference_geo"] == "us"


def test_under_auto_the_echo_calls_a_tool_the_user_names_and_answers_text_otherwise():
    asked = message_body("What is the weather in Paris?", tools=[weather_tool()])
    (call,) = echo_message(asked)["content"]
    assert call["type"] == "tool_use" and call["name"] == "get_weather"
    assert echo_message(message_body("Hello there", tools=[weather_tool()]))["content"][0]["type"] == "text"
    assert echo_message({**asked, "tool_choice": {"type": "none"}})["content"][0]["type"] == "text"
    answered = {
        **asked,
        "messages": [
            *asked["messages"],
            {"role": "assistant", "content": [{**call, "caller": None}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "weather: sun"}],
            },
        ],
    }
    assert echo_message(answered)["stop_reason"] == "end_turn"  # tool results are answered in text: the loop ends


def test_a_model_that_thinks_by_default_thinks_when_the_request_says_nothing():
    defaults = ModelDefaults(thinking={"type": "adaptive", "display": "omitted"}, display="omitted", effort="medium")
    thinks = dataclasses.replace(UNLISTED_MODEL, defaults=defaults)
    thinking, answer = echo_message(message_body("hi"), model=thinks)["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "" and thinking["signature"]
    assert answer == {"type": "text", "text": "hi"}
    summarized = echo_message(message_body("hi", thinking={"type": "adaptive", "display": "summarized"}), model=thinks)
    assert "at medium effort" in summarized["content"][0]["thinking"]
    between = echo_message(message_body("hi", thinking={"type": "between_tools"}), model=thinks)
    assert [block["type"] for block in between["content"]] == ["text"]  # no tool results in this turn to think on
