"""POST /v1/messages and POST /v1/messages/count_tokens.

The files a request names (document and image sources of type `file`,
container_upload blocks) are checked and resolved against the file store
before the backend sees the request (backends/files/sources.py).
"""

from __future__ import annotations

from typing import Any

from flask import Response

from app.api import backend, client_gone, file_store, request_headers, rules
from app.api.responses import json_response
from app.api.streaming import sse_response
from backends.exchange import MessageRequest
from backends.files import resolve_file_sources


def create(body: dict[str, Any]) -> Response:
    """Create a message: whole as JSON, or as server-sent events when `stream` is true."""
    message_request = _checked(body, counting=False)
    if body.get("stream"):
        return sse_response(backend().stream_message(message_request))
    return json_response(backend().create_message(message_request))


def count_tokens(body: dict[str, Any]) -> Response:
    """Count the input tokens of a would-be message."""
    return json_response(backend().count_tokens(_checked(body, counting=True)))


def _checked(body: dict[str, Any], *, counting: bool) -> MessageRequest:
    """The request for the backend, once it keeps the rules of its fields, its betas and its model, files resolved."""
    headers = request_headers()
    rules().check(body, headers, counting=counting)
    return MessageRequest(body=resolve_file_sources(body, file_store()), headers=headers, client_gone=client_gone())
