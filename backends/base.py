"""The backend contract: what a handler may ask of a backend, and the data that crosses it.

A backend answers four questions — create a message (whole or as a stream of
events), count a request's input tokens, list the models, get one model — and
never sees HTTP, Flask or Connexion. Requests reach it already validated
against openapi.yaml; replies leave it as plain JSON-ready dicts. A backend
reports a failure the API would report by raising `ApiError`.

A simple backend writes `create_message` and `count_tokens`; streaming then
comes for free from `events_from_message`, and the models routes from the
catalogue. A backend that has real events of its own (the proxy, a scripted
stream with timing) overrides `stream_message`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backends import tokens

if TYPE_CHECKING:
    from app.config import Settings
    from backends.catalogue import ModelCatalogue

JSON = dict[str, Any]

#: The error type the API documents for each status; any other 4xx is an
#: invalid_request_error and any other 5xx an api_error.
ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for(status: int) -> str:
    """The API's error type for an HTTP status."""
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


class ApiError(Exception):
    """A failure the API reports to its client: a status, an error type and a message."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or error_type_for(status)
        self.headers = dict(headers or {})
        #: The error body exactly as an upstream sent it, passed on unchanged instead of one built here.
        self.body = body


class ConnectionAbort(Exception):
    """Raised by a backend to cut the client's connection, as a network fault would.

    Before the response starts the client gets a truncated response; during a
    stream, the stream just stops without its end. Nothing else reports it.
    """


@dataclass(frozen=True)
class MessageRequest:
    """A create-message or count-tokens request that openapi.yaml has already validated."""

    body: Mapping[str, Any]
    #: Request headers, names in lower case (anthropic-version, anthropic-beta, …).
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """A JSON reply, with any headers the backend wants the client to see."""

    body: JSON
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class EventStream:
    """A streamed reply: the events' JSON payloads, in order, each with its `type`.

    Closing the stream (the server does it when the client goes away) closes the
    event iterator, so a generator's `finally` runs: that is where a backend
    releases whatever the stream holds.
    """

    events: Iterator[JSON]
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Called (from another thread) the moment the client disconnects, to stop
    #: a stream blocked on I/O without waiting for its next event.
    on_disconnect: Callable[[], None] | None = None

    def close(self) -> None:
        close = getattr(self.events, "close", None)
        if close is not None:
            close()


class Backend:
    """The interface handlers delegate to. Subclasses implement the two abstract methods."""

    #: The name the registry knows this backend by.
    name = "base"

    def __init__(self, catalogue: ModelCatalogue) -> None:
        self.catalogue = catalogue

    @classmethod
    def from_settings(cls, settings: Settings, catalogue: ModelCatalogue) -> Backend:
        """Build the backend from the server's settings; checks what it needs, or raises ValueError."""
        return cls(catalogue)

    def create_message(self, request: MessageRequest) -> Reply:
        """Answer with a whole Message."""
        raise NotImplementedError

    def stream_message(self, request: MessageRequest) -> EventStream:
        """Answer with the events of a streamed Message; by default, those of the whole message."""
        reply = self.create_message(request)
        return EventStream(events_from_message(reply.body), reply.headers)

    def count_tokens(self, request: MessageRequest) -> Reply:
        """Answer with `{"input_tokens": N}` by the project's token rule."""
        return Reply({"input_tokens": tokens.count_input(request.body)})

    def list_models(
        self, *, after_id: str | None, before_id: str | None, limit: int, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """One page of the model catalogue; `headers` are the client's (a proxy forwards them)."""
        return Reply(self.catalogue.page(after_id=after_id, before_id=before_id, limit=limit))

    def get_model(self, model_id: str, headers: Mapping[str, str] | None = None) -> Reply:
        """One model of the catalogue, or a 404 not_found_error."""
        return Reply(self.catalogue.get(model_id))

    def close(self) -> None:
        """Release what the backend holds (connections, files)."""


#: How many tokens each text or thinking delta carries in a derived stream.
TOKENS_PER_DELTA = 4
#: How many characters each input_json_delta fragment carries.
CHARS_PER_JSON_DELTA = 24


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
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
        "usage": {
            key: usage.get(key)
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
        },
    }
    yield {"type": "message_stop"}


def _opening(block: Mapping[str, Any]) -> JSON:
    """A block as content_block_start shows it: its streamed parts still empty."""
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": ""}
    if kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if kind == "tool_use":
        return {**block, "input": {}}
    return dict(block)


def _deltas(block: Mapping[str, Any], tokens_per_delta: int) -> Iterable[JSON]:
    kind = block["type"]
    if kind == "text":
        for piece in tokens.chunks(block["text"], tokens_per_delta):
            yield {"type": "text_delta", "text": piece}
    elif kind == "thinking":
        for piece in tokens.chunks(block["thinking"], tokens_per_delta):
            yield {"type": "thinking_delta", "thinking": piece}
        yield {"type": "signature_delta", "signature": block["signature"]}
    elif kind == "tool_use":
        partial = tokens.compact_json(block["input"])
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
