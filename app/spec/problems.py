"""Connexion's problems as the API's errors: validation, security and routing failures in the API's shape.

Every error a client sees is `{"type":"error","error":{"type":…,"message":…},
"request_id":…}` with the type the API documents for its status, or the same
error in the shape of the door the request came in by (app/doors/). Backends
raise `ApiError`; Connexion raises its problems (validation, security, unknown
routes); anything else is an api_error whose details go to the log, never to
the client. `error_from_exception` is the one place where they all become an
`ApiError`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from app.doors import DOOR_KEY, error_answer
from app.http.facts import note_failure
from app.spec.loading import load_spec
from app.spec.validators import CONTENT_TYPE_MESSAGE, EMPTY_BODY_MESSAGE
from backends.wire import REQUEST_ID_KEY, ApiError

logger = logging.getLogger("understudy")

#: The API's answer to a request without its key (an admin route names its own header instead).
NO_KEY_MESSAGE = "x-api-key header is required"
#: What a 401 of a route that takes HTTP Basic says, so that a browser asks for the admin key (as the password).
BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="Understudy", charset="UTF-8"')
#: Connexion's own wording, and the API's.
CONNEXION_MESSAGES = {
    "No authorization token provided": NO_KEY_MESSAGE,
    "Provided apikey is not valid": "invalid x-api-key",
    "Provided token is not valid": "invalid x-api-key",
    "RequestBody is required": EMPTY_BODY_MESSAGE,
}


def error_from_exception(exc: BaseException) -> ApiError:
    """Any exception as the ApiError a client should see."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ProblemException):
        message = str(exc.detail or exc.title)
        status = 400 if exc.status == 415 else exc.status
        if exc.status == 415:
            message = CONTENT_TYPE_MESSAGE
        return ApiError(status, CONNEXION_MESSAGES.get(message, message), headers=_headers(exc.headers))
    if isinstance(exc, HTTPException):
        return ApiError(exc.status_code, HTTPStatus(exc.status_code).phrase, headers=_headers(exc.headers))
    logger.error("unexpected error", exc_info=exc)
    return ApiError(500, "Internal server error")


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    # Starlette's exceptions may carry an Allow header (405); nothing else of theirs is kept.
    return {name: value for name, value in (headers or {}).items() if name.lower() == "allow"}


@functools.cache
def _spec() -> Mapping[str, Any]:
    """openapi.yaml with the admin routes and /metrics, loaded once (load_spec hands each caller a copy of its own)."""
    return load_spec(admin=True, metrics=True)


@functools.cache
def _paths() -> list[tuple[re.Pattern[str], Mapping[str, Any]]]:
    """Each path of openapi.yaml as a pattern, with its operations by method."""
    return [
        (re.compile(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path))), operations)
        for path, operations in _spec()["paths"].items()
    ]


def _operations(path: str) -> Mapping[str, Any] | None:
    return next((operations for pattern, operations in _paths() if pattern.fullmatch(path)), None)


def allow_header(path: str) -> str | None:
    """The methods a path of the spec allows, for the Allow header of a 405; None for a path not in it.

    Connexion routes each operation on its own, so Starlette's 405 lists only the methods of the first
    operation on the path (GET /_understudy/requests, say, but not its DELETE).
    """
    operations = _operations(path)
    if operations is None:
        return None
    methods = [method.upper() for method in operations if method != "parameters"]
    return ", ".join(methods + (["HEAD"] if "GET" in methods else []))


def _schemes(method: str, path: str) -> list[Mapping[str, Any]]:
    """The security schemes the operation takes, in the spec's order."""
    operation = (_operations(path) or {}).get(method.lower(), {})
    schemes = _spec()["components"]["securitySchemes"]
    return [schemes[name] for requirement in operation.get("security", []) for name in requirement]


def key_header(method: str, path: str) -> str:
    """The header the operation's first security scheme reads its key from (x-api-key, or the admin key's)."""
    for scheme in _schemes(method, path):
        if scheme.get("in") == "header":
            return str(scheme["name"])
    return "x-api-key"


def takes_basic(method: str, path: str) -> bool:
    """Whether the operation takes HTTP Basic credentials (the inspector's routes, /metrics)."""
    return any(scheme.get("scheme") == "basic" for scheme in _schemes(method, path))


async def render_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Connexion's error handler: the exception as an API error response (what it says of the request noted)."""
    note_failure(exc)
    error = error_from_exception(exc)
    if error.status == 401 and error.message == NO_KEY_MESSAGE:
        error = ApiError(401, f"{key_header(request.method, request.url.path)} header is required")
    if error.status == 401 and takes_basic(request.method, request.url.path):
        error.headers[BASIC_CHALLENGE[0]] = BASIC_CHALLENGE[1]  # a browser then asks for the key, once
    if error.status == 405:
        error.headers["Allow"] = allow_header(request.url.path) or error.headers.get("Allow", "")
    if error.status < 500:
        logger.info("%s %s -> %s %s", request.method, request.url.path, error.status, error.message)
    answer = error_answer(request.scope.get(DOOR_KEY), error, request.scope.get(REQUEST_ID_KEY))
    return ConnexionResponse(
        status_code=answer.status, mimetype=answer.content_type, body=answer.body, headers=dict(answer.headers)
    )
