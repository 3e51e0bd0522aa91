"""A matched rule's reply made real: a Message, an ApiError, or a stream with its pace and fault.

Templates in a reply's strings — `{{ user_text }}`, `{{ model }}`,
`{{ counter }}` (how many times the rule has matched), `{{ rule }}` and
`{{ match.1 }}` / `{{ match.name }}` (regex groups) — are filled by plain
substitution; nothing in a script is ever evaluated.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

from backends import tokens
from backends.echo import signature_for, usage
from backends.events import events_from_message
from backends.scripted.script import TEMPLATE
from backends.tokens import Tokenizer
from backends.wire import JSON, ApiError, ConnectionAbort, compact_json, new_id

Sleep = Callable[[float], None]


def fill(value: Any, values: Mapping[str, str]) -> Any:
    """`value` with every template replaced; unknown names were refused when the script loaded."""
    if isinstance(value, str):
        return TEMPLATE.sub(lambda found: values.get(found.group(1), ""), value)
    if isinstance(value, Mapping):
        return {key: fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, values) for item in value]
    return value


def api_error(spec: Mapping[str, Any]) -> ApiError:
    """The ApiError a reply's `error` (or a fault's) describes."""
    status = int(spec["status"])
    try:
        message = spec.get("message") or HTTPStatus(status).phrase
    except ValueError:
        message = "Overloaded" if status == 529 else "Error"
    headers = {name: str(value) for name, value in (spec.get("headers") or {}).items()}
    error_code = (spec.get("details") or {}).get("error_code")
    return ApiError(status, str(message), error_type=spec.get("type"), headers=headers, error_code=error_code)


def message(reply: Mapping[str, Any], body: Mapping[str, Any], tokenizer: Tokenizer = tokens.CLASSIC) -> JSON:
    """The Message a reply's `text` or `content` describes, with usage by the model's tokenizer unless given."""
    blocks = [
        _block(block, body) for block in reply.get("content") or [{"type": "text", "text": reply.get("text", "")}]
    ]
    has_tool_use = any(block["type"] == "tool_use" for block in blocks)
    output_tokens = sum(tokenizer.count(block.get("text") or block.get("thinking") or "") for block in blocks)
    output_tokens += sum(tokenizer.count(compact_json(b["input"])) for b in blocks if b["type"] == "tool_use")
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": reply.get("stop_reason") or ("tool_use" if has_tool_use else "end_turn"),
        "stop_sequence": reply.get("stop_sequence"),
        "usage": {**usage(tokenizer.count_input(body), output_tokens), **(reply.get("usage") or {})},
    }


def _block(block: Mapping[str, Any], body: Mapping[str, Any]) -> JSON:
    if block["type"] == "tool_use":
        return {
            "type": "tool_use",
            "id": block.get("id") or new_id("toolu"),
            "name": block["name"],
            "input": block.get("input") or {},
        }
    if block["type"] == "thinking":
        signature = block.get("signature") or signature_for(body["model"], block["thinking"])
        return {"type": "thinking", "thinking": block["thinking"], "signature": signature}
    return dict(block)


def stream_events(
    message: JSON, timing: Mapping[str, Any], fault: Mapping[str, Any] | None, sleep: Sleep
) -> Iterator[JSON]:
    """The message's events, paced as `timing` says, with the fault (if any) where it says."""
    events = events_from_message(message, tokens_per_delta=int(timing.get("chunk_tokens", 4)))
    paced = _paced(events, timing, sleep)
    return paced if fault is None else _faulty(paced, fault, sleep)


def _paced(events: Iterator[JSON], timing: Mapping[str, Any], sleep: Sleep) -> Iterator[JSON]:
    first = timing.get("first_token_ms", 0) / 1000
    if "chunk_delay_ms" in timing:
        between = timing["chunk_delay_ms"] / 1000
    elif "tokens_per_second" in timing:
        between = timing.get("chunk_tokens", 4) / timing["tokens_per_second"]
    else:
        between = 0.0
    jitter = timing.get("jitter", 0)
    chance = random.Random(timing.get("seed"))
    started = False
    for event in events:
        if event["type"] == "content_block_delta":
            delay = between if started else first
            started = True
            if delay:
                sleep(delay * (1 + jitter * chance.uniform(-1, 1)))
        yield event


def _faulty(events: Iterator[JSON], fault: Mapping[str, Any], sleep: Sleep) -> Iterator[JSON]:
    after = fault.get("after_events", 0)
    sent = 0
    for event in events:
        if sent == after:
            _strike(fault, sleep)
        yield event
        sent += 1
    if sent <= after:
        _strike(fault, sleep)


def _strike(fault: Mapping[str, Any], sleep: Sleep) -> None:
    kind = fault["kind"]
    if kind == "stall":
        sleep(fault.get("seconds", 60))
    elif kind == "disconnect":
        raise ConnectionAbort
    else:
        raise api_error(fault.get("error") or {"status": 529, "type": "overloaded_error", "message": "Overloaded"})


def before_reply(fault: Mapping[str, Any] | None, sleep: Sleep = time.sleep) -> None:
    """A fault on a non-streamed request: it strikes before the reply is sent."""
    if fault is not None:
        _strike(fault, sleep)
