"""Rules of the API that a JSON schema cannot state, because they relate one field to another.

openapi.yaml says what each field may hold; these say how fields must agree —
a thinking budget below max_tokens, a tool_choice that names a given tool,
every tool_use answered by a tool_result in the next turn, each custom_id of
a Message Batch used once. Each broken rule is a 400 invalid_request_error
worded as the API words it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backends.wire import ApiError


def check(body: Mapping[str, Any]) -> None:
    """Raise a 400 ApiError for the first rule `body` breaks."""
    _check_conversation(body["messages"])
    _check_tools(body)
    _check_thinking(body)


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
    if messages[0]["role"] != "user":
        _fail('messages: first message must use the "user" role')
    for index, message in enumerate(messages):
        uses = _ids(message, "tool_use", "id")
        if uses and message["role"] == "assistant" and index + 1 < len(messages):
            answered = _ids(messages[index + 1], "tool_result", "tool_use_id")
            missing = [tool_id for tool_id in uses if tool_id not in answered]
            if missing:
                _fail(
                    f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                    "in the next message."
                )
        results = _ids(message, "tool_result", "tool_use_id")
        if results:
            offered = _ids(messages[index - 1], "tool_use", "id") if index > 0 else []
            unexpected = [tool_id for tool_id in results if tool_id not in offered]
            if unexpected:
                _fail(
                    f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(unexpected)}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message."
                )


def _ids(message: Mapping[str, Any], block_type: str, key: str) -> list[str]:
    content = message["content"]
    if isinstance(content, str):
        return []
    return [block[key] for block in content if block.get("type") == block_type]


def _check_tools(body: Mapping[str, Any]) -> None:
    tools = body.get("tools") or []
    names = [tool.get("name") for tool in tools]
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
    if "max_tokens" in body and thinking["budget_tokens"] >= body["max_tokens"]:
        _fail("max_tokens: must be greater than thinking.budget_tokens")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        _fail("Thinking may not be enabled when tool_choice forces tool use.")
