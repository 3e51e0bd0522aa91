"""What crosses the backend contract (base.py): the request a handler hands over, the replies that come back.

A request has been validated against openapi.yaml before it is made; a reply
is plain JSON-ready data, whole (`Reply`), as events (`EventStream`) or as raw
bytes (`ByteStream`, a batch's results file). Streams that outlive their
handler are closed by the server when the client goes away.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from backends.wire import JSON


@dataclass(frozen=True)
class MessageRequest:
    """A create-message or count-tokens request that openapi.yaml has already validated."""

    body: Mapping[str, Any]
    #: Request headers, names in lower case (anthropic-version, anthropic-beta, …).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Set the moment the client goes away: a backend still working on the answer may give up.
    client_gone: threading.Event = field(default_factory=threading.Event)
    #: The request's custom_id when it is one request of a Message Batch; "" for a request of its own.
    custom_id: str = ""
    #: The door the request came in by: `anthropic` (the first-party API), `bedrock`, `vertex`, `openai`, `mantle`,
    #: `foundry`, `aws` or `google-cloud`. Its body and headers are the first-party API's whichever it is.
    door: str = "anthropic"


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


@dataclass
class ByteStream:
    """A reply of raw bytes sent as they are produced (a batch's results file), with headers for the client.

    Closing it closes the chunk iterator, as for an EventStream.
    """

    chunks: Iterator[bytes]
    headers: Mapping[str, str] = field(default_factory=dict)

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
