"""Streamed replies as server-sent events, sent as they are produced.

Each event goes out as `event: <type>` and `data: <compact JSON>`, the JSON's
`type` equal to the event name, as the SDKs' stream parsers expect. The first
event is produced before the response starts, so a backend that fails at once
gets a proper error status; a failure after that can only be reported inside
the stream, as an `error` event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Response, request

from app.bridge import ON_DISCONNECT
from app.errors import REQUEST_ID_KEY, error_body
from backends.base import ApiError, ConnectionAbort, EventStream
from backends.tokens import compact_json

logger = logging.getLogger("understudy")

HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse(event: Mapping[str, Any]) -> bytes:
    """One event in the wire format."""
    return f"event: {event['type']}\ndata: {compact_json(event)}\n\n".encode()


def sse_response(stream: EventStream) -> Response:
    """A streaming response for `stream`; raises at once if the stream fails before its first event."""
    try:
        first = next(stream.events)
    except BaseException:
        stream.close()
        raise
    if stream.on_disconnect is not None:
        request.environ.setdefault(ON_DISCONNECT, []).append(stream.on_disconnect)
    request_id = request.environ.get("asgi.scope", {}).get(REQUEST_ID_KEY)
    return Response(
        _encoded(first, stream, request_id),
        status=200,
        content_type="text/event-stream; charset=utf-8",
        headers={**HEADERS, **stream.headers},
    )


def _encoded(first: Mapping[str, Any], stream: EventStream, request_id: str | None) -> Iterator[bytes]:
    try:
        yield sse(first)
        for event in stream.events:
            yield sse(event)
    except ApiError as error:
        yield sse(error_body(error, request_id))
    except ConnectionAbort:
        raise  # the bridge cuts the connection
    except Exception:
        logger.exception("a stream failed after it started")
        yield sse(error_body(ApiError(500, "Internal server error"), request_id))
    finally:
        stream.close()
