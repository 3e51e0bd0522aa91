"""Streamed replies, framed as the door the request came in by frames them, sent as they are produced.

The first-party API (and Vertex AI) sends server-sent events: `event: <type>`
and `data: <compact JSON>`, the JSON's `type` equal to the event name, as the
SDKs' stream parsers expect; Bedrock sends AWS event-stream messages, the
OpenAI-compatible endpoint `data:` chunks (app/doors/). The first event is
produced before the response starts, so a backend that fails at once gets a
proper error status, in the door's shape; a failure after that can only be
reported inside the stream, as the door frames an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Response, request

from app.api import request_id
from app.doors.anthropic import ServerSentEvents
from app.doors.base import Framing
from backends.exchange import EventStream
from backends.wire import ON_DISCONNECT_KEY, ApiError, ConnectionAbort

logger = logging.getLogger("understudy")

HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def stream_response(stream: EventStream, framing: Framing | None = None) -> Response:
    """A streaming response for `stream`, framed by `framing` (server-sent events unless a door says otherwise);
    raises at once if the stream fails before its first event."""
    try:
        first = next(stream.events)
    except BaseException:
        stream.close()
        raise
    if stream.on_disconnect is not None:
        request.environ.setdefault(ON_DISCONNECT_KEY, []).append(stream.on_disconnect)
    framing = framing or ServerSentEvents()
    return Response(
        _encoded(first, stream, framing, request_id()),
        status=200,
        content_type=framing.content_type,
        headers={**HEADERS, **stream.headers, **framing.headers},
    )


def _encoded(
    first: Mapping[str, Any], stream: EventStream, framing: Framing, request_id: str | None
) -> Iterator[bytes]:
    try:
        yield framing.event(first)
        for event in stream.events:
            framed = framing.event(event)
            if framed:
                yield framed
        yield framing.end()
    except ApiError as error:
        yield framing.error(error, request_id)
    except ConnectionAbort:
        raise  # the bridge cuts the connection
    except Exception:
        logger.exception("a stream failed after it started")
        yield framing.error(ApiError(500, "Internal server error"), request_id)
    finally:
        stream.close()
