"""Connexion's problems as the API's errors: validation, security and routing failures in the API's shape.

Every error a client sees is `{"type":"error","error":{"type":…,"message":…},
"request_id":…}` with the type the API documents for its status. Backends
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

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from app.spec.loading import load_spec
from app.spec.validators import CONTENT_TYPE_MESSAGE, EMPTY_BODY_MESSAGE
from backends.wire import REQUEST_ID_KEY, ApiError, error_json

logger = logging.getLogger("understudy")

#: Connexion's own wording, and the API's.
CONNEXION_MESSAGES = {
    "No authorization token provided": "x-api-key header is required",
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
def _allowed_methods() -> list[tuple[re.Pattern[str], str]]:
    """Each path of openapi.yaml as a pattern, with the Allow header of a 405 there: all of its operations."""
    routes = []
    for path, operations in load_spec(admin=True)["paths"].items():
        methods = [method.upper() for method in operations if method != "parameters"]
        methods += ["HEAD"] if "GET" in methods else []
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path))
        routes.append((re.compile(pattern), ", ".join(methods)))
    return routes


def allow_header(path: str) -> str | None:
    """The methods a path of the spec allows, for the Allow header of a 405; None for a path not in it.

    Connexion routes each operation on its own, so Starlette's 405 lists only the methods of the first
    operation on the path (GET /_understudy/requests, say, but not its DELETE).
    """
    return next((allow for pattern, allow in _allowed_methods() if pattern.fullmatch(path)), None)


async def render_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Connexion's error handler: the exception as an API error response."""
    error = error_from_exception(exc)
    if error.status == 405:
        error.headers["Allow"] = allow_header(request.url.path) or error.headers.get("Allow", "")
    if error.status < 500:
        logger.info("%s %s -> %s %s", request.method, request.url.path, error.status, error.message)
    return ConnexionResponse(
        status_code=error.status,
        mimetype="application/json",
        body=error_json(error, request.scope.get(REQUEST_ID_KEY)),
        headers=error.headers,
    )
