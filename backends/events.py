"""A Message and the stream of events that carries it, each made from the other.

`events_from_message` is how a backend without real events of its own streams
(the default `Backend.stream_message`); `message_from_events` is its inverse,
for a proxy that records a stream it passed on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from backends import tokens
from backends.wire import JSON, compact_json

#: How many tokens each text or thinking delta carries in a derived stream.
TOKENS_PER_DELTA = 4
#: How many characters each input_json_delta fragment carries.
CHARS_PER_JSON_DELTA = 24
#: The usage a message_delta reports (cumulative): these counts, and these breakdowns when the message has them.
DELTA_COUNTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
DELTA_BREAKDOWNS = ("server_tool_use", "output_tokens_details")
#: The blocks whose input streams as input_json_delta fragments.
CALLS = ("tool_use", "server_tool_use")


def events_from_message(message: Mapping[str, Any], tokens_per_delta: int = TOKENS_PER_DELTA) -> Iterator[JSON]:
    """The event sequence the API streams for `message`, in order.

    message_start (empty content, no stop reason); per block a start, its deltas
    and a stop, indices 0, 1, 2…; one ping after the first block starts;
    message_delta with the stop reason and cumulative usage; message_stop.
    """
    usage = dict(message["usage"])
    yield {
        "type": "message_start",
        "message": {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": min(usage["output_tokens"], 1)},
        },
    }
    for index, block in enumerate(message["content"]):
        yield {"type": "content_block_start", "index": index, "content_block": _opening(block)}
        if index == 0:
            yield {"type": "ping"}
        for delta in _deltas(block, tokens_per_delta):
            yield {"type": "content_block_delta", "index": index, "delta": delta}
        yield {"type": "content_block_stop", "index": index}
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    if message.get("container") is not None:
        delta["container"] = message["container"]
    yield {
        "type": "message_delta",
        "delta": delta,
        "usage": {key: usage.get(key) for key in DELTA_COUNTS}
        | {key: usage[key] for key in DELTA_BREAKDOWNS if key in usage},
    }
    yield {"type": "message_stop"}


def _opening(block: Mapping[str, Any]) -> JSON:
    """A block as content_block_start shows it: its streamed parts still empty."""
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": "", **({"citations": []} if block.get("citations") else {})}
    if kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if kind in CALLS:
        return {**block, "input": {}}
    return dict(block)


def _deltas(block: Mapping[str, Any], tokens_per_delta: int) -> Iterable[JSON]:
    kind = block["type"]
    if kind == "text":
        for citation in block.get("citations") or ():
            yield {"type": "citations_delta", "citation": citation}
        for piece in tokens.chunks(block["text"], tokens_per_delta):
            yield {"type": "text_delta", "text": piece}
    elif kind == "thinking":
        for piece in tokens.chunks(block["thinking"], tokens_per_delta):
            yield {"type": "thinking_delta", "thinking": piece}
        yield {"type": "signature_delta", "signature": block["signature"]}
    elif kind in CALLS:
        partial = compact_json(block["input"])
        for start in range(0, len(partial), CHARS_PER_JSON_DELTA):
            yield {"type": "input_json_delta", "partial_json": partial[start : start + CHARS_PER_JSON_DELTA]}


def message_from_events(events: Iterable[Mapping[str, Any]]) -> JSON:
    """The whole Message a stream of events describes: the inverse of `events_from_message`."""
    message: JSON = {}
    partial_json: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        if kind == "message_start":
            message = {**event["message"], "content": []}
        elif kind == "content_block_start":
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "input_json_delta":
                partial_json[event["index"]] = partial_json.get(event["index"], "") + delta["partial_json"]
            elif delta["type"] == "citations_delta":
                block["citations"] = [*(block.get("citations") or ()), delta["citation"]]
            else:
                field = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}
                name = field.get(delta["type"])
                if name is not None:
                    block[name] = block.get(name, "") + delta[name]
        elif kind == "content_block_stop" and event["index"] in partial_json:
            message["content"][event["index"]]["input"] = json.loads(partial_json.pop(event["index"]) or "{}")
        elif kind == "message_delta":
            message.update({key: value for key, value in event["delta"].items()})
            message["usage"] = {
                **message.get("usage", {}),
                **{k: v for k, v in event["usage"].items() if v is not None},
            }
    return message
