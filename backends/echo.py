"""The echo backend, Understudy's default: it answers with the last user message.

Deterministic, and faithful to the API's semantics:
- the reply is one text block holding the text of the last user message;
- `max_tokens` caps the output, cutting the text (stop_reason `max_tokens`);
- the earliest stop sequence in the reply ends it, the sequence itself left
  out (stop_reason `stop_sequence`, `stop_sequence` set);
- with tools given and tool_choice `any` or `tool`, the reply is one tool_use
  block whose input validates against the tool's input_schema (stop_reason
  `tool_use`);
- with thinking enabled (or adaptive), a signed thinking block comes first;
- the model is echoed from the request; usage follows the token rule.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from backends import schema_example, text, tokens
from backends.base import Backend, MessageRequest, Reply
from backends.wire import JSON, compact_json, new_id


class EchoBackend(Backend):
    """Replies by echoing; needs nothing but the model catalogue."""

    name = "echo"

    def create_message(self, request: MessageRequest) -> Reply:
        return Reply(echo_message(request.body))


def echo_message(body: Mapping[str, Any]) -> JSON:
    """The Message the echo backend answers `body` with."""
    user_text = text.last_user_text(body["messages"])
    budget = body["max_tokens"]
    content: list[JSON] = []
    stop_reason, stop_sequence = "end_turn", None

    thinking = _thinking_block(body, user_text, budget)
    if thinking is not None:
        content.append(thinking)
        budget -= tokens.count(thinking["thinking"])

    tool = _forced_tool(body)
    if tool is not None:
        block = _tool_use_block(tool, user_text)
        if tokens.count(compact_json(block["input"])) <= budget:
            content.append(block)
            stop_reason = "tool_use"
        else:
            stop_reason = "max_tokens"
    elif budget > 0:
        reply, stop_reason, stop_sequence = _stopped_text(user_text, body.get("stop_sequences") or (), budget)
        content.append({"type": "text", "text": reply})
    else:
        stop_reason = "max_tokens"

    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage(tokens.count_input(body), sum(_block_tokens(block) for block in content)),
    }


def usage(input_tokens: int, output_tokens: int) -> JSON:
    """A Usage object with no cache activity."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _stopped_text(reply: str, stop_sequences: Sequence[str], budget: int) -> tuple[str, str, str | None]:
    """The reply cut at the earliest stop sequence or at the token budget, whichever comes first."""
    found = [(reply.find(sequence), sequence) for sequence in stop_sequences if sequence and sequence in reply]
    position, sequence = min(found, key=lambda hit: (hit[0], -len(hit[1])), default=(len(reply), None))
    before_stop = reply[:position]
    if tokens.count(before_stop) > budget:
        return tokens.cut(reply, budget), "max_tokens", None
    if sequence is not None:
        return before_stop, "stop_sequence", sequence
    return reply, "end_turn", None


def _thinking_block(body: Mapping[str, Any], user_text: str, budget: int) -> JSON | None:
    config = body.get("thinking") or {}
    if config.get("type") not in ("enabled", "adaptive"):
        return None
    thought = f"The user's last message is {tokens.count(user_text)} tokens long; I will echo it back."
    if config.get("display") == "omitted":
        thought = ""
    thought = tokens.cut(thought, min(budget, config.get("budget_tokens", budget)))
    return {"type": "thinking", "thinking": thought, "signature": signature_for(body["model"], thought)}


def signature_for(model: str, thinking: str) -> str:
    """A deterministic stand-in for the opaque signature the API puts on thinking blocks."""
    return base64.b64encode(hashlib.sha256(f"{model}\n{thinking}".encode()).digest()).decode()


def _forced_tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The tool that tool_choice forces: the named one for `tool`, the first custom tool for `any`."""
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or []
    if choice.get("type") == "any":
        return next((tool for tool in tools if "input_schema" in tool), None)
    if choice.get("type") == "tool":
        return next((tool for tool in tools if tool.get("name") == choice.get("name")), None)
    return None


def _tool_use_block(tool: Mapping[str, Any], user_text: str) -> JSON:
    schema = tool.get("input_schema") or {"type": "object"}
    value = schema_example.example(schema, hint=user_text)
    return {
        "type": "tool_use",
        "id": new_id("toolu"),
        "name": tool["name"],
        "input": value if isinstance(value, dict) else {},
    }


def _block_tokens(block: Mapping[str, Any]) -> int:
    if block["type"] == "tool_use":
        return tokens.count(compact_json(block["input"]))
    return tokens.count(block.get("text") or block.get("thinking") or "")
