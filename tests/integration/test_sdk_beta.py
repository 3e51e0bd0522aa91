"""The newest shapes of the Messages API as the official Python SDK (anthropic 2.17) sends them, against a real server.

The stable client's `role: "system"` messages and `max_tokens=0`; the beta
client (`client.beta.messages`: the same routes with `?beta=true`) with its
own fields — context management, compaction, MCP servers and blocks, tool
changes, fallbacks, threads — sent, streamed and counted, and its blocks sent
back; and the fields the SDK documents as needing a beta, refused without it
in the API's words. The server checks every reply against openapi.yaml, and
the SDK parses it as its own types.
"""

from __future__ import annotations

import anthropic
import pytest

#: A model that takes the beta client's fields and, not thinking unless asked, answers text first.
MODEL = "claude-opus-4-8"
HELLO = [{"role": "user", "content": "Hello, Claude"}]


def test_a_system_message_between_turns_is_taken(sdk):
    messages = [*HELLO, {"role": "system", "content": "Answer in French."}]
    message = sdk.messages.create(model=MODEL, max_tokens=100, messages=messages)
    assert message.content[0].text == "Hello, Claude"  # the echo of the last user turn, system messages aside


def test_max_tokens_0_warms_the_cache_without_a_reply(sdk):
    message = sdk.messages.create(model=MODEL, max_tokens=0, messages=HELLO)
    assert message.content == [] and message.stop_reason == "max_tokens" and message.usage.output_tokens == 0


def test_user_profile_and_workspace_travel_as_headers(sdk):
    message = sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO, user_profile_id="up_1", workspace_id="w")
    assert message.stop_reason in ("end_turn", "max_tokens")


#: The beta client's top-level fields that go together (a thread or a fallback credit token take fewer).
BETA_FIELDS = {
    "billing_policy": {"type": "billing_policy", "bill_to": "self"},
    "context_management": {
        "edits": [
            {
                "type": "clear_tool_uses_20250919",
                "clear_at_least": {"type": "input_tokens", "value": 1000},
                "clear_tool_inputs": True,
                "exclude_tools": ["get_weather"],
                "keep": {"type": "tool_uses", "value": 3},
                "trigger": {"type": "input_tokens", "value": 100_000},
            },
            {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 1}},
        ]
    },
    "fallbacks": [{"model": "claude-sonnet-5-5", "max_tokens": 50, "speed": "standard"}],
    "mcp_servers": [
        {
            "type": "url",
            "name": "weather",
            "url": "https://mcp.example.com/sse",
            "authorization_token": "secret",
            "tool_configuration": {"allowed_tools": ["get_forecast"], "enabled": True},
        }
    ],
    "output_config": {"effort": "low", "task_budget": {"type": "tokens", "total": 1024, "remaining": 512}},
    "thinking": {"type": "adaptive", "display": "updates", "block_binding": {"prefix_mismatch_behavior": "drop_block"}},
    "tools": [
        {"type": "computer_20251124", "name": "computer", "display_width_px": 1024, "display_height_px": 768},
        {"type": "bash_20241022", "name": "bash"},
        {"type": "advisor_20260301", "name": "advisor", "model": "claude-opus-5-5", "max_uses": 2},
        {"type": "mcp_toolset", "mcp_server_name": "weather", "default_config": {"enabled": True}},
    ],
}


def test_the_beta_client_s_fields_are_taken(sdk):
    message = sdk.beta.messages.create(model=MODEL, max_tokens=100, messages=HELLO, **BETA_FIELDS)
    assert isinstance(message, anthropic.types.beta.BetaMessage) and message.stop_reason == "end_turn"


def test_a_thread_and_a_fallback_credit_token_are_taken(sdk):
    message = sdk.beta.messages.create(model=MODEL, max_tokens=100, messages=HELLO, thread={"type": "create"})
    assert message.stop_reason == "end_turn"
    message = sdk.beta.messages.create(model=MODEL, max_tokens=100, messages=HELLO, fallback_credit_token="tok_1")
    assert message.stop_reason == "end_turn"


