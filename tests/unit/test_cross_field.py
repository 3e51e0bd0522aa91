"""Rules that relate one request field to another."""

import pytest

from app.spec import cross_field
from backends.wire import ApiError

from builders import message_body, weather_tool

TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
TOOL_RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}


def conversation(*messages):
    return {**message_body(), "messages": list(messages)}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (conversation({"role": "assistant", "content": "hi"}), 'first message must use the "user" role'),
        (message_body(tool_choice={"type": "any"}), "tool_choice may only be specified while providing tools"),
        (message_body(tools=[weather_tool()], tool_choice={"type": "tool", "name": "x"}), "Tool 'x' not found"),
        (message_body(tools=[weather_tool(), weather_tool()]), "Tool names must be unique"),
        (message_body(max_tokens=1024, thinking={"type": "enabled", "budget_tokens": 1024}), "greater than thinking"),
        (
            message_body(
                max_tokens=4096,
                tools=[weather_tool()],
                tool_choice={"type": "any"},
                thinking={"type": "enabled", "budget_tokens": 1024},
            ),
            "Thinking may not be enabled when tool_choice forces tool use",
        ),
        (
            conversation(
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [TOOL_USE]},
                {"role": "user", "content": "no result here"},
            ),
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
        ),
        (
            conversation({"role": "user", "content": [TOOL_RESULT]}),
            "messages.0.content: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1",
        ),
    ],
)
def test_broken_rules_are_400s(body, message):
    with pytest.raises(ApiError, match=message) as error:
        cross_field.check(body)
    assert error.value.status == 400 and error.value.error_type == "invalid_request_error"


def test_a_complete_tool_round_trip_passes():
    cross_field.check(
        conversation(
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [TOOL_USE]},
            {"role": "user", "content": [TOOL_RESULT]},
        )
    )
