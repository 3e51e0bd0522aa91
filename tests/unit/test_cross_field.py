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


SYSTEM = {"role": "system", "content": "Be brief."}


def test_a_system_message_between_a_tool_use_and_its_result_is_no_turn():
    cross_field.check(
        conversation(
            {"role": "user", "content": "weather?"},
            SYSTEM,
            {"role": "assistant", "content": [TOOL_USE]},
            {"role": "system", "output_config": {"effort": "low"}},  # no content: an output_config only
            {"role": "user", "content": [TOOL_RESULT]},
        )
    )


def test_a_system_message_does_not_answer_a_tool_use():
    with pytest.raises(ApiError, match=r"messages\.1: `tool_use` ids were found without `tool_result` blocks"):
        cross_field.check(
            conversation(
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [TOOL_USE]},
                SYSTEM,
                {"role": "user", "content": "no result here"},
            )
        )


def test_the_first_message_may_not_be_a_system_message_but_may_be_a_compaction():
    with pytest.raises(ApiError, match='first message must use the "user" role'):
        cross_field.check(conversation(SYSTEM, {"role": "user", "content": "hi"}))
    compacted = {"role": "assistant", "content": [{"type": "compaction", "content": "So far, a greeting."}]}
    cross_field.check(conversation(compacted, {"role": "user", "content": "hi"}))


def test_toolsets_have_no_name_to_repeat():
    toolsets = [{"type": "mcp_toolset", "mcp_server_name": "a"}, {"type": "mcp_toolset", "mcp_server_name": "b"}]
    cross_field.check(message_body(tools=[*toolsets, {"type": "browser_toolset_20260801"}, weather_tool()]))


def test_max_tokens_0_warms_the_cache_whatever_the_thinking_budget():
    cross_field.check(message_body(max_tokens=0, thinking={"type": "enabled", "budget_tokens": 2048}))


INLINE = {"type": "tool_addition", "tool": {"type": "tool_definition", "definition": weather_tool()}}
INLINE_MCP = {
    "type": "tool_addition",
    "tool": {"type": "tool_definition", "definition": {"type": "mcp_toolset", "mcp_server_name": "a"}},
}


@pytest.mark.parametrize(
    ("body", "present", "missing", "message"),
    [
        (
            message_body(fallback_credit_token={"token": "t"}),
            set(),
            "fallback-credit-2026-07-01",
            "fallback_credit_token: Input should be a valid string",
        ),
        (
            conversation({"role": "user", "content": [INLINE]}),
            set(),
            "inline-tools-2026-09-15",
            "messages.0.content.0.tool.type: Input tag 'tool_definition' does not match any of the expected tags: "
            "'tool_reference', 'mcp_tool_reference', 'mcp_toolset_reference'",
        ),
        (
            conversation({"role": "user", "content": "hi"}, {"role": "system", "content": [INLINE_MCP]}),
            {"inline-tools-2026-09-15"},
            "mcp-client-2026-09-15",
            "messages.1.content.0.tool.definition.type: Input tag 'mcp_toolset' does not match any of the expected "
            "tags: 'custom', 'bash_20241022', ",
        ),
    ],
)
def test_a_field_that_needs_a_beta_reads_as_the_schema_without_it(body, present, missing, message):
    with pytest.raises(ApiError) as error:
        cross_field.check(body, present)
    assert error.value.status == 400 and error.value.message.startswith(message)
    cross_field.check(body, {*present, missing})


def test_the_beta_header_is_read_as_a_list():
    assert cross_field.betas_of(" a-1 ,b-2,, ") == {"a-1", "b-2"} and cross_field.betas_of(None) == frozenset()
