"""The first-party door: the Messages API's own errors, and its streams as server-sent events.

It is the identity codec: requests reach the backend as they came (openapi.yaml
validated them), replies leave as the backend made them. Vertex AI streams and
passes Claude's errors on in this shape too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.doors.base import ErrorAnswer
from backends.wire import ApiError, encode_event, error_body, error_json


def error_answer(error: ApiError, request_id: str | None) -> ErrorAnswer:
    """`{"type":"error","error":{…},"request_id":…}` with the error's status and headers."""
    return ErrorAnswer(error.status, error_json(error, request_id), error.headers)


class ServerSentEvents:
    """`event: <type>` and `data: <compact JSON>` for each event, an `error` event for a failure."""

    content_type = "text/event-stream; charset=utf-8"
    headers: Mapping[str, str] = {}

    def event(self, event: Mapping[str, Any]) -> bytes:
        return encode_event(event)

    def error(self, error: ApiError, request_id: str | None) -> bytes:
        return encode_event(error_body(error, request_id))

    def end(self) -> bytes:
        return b""