def test_the_beta_client_streams_and_counts(sdk):
    messages = [*HELLO, {"role": "system", "content": "Be brief.", "clear_at": "never", "output_config": {}}]
    betas = ["context-management-2025-06-27", "mid-conversation-output-config-2026-07-01"]
    management = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
    with sdk.beta.messages.stream(
        model=MODEL, max_tokens=100, messages=messages, betas=betas, context_management=management
    ) as stream:
        assert "".join(stream.text_stream) == "Hello, Claude"
    counted = sdk.beta.messages.count_tokens(
        model=MODEL, messages=messages, betas=betas, context_management=management, compaction={"type": "summarize"}
    )
    assert counted.input_tokens > 0


#: An assistant turn holding the beta client's blocks, as a response gave them, sent back.
BLOCKS_SENT_BACK = [
    {"type": "compaction", "content": "Earlier, the user asked about Paris.", "signature": "sig"},
    {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "get_forecast", "server_name": "weather", "input": {}},
    {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "content": [{"type": "text", "text": "sunny"}]},
    {"type": "mcp_tool_listing", "mcp_server_name": "weather", "tools": [{"name": "f", "input_schema": {}}]},
    {"type": "fallback", "from": {"model": MODEL}, "to": {"model": "claude-sonnet-5-5"}, "trigger": None},
    {"type": "tool_removal", "tool": {"type": "mcp_toolset_reference", "server_name": "weather"}},
    {"type": "text", "text": "It is sunny."},
]


def test_the_beta_client_s_blocks_are_taken_back(sdk):
    messages = [*HELLO, {"role": "assistant", "content": BLOCKS_SENT_BACK}, {"role": "user", "content": "Thanks"}]
    message = sdk.beta.messages.create(model=MODEL, max_tokens=100, messages=messages)
    assert message.content[0].text == "Thanks"


def test_a_conversation_may_open_with_its_compaction(sdk):
    compacted = {"role": "assistant", "content": [{"type": "compaction", "content": "So far: a greeting."}]}
    message = sdk.beta.messages.create(model=MODEL, max_tokens=100, messages=[compacted, *HELLO])
    assert message.content[0].text == "Hello, Claude"


INLINE_TOOL = {"type": "tool_definition", "definition": {"name": "f", "input_schema": {"type": "object"}}}
MCP_TOOLSET = {"type": "tool_definition", "definition": {"type": "mcp_toolset", "mcp_server_name": "weather"}}


@pytest.mark.parametrize(
    ("fields", "betas", "refusal"),
    [
        pytest.param(
            {"fallback_credit_token": {"token": "tok_1", "mode": "best_effort"}},
            ["fallback-credit-2026-07-01"],
            "fallback_credit_token: Input should be a valid string",
            id="credit-token-object",
        ),
        pytest.param(
            {"messages": [*HELLO, {"role": "system", "content": [{"type": "tool_addition", "tool": INLINE_TOOL}]}]},
            ["inline-tools-2026-09-15"],
            "messages.1.content.0.tool.type: Input tag 'tool_definition' does not match any of the expected tags: "
            "'tool_reference', 'mcp_tool_reference', 'mcp_toolset_reference'",
            id="inline-tool",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "tool_addition", "tool": MCP_TOOLSET}]}]},
            ["inline-tools-2026-09-15", "mcp-client-2026-09-15"],
            "messages.0.content.0.tool.definition.type: Input tag 'mcp_toolset' does not match any of the "
            "expected tags: 'custom', 'bash_20241022',",
            id="inline-mcp-toolset",
        ),
    ],
)
def test_a_field_that_needs_a_beta_is_refused_without_it(sdk, fields, betas, refusal):
    fields = {"messages": HELLO, **fields}
    with pytest.raises(anthropic.BadRequestError) as error:
        sdk.beta.messages.create(model=MODEL, max_tokens=100, betas=betas[:-1], **fields)
    assert error.value.body["error"]["message"].startswith(refusal)
    message = sdk.beta.messages.create(model=MODEL, max_tokens=100, betas=betas, **fields)
    assert message.stop_reason == "end_turn"
