"""POST /v1/messages and POST /v1/messages/count_tokens, at every door that speaks the first-party API.

The files a request names (document and image sources of type `file`,
container_upload blocks) are checked and resolved against the file store
before the backend sees the request (backends/files/sources.py). Under
Bedrock Mantle's prefix a model may be named as Mantle names it
(`anthropic.claude-haiku-4-5`), resolved through the catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response

from app.api import backend, client_gone, door, file_store, request_headers, rules
from app.api.responses import json_response
from app.api.streaming import stream_response
from app.http.facts import note
from backends.exchange import MessageRequest
from backends.files import resolve_file_sources
from backends.wire import ApiError

#: The doors whose clients may name a model as Bedrock Mantle does (Foundry shares Mantle's prefix).
MANTLE_DOORS = ("mantle", "foundry")


def create(body: dict[str, Any]) -> Response:
    """Create a message: whole as JSON, or as server-sent events when `stream` is true."""
    return answered(checked(_with_mantle_model(body), request_headers(), counting=False))


def count_tokens(body: dict[str, Any]) -> Response:
    """Count the input tokens of a would-be message."""
    return json_response(backend().count_tokens(checked(_with_mantle_model(body), request_headers(), counting=True)))


def answered(request: MessageRequest) -> Response:
    """The backend's answer to a create-message request: the message as JSON, or (`stream` true) its events."""
    if request.body.get("stream"):
        return stream_response(backend().stream_message(request))
    return json_response(backend().create_message(request))


def checked(body: Mapping[str, Any], headers: Mapping[str, str], *, counting: bool) -> MessageRequest:
    """The request for the backend, once it keeps the rules of its fields, its betas and its model, files resolved
    (`body` and `headers` the first-party API's, whichever door the request came in by)."""
    note(model=body["model"])
    try:
        rules().check(body, headers, counting=counting)
    except ApiError:
        note(refused_by="model")
        raise
    return MessageRequest(
        body=resolve_file_sources(body, file_store()), headers=headers, client_gone=client_gone(), door=door()
    )


def _with_mantle_model(body: dict[str, Any]) -> dict[str, Any]:
    """The body, its model named by the catalogue's id where Bedrock Mantle's name for it was given."""
    if door() not in MANTLE_DOORS or rules().catalogue.find(body["model"]) is not None:
        return body
    model = rules().catalogue.find_on("mantle", body["model"])
    return body if model is None else {**body, "model": model.id}
