"""The rule the inspector's copy button makes of a journal entry: a rule the scripted backend loads, and that answers
the entry's request again as it was answered."""

from __future__ import annotations

import pytest

from backends.catalogue import DEFAULT_FILE, ModelCatalogue
from backends.events import events_from_message
from backends.exchange import MessageRequest
from backends.scripted import ScriptedBackend
from backends.scripted.replay import rule_for_entry, rules_yaml
from backends.scripted.script import parse_script
from backends.wire import ApiError

from builders import message_body, state_store

MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 7},
}


def entry(**fields):
    return {
        "id": 7,
        "method": "POST",
        "path": "/v1/messages",
        "status": 200,
        "body": message_body("Weather?"),
        **fields,
    }


def loaded(rule):
    """The rule as the scripted backend loads it, from the YAML the copy button gives."""
    return parse_script(rules_yaml([rule]), "copied.yaml")


def test_a_message_s_rule_matches_the_request_and_gives_the_message_back():
    rule = rule_for_entry(entry(response=MESSAGE))
    script = loaded(rule)
    assert [compiled.name for compiled in script.rules] == ["journal-7"]
    assert rule["match"] == {"model": "claude-sonnet-4-5", "user_text": "Weather?", "turn": 1}
    assert rule["reply"]["content"][1] == MESSAGE["content"][1] and rule["reply"]["stop_reason"] == "tool_use"


def test_a_stream_s_rule_keeps_its_pace_and_its_error_event():
    events = list(events_from_message(MESSAGE))
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    timed = [{"at_ms": 100.0 + 20 * number, "event": event} for number, event in enumerate([*events[:4], error])]
    rule = rule_for_entry(entry(streamed=True, events=timed))
    loaded(rule)
    assert rule["reply"]["stream"]["first_token_ms"] == 160.0
    assert rule["reply"]["fault"] == {
        "kind": "error_event",
        "after_events": 4,
        "error": {"status": 529, "type": "overloaded_error", "message": "Overloaded"},
    }


def test_an_error_s_rule_answers_with_the_error(tmp_path):
    refused = {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}, "request_id": "req_1"}
    rule = rule_for_entry(entry(status=429, response=refused))
    assert rule["reply"] == {"error": {"status": 429, "type": "rate_limit_error", "message": "Slow down"}}
    path = tmp_path / "copied.yaml"
    path.write_text(rules_yaml([rule]))
    store = state_store(tmp_path / "state.sqlite3")
    backend = ScriptedBackend(ModelCatalogue.from_file(DEFAULT_FILE), script_path=path, store=store)
    with pytest.raises(ApiError) as raised:
        backend.create_message(MessageRequest(message_body("Weather?")))
    assert (raised.value.status, raised.value.message) == (429, "Slow down")
    store.close()


def test_a_bedrock_door_s_entry_is_matched_by_the_model_its_path_named():
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    rule = rule_for_entry(entry(body=body, model="claude-sonnet-4-5", response=MESSAGE))
    assert rule["match"]["model"] == "claude-sonnet-4-5"
    loaded(rule)


@pytest.mark.parametrize(
    "unreplayable",
    [
        entry(body={"truncated": True, "bytes": 10, "start": "{"}),
        entry(path="/v1/models", method="GET", body=None, response={"data": []}),
        entry(streamed=True, events=[{"at_ms": 1.0, "event": {"type": "message_start"}}], events_left_out=40),
    ],
)
def test_an_entry_no_rule_can_replay_says_why(unreplayable):
    with pytest.raises(ValueError, match="its"):
        rule_for_entry(unreplayable)
