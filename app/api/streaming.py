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

from backends.exchange import EventStream
from backends.wire import ON_DISCONNECT_KEY, REQUEST_ID_KEY, ApiError, ConnectionAbort, encode_event, error_body

logger = logging.getLogger("understudy")

HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse_response(stream: EventStream) -> Response:
    """A streaming response for `stream`; raises at once if the stream fails before its first event."""
    try:
        first = next(stream.events)
    except BaseException:
        stream.close()
        raise
    if stream.on_disconnect is not None:
        request.environ.setdefault(ON_DISCONNECT_KEY, []).append(stream.on_disconnect)
    request_id = request.environ.get("asgi.scope", {}).get(REQUEST_ID_KEY)
    return Response(
        _encoded(first, stream, request_id),
        status=200,
        content_type="text/event-stream; charset=utf-8",
        headers={**HEADERS, **stream.headers},
    )


def _encoded(first: Mapping[str, Any], stream: EventStream, request_id: str | None) -> Iterator[bytes]:
    try:
        yield encode_event(first)
        for event in stream.events:
            yield encode_event(event)
    except ApiError as error:
        yield encode_event(error_body(error, request_id))
    except ConnectionAbort:
        raise  # the bridge cuts the connection
    except Exception:
        logger.exception("a stream failed after it started")
        yield encode_event(error_body(ApiError(500, "Internal server error"), request_id))
    finally:
        stream.close()
