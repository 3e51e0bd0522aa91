"""Vertex AI's door (doors/vertex.yaml): rawPredict's wire shape in, a Messages request out, and back.

In: the model named in the path as Vertex AI names it (`claude-haiku-4-5@20251001`;
count-tokens names it in the body), the API version in the body, the betas in
the `anthropic-beta` header. Out: the message and its stream exactly as the
first-party API sends them (server-sent events), and Claude's own errors in
the Messages API's shape, as Vertex passes them on; what Google's front end
refuses (a token, a model it does not serve, a quota) in Google's error shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from app.doors import anthropic
from app.doors.base import ErrorAnswer
from backends.catalogue import ModelCatalogue
from backends.wire import JSON, ApiError, compact_json

#: Vertex's body version of the Messages API of 2023-06-01 (the first-party version it stands for).
FIRST_PARTY_VERSIONS = {"vertex-2023-10-16": "2023-06-01"}
#: The body's fields of Vertex's own, or that the Messages request has from elsewhere (a count's model, resolved).
OWN_FIELDS = ("anthropic_version", "model")
#: The failures Google's front end answers itself, with the canonical status it names.
GOOGLE_STATUSES = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}


def model_name(model: str, catalogue: ModelCatalogue) -> str:
    """The catalogue's id for the model Vertex AI calls `model`; a name the catalogue lacks is passed on as given."""
    found = catalogue.find_on("vertex", model)
    return found.id if found is not None else model


def message_body(model: str, body: Mapping[str, Any], *, stream: bool | None = None) -> JSON:
    """The Messages body a rawPredict body stands for: the model added (a count's resolved), the version taken
    out; `stream` set where the route decides it (streamRawPredict)."""
    message: JSON = {"model": model, **{name: value for name, value in body.items() if name not in OWN_FIELDS}}
    if stream is not None:
        message["stream"] = stream
    return message


def message_headers(body: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, str]:
    """The first-party headers a rawPredict request stands for: its version, and its betas and user profile
    (headers on Vertex as on the first-party API)."""
    version = str(body["anthropic_version"])
    kept = {name: headers[name] for name in ("anthropic-beta", "anthropic-user-profile-id") if name in headers}
    return {"anthropic-version": FIRST_PARTY_VERSIONS.get(version, version), **kept}


def error_answer(error: ApiError, request_id: str | None) -> ErrorAnswer:
    """Google's `{"error":{"code","message","status"}}` for what its front end refuses; Claude's errors as they are."""
    status = GOOGLE_STATUSES.get(error.status)
    if status is None:
        return anthropic.error_answer(error, request_id)
    message = error.message if error.status != 401 else f"{HTTPStatus(401).phrase}: {error.message}"
    body = {"error": {"code": error.status, "message": message, "status": status}}
    return ErrorAnswer(error.status, compact_json(body).encode(), error.headers)
