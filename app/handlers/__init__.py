"""Handlers: one module per operation group, each function named by an operationId in openapi.yaml.

A handler receives a request Connexion has already validated, hands it to the
configured backend and turns the answer into a response. It never checks what
the spec can say, and never knows which backend is running.
"""

from __future__ import annotations

from flask import current_app, request

from backends.base import Backend

EXTENSION_KEY = "understudy"


def backend() -> Backend:
    """The backend this app was built with."""
    chosen: Backend = current_app.extensions[EXTENSION_KEY]
    return chosen


def request_headers() -> dict[str, str]:
    """The request's headers, names in lower case, for the backend."""
    return {name.lower(): value for name, value in request.headers.items()}
