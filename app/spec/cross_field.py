"""Rules of the API that a JSON schema cannot state, because they relate one field to another.

openapi.yaml says what each field may hold; these say how fields must agree —
a thinking budget below max_tokens, a tool_choice that names a given tool,
every tool_use answered by a tool_result in the next turn, each custom_id of
a Message Batch used once — and which fields need a beta named in the
anthropic-beta header (only where the SDK documents the tie). Each broken
rule is a 400 invalid_request_error worded as the API words it.

`role: "system"` messages sit between turns: they are no turn themselves, so
a tool_use is answered in the next user turn whatever system messages come
between.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.spec.loading import load_spec
from backends.wire import ApiError

#: The anthropic-beta values the SDK documents as needed by a field (beta_fallback_credit_token_param.py,
#: beta_request_tool_addition_block_param.py, beta_tool_change_tool_definition_param.py).
FALLBACK_CREDIT_OBJECT_BETA = "fallback-credit-2026-07-01"
INLINE_TOOLS_BETA = "inline-tools-2026-09-15"
MCP_TOOLSET_DEFINITION_BETA = "mcp-client-2026-09-15"


def check(body: Mapping[str, Any], betas: Iterable[str] = ()) -> None:
    """Raise a 400 ApiError for the first rule `body` breaks, given the betas the request names."""
    _check_conversation(body["messages"])
    _check_tools(body)
    _check_thinking(body)
    _check_betas(body, frozenset(betas))


def betas_of(header: str | None) -> frozenset[str]:
    """The beta names of an anthropic-beta header: comma-separated, spaces around them ignored."""
    return frozenset(name.strip() for name in (header or "").split(",") if name.strip())


def check_batch(body: Mapping[str, Any]) -> None:
    """Raise a 400 ApiError if two requests of a Message Batch share a custom_id."""
    seen: set[str] = set()
    for index, batch_request in enumerate(body["requests"]):
        custom_id = batch_request["custom_id"]
        if custom_id in seen:
            _fail(
                f"requests.{index}.custom_id: Duplicate custom_id '{custom_id}'; "
                "each custom_id must be unique within a Message Batch"
            )
        seen.add(custom_id)


def _fail(message: str) -> None:
    raise ApiError(400, message)


def _check_conversation(messages: Sequence[Mapping[str, Any]]) -> None:
    if messages[0]["role"] != "user" and not _opens_with_compaction(messages[0]):
        _fail('messages: first message must use the "user" role')
    turns = [(index, message) for index, message in enumerate(messages) if message["role"] != "system"]
    for position, (index, message) in enumerate(turns):
        uses = _ids(message, "tool_use", "id")
        if uses and message["role"] == "assistant" and position + 1 < len(turns):
            answered = _ids(turns[position + 1][1], "tool_result", "tool_use_id")
            missing = [tool_id for tool_id in uses if tool_id not in answered]
            if missing:
                _fail(
                    f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                    "in the next message."
                )
        results = _ids(message, "tool_result", "tool_use_id")
        if results:
            offered = _ids(turns[position - 1][1], "tool_use", "id") if position > 0 else []
            unexpected = [tool_id for tool_id in results if tool_id not in offered]
            if unexpected:
                _fail(
                    f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(unexpected)}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message."
                )


def _opens_with_compaction(message: Mapping[str, Any]) -> bool:
    """Whether a message opens with a compaction block: a later request sends one back first, in place of
    the turns it summarizes (beta_compaction_config_param.py), as the assistant message it came in."""
    blocks = _blocks(message)
    return bool(blocks) and blocks[0].get("type") == "compaction"


def _blocks(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A message's content blocks: none for string content, or a system message without content."""
    content = message.get("content")
    return content if isinstance(content, list) else []


def _ids(message: Mapping[str, Any], block_type: str, key: str) -> list[str]:
    return [block[key] for block in _blocks(message) if block.get("type") == block_type]


def _check_tools(body: Mapping[str, Any]) -> None:
    tools = body.get("tools") or []
    # Toolsets (browser, computer, MCP) have no name of their own.
    names = [tool["name"] for tool in tools if "name" in tool]
    if len(set(names)) != len(names):
        _fail("tools: Tool names must be unique.")
    choice = body.get("tool_choice") or {}
    if choice.get("type") in ("any", "tool") and not tools:
        _fail("tool_choice: tool_choice may only be specified while providing tools.")
    if choice.get("type") == "tool" and choice.get("name") not in names:
        _fail(f"tool_choice.name: Tool '{choice.get('name')}' not found in tools.")


def _check_thinking(body: Mapping[str, Any]) -> None:
    thinking = body.get("thinking") or {}
    if thinking.get("type") != "enabled":
        return
    # max_tokens 0 generates nothing (it warms the cache), so no budget can exceed it.
    if body.get("max_tokens") and thinking["budget_tokens"] >= body["max_tokens"]:
        _fail("max_tokens: must be greater than thinking.budget_tokens")


def _check_betas(body: Mapping[str, Any], betas: frozenset[str]) -> None:
    """Fields the SDK documents as needing a beta: without it, they read as the schema without that beta would."""
    if isinstance(body.get("fallback_credit_token"), Mapping) and FALLBACK_CREDIT_OBJECT_BETA not in betas:
        _fail("fallback_credit_token: Input should be a valid string")  # "without that header … the bare string only"
    for index, message in enumerate(body["messages"]):
        for position, block in enumerate(_blocks(message)):
            tool = block.get("tool") if block.get("type") == "tool_addition" else None
            if not isinstance(tool, Mapping) or tool.get("type") != "tool_definition":
                continue
            where = f"messages.{index}.content.{position}.tool"
            if INLINE_TOOLS_BETA not in betas:
                _fail(f"{where}.type: {_unexpected_tag('tool_definition', _tags('ToolRemovalToolParam'))}")
            if tool["definition"].get("type") == "mcp_toolset" and MCP_TOOLSET_DEFINITION_BETA not in betas:
                tags = [tag for tag in _tags("ToolUnionParam") if tag != "mcp_toolset"]
                _fail(f"{where}.definition.type: {_unexpected_tag('mcp_toolset', tags)}")


def _unexpected_tag(tag: str, expected: Iterable[str]) -> str:
    """The validators' wording for an unknown tag (app/spec/validators.py)."""
    return f"Input tag '{tag}' does not match any of the expected tags: {', '.join(repr(known) for known in expected)}"


@functools.cache
def _tags(union: str) -> tuple[str, ...]:
    """The tags a union of openapi.yaml's components maps, in its order: what the schema accepts there."""
    return tuple(load_spec()["components"]["schemas"][union]["discriminator"]["mapping"])
