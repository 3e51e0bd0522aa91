"""The echo backend's reply: the Message it answers a request with, built from the request alone.

In the reply's order:
- with thinking enabled or adaptive (asked for, or the model's default when the request says nothing:
  the 5.x models think by default), a signed thinking block comes first, its text empty when the display
  is `omitted` (the request's, else the model's default); `between_tools` thinks only in a turn that
  answers tool results; its tokens are counted in usage.output_tokens_details.thinking_tokens (and in
  output_tokens), even when display is `omitted` (with max_tokens 0 nothing is output, not even thinking);
- with tool_choice `any` or `tool`, or under `auto` one the user's text names, that tool is called
  (`tools.py`): a client tool with one
  `tool_use` block (stop_reason `tool_use`), a server tool with its call and result (`server_tools.py`),
  after which the turn goes on;
- then the text: the last user message; or, with a structured output format (`output_config.format`,
  or the older top-level `output_format`), JSON valid against its schema, made as tool inputs are; then
  one quoting text block per citable document (`citations.py`);
- `max_tokens` caps the output, cutting the text (stop_reason `max_tokens`), and so does the room the
  model's context window leaves (`model_context_window_exceeded`, see `limits.py`);
- the earliest stop sequence in the text ends it, the sequence itself left out (`stop_sequence`);
- the model is echoed from the request; usage follows the token rule, with the request's speed and
  inference_geo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backends import schema_example, text
from backends.catalogue import UNLISTED_MODEL, Model
from backends.echo import citations, server_tools
from backends.echo.tools import answers_tools, chosen_tool, tool_use_block
from backends.tokens import Tokenizer
from backends.wire import JSON, compact_json, new_id, opaque_digest


def echo_message(
    body: Mapping[str, Any],
    *,
    window_room: int | None = None,
    input_tokens: int | None = None,
    model: Model = UNLISTED_MODEL,
) -> JSON:
    """The Message the echo backend answers `body` with; `window_room` caps it where the context window ends.

    `input_tokens`, when the caller has counted them already, saves counting them again. `model` is the
    catalogue's: its tokenizer counts, and its defaults (thinking on by default, its display, its effort)
    fill what the request leaves out.
    """
    user_text = text.last_user_text(body["messages"])
    cap = body["max_tokens"] if window_room is None else min(body["max_tokens"], window_room)
    reply = _Reply(cap, model.tokenizer, window_bound=cap < body["max_tokens"])

    thinking = _thinking(body, user_text, cap, model)
    if thinking is not None:
        reply.add(*thinking, thinking=True)

    tool = chosen_tool(body, user_text)
    if tool is not None and not server_tools.is_server_tool(tool):
        reply.add_or_stop(tool_use_block(tool, user_text), "tool_use")
        return reply.message(body, input_tokens)
    if tool is not None:
        reply.server_turn = server_tools.server_turn(body, tool, user_text)
        for block in reply.server_turn.blocks:
            reply.add_or_stop(block, None)
        if reply.server_turn.paused:
            reply.add_or_stop(None, "pause_turn")
            return reply.message(body, input_tokens)

    reply.add_text(_reply_text(body, user_text), body.get("stop_sequences") or ())
    for block in citations.cited_blocks(body["messages"]):
        reply.add_or_stop(block, None)
    return reply.message(body, input_tokens)


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


def signature_for(model: str, thinking: str) -> str:
    """A deterministic stand-in for the opaque signature the API puts on thinking blocks."""
    return opaque_digest(f"{model}\n{thinking}")


class _Reply:
    """The content of a reply as it is built, within its token budget."""

    def __init__(self, budget: int, tokenizer: Tokenizer, *, window_bound: bool) -> None:
        self.budget = budget
        self.tokenizer = tokenizer
        #: Whether the budget is the context window's room, not max_tokens: running out is then its own stop reason.
        self.window_bound = window_bound
        self.content: list[JSON] = []
        self.output_tokens = 0
        self.thinking_tokens: int | None = None
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.server_turn: server_tools.ServerTurn | None = None

    def add(self, block: JSON, cost: int, *, thinking: bool = False) -> None:
        self.content.append(block)
        self.output_tokens += cost
        self.budget -= cost
        if thinking:
            self.thinking_tokens = cost

    def add_or_stop(self, block: JSON | None, stop_reason: str | None) -> None:
        """Add `block` (if any) when the budget allows, then stop with `stop_reason` if given; else run out."""
        if self.stop_reason is not None:
            return
        if block is not None:
            cost = _block_tokens(block, self.tokenizer)
            if cost > self.budget:
                self.run_out()
                return
            self.add(block, cost)
        self.stop_reason = stop_reason

    def add_text(self, reply: str, stop_sequences: Sequence[str]) -> None:
        if self.stop_reason is not None:
            return
        if self.budget <= 0:
            self.run_out()
            return
        cut, cost, stop_reason, self.stop_sequence = _stopped_text(reply, stop_sequences, self.budget, self.tokenizer)
        self.add({"type": "text", "text": cut}, cost)
        if stop_reason == "max_tokens":
            self.run_out()
        elif stop_reason != "end_turn":
            self.stop_reason = stop_reason

    def run_out(self) -> None:
        self.stop_reason = "model_context_window_exceeded" if self.window_bound else "max_tokens"

    def message(self, body: Mapping[str, Any], input_tokens: int | None) -> JSON:
        counted = usage(self.tokenizer.count_input(body) if input_tokens is None else input_tokens, self.output_tokens)
        counted["speed"] = body.get("speed") or "standard"
        counted["inference_geo"] = body.get("inference_geo") or "global"
        if self.thinking_tokens is not None:
            counted["output_tokens_details"] = {"thinking_tokens": self.thinking_tokens}
        message: JSON = {
            "id": new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": self.content,
            "stop_reason": self.stop_reason or "end_turn",
            "stop_sequence": self.stop_sequence,
            "usage": counted,
        }
        if self.server_turn is not None:
            counted["server_tool_use"] = self.server_turn.usage
            if self.server_turn.container is not None:
                message["container"] = self.server_turn.container
        return message


def _reply_text(body: Mapping[str, Any], user_text: str) -> str:
    """The text the reply echoes: the user's, or JSON following the requested output format's schema."""
    output_format = (body.get("output_config") or {}).get("format") or body.get("output_format")
    if not output_format:
        return user_text
    return compact_json(schema_example.example(output_format.get("schema") or {}, hint=user_text))


def _stopped_text(
    reply: str, stop_sequences: Sequence[str], budget: int, tokenizer: Tokenizer
) -> tuple[str, int, str, str | None]:
    """The reply cut at the earliest stop sequence or at the token budget (one or more), whichever comes first;
    its tokens; why it stopped, and at which sequence."""
    found = [(reply.find(sequence), sequence) for sequence in stop_sequences if sequence and sequence in reply]
    position, sequence = min(found, key=lambda hit: (hit[0], -len(hit[1])), default=(len(reply), None))
    before_stop = reply[:position]
    if tokenizer.exceeds(before_stop, budget):
        return tokenizer.cut(reply, budget), budget, "max_tokens", None
    if sequence is not None:
        return before_stop, tokenizer.count(before_stop), "stop_sequence", sequence
    return reply, tokenizer.count(reply), "end_turn", None


def _thinking(body: Mapping[str, Any], user_text: str, budget: int, model: Model) -> tuple[JSON, int] | None:
    """The signed thinking block, and the tokens thought: counted even when display is `omitted`.

    The request's thinking, or the model's default when it says nothing; `between_tools` thinks only in a
    turn that answers tool results. None without thinking, and with no budget to think in (max_tokens 0,
    which warms the cache, or a full context window): not one token is output, so not even an empty block.
    """
    defaults, tokenizer = model.defaults, model.tokenizer
    config = defaults.thinking_for(body)
    kind = config["type"]
    if kind == "between_tools" and answers_tools(body["messages"]):
        kind = "adaptive"
    if kind not in ("enabled", "adaptive") or budget <= 0:
        return None
    effort = defaults.effort_for(body)
    at_effort = f" at {effort} effort" if effort else ""
    thought = f"The user's last message is {tokenizer.count(user_text)} tokens long; I will echo it back{at_effort}."
    thought = tokenizer.cut(thought, min(budget, config.get("budget_tokens", budget)))
    shown = "" if (config.get("display") or defaults.display) == "omitted" else thought
    block = {"type": "thinking", "thinking": shown, "signature": signature_for(body["model"], shown)}
    return block, tokenizer.count(thought)


def _block_tokens(block: Mapping[str, Any], tokenizer: Tokenizer) -> int:
    """A block's output tokens: its text, or a call's input; server tool results are the API's, not the model's."""
    if block["type"] in ("tool_use", "server_tool_use"):
        return tokenizer.count(compact_json(block["input"]))
    return tokenizer.count(block.get("text") or block.get("thinking") or "")
