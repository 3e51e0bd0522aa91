"""POST /v1/messages and POST /v1/messages/count_tokens."""

from __future__ import annotations

from typing import Any

from flask import Response

from app.api import backend, client_gone, request_headers
from app.api.responses import json_response
from app.api.streaming import sse_response
from app.spec import cross_field
from backends.base import MessageRequest


def create(body: dict[str, Any]) -> Response:
    """Create a message: whole as JSON, or as server-sent events when `stream` is true."""
    cross_field.check(body)
    message_request = _message_request(body)
    if body.get("stream"):
        return sse_response(backend().stream_message(message_request))
    return json_response(backend().create_message(message_request))


def count_tokens(body: dict[str, Any]) -> Response:
    """Count the input tokens of a would-be message."""
    cross_field.check(body)
    return json_response(backend().count_tokens(_message_request(body)))


def _message_request(body: dict[str, Any]) -> MessageRequest:
    return MessageRequest(body=body, headers=request_headers(), client_gone=client_gone())
