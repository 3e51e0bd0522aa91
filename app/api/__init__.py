"""The API that openapi.yaml names: one module per operation group, each function named by an operationId.

A handler receives a request Connexion has already validated (and the key
check in `auth` has passed), hands it to the configured backend and turns the
answer into a response: JSON (`responses`) or server-sent events
(`streaming`). It never checks what the spec can say, and never knows which
backend is running.
"""

from __future__ import annotations

import threading

from flask import current_app, request

from app.doors.base import DOOR_KEY, FIRST_PARTY
from app.http.sigv4 import is_signed
from app.spec.request_rules import RequestRules
from backends.base import Backend
from backends.batches import Batches
from backends.files import FileStore
from backends.state import StateStore
from backends.wire import ON_DISCONNECT_KEY, REQUEST_ID_KEY

#: The operations whose views only ask the backend (and the request rules, and the file store for a file named in a
#: message): with a backend that answers in memory, they may run on the event loop's thread (http/bridge.py).
ASKING_THE_BACKEND = frozenset(
    f"app.api.{name}"
    for name in (
        "messages.create",
        "messages.count_tokens",
        "models.list_models",
        "models.get_model",
        "doors.bedrock_invoke",
        "doors.bedrock_invoke_stream",
        "doors.vertex_raw_predict",
        "doors.vertex_stream_raw_predict",
        "doors.vertex_count_tokens",
        "doors.chat_completions",
    )
)

#: Where the composition root leaves the backend, the state store, the batches, the file store, the request
#: rules and the metrics (None when off), in Flask's `app.extensions`.
BACKEND_KEY = "understudy.backend"
STORE_KEY = "understudy.store"
BATCHES_KEY = "understudy.batches"
FILES_KEY = "understudy.files"
RULES_KEY = "understudy.rules"
METRICS_KEY = "understudy.metrics"


def backend() -> Backend:
    """The backend this app was built with."""
    chosen: Backend = current_app.extensions[BACKEND_KEY]
    return chosen


def rules() -> RequestRules:
    """The rules every Messages request keeps beyond its schema (its fields', its betas', its model's)."""
    kept: RequestRules = current_app.extensions[RULES_KEY]
    return kept


def store() -> StateStore:
    """The state store this app was built with (every app has one)."""
    shared: StateStore = current_app.extensions[STORE_KEY]
    return shared


def client_gone() -> threading.Event:
    """An event set the moment this request's client disconnects (the bridge runs the callbacks)."""
    gone = threading.Event()
    request.environ.setdefault(ON_DISCONNECT_KEY, []).append(gone.set)
    return gone


def batches() -> Batches:
    """Whoever runs the Message Batches: the server itself, or the backend (the proxy's upstream)."""
    running: Batches = current_app.extensions[BATCHES_KEY]
    return running


def file_store() -> FileStore:
    """The Files API's store."""
    files: FileStore = current_app.extensions[FILES_KEY]
    return files


#: Headers of the clouds' own that go no further than the key check: an AWS signature's, Foundry's key header.
PLATFORM_CREDENTIALS = frozenset({"x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "api-key"})


def request_headers() -> dict[str, str]:
    """The request's headers, names in lower case, for the backend: the first-party API's, whichever door the
    request came in by (a cloud's credentials are checked at the door and not handed on)."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    for name in PLATFORM_CREDENTIALS & headers.keys():
        del headers[name]
    if is_signed(headers.get("authorization", "")):
        del headers["authorization"]
    return headers


def request_id() -> str | None:
    """This request's id (the envelope gives every request one)."""
    found: str | None = request.environ.get("asgi.scope", {}).get(REQUEST_ID_KEY)
    return found


def door() -> str:
    """The door this request came in by (app/doors/mounts.py): `anthropic`, `bedrock`, `vertex` …"""
    found: str = request.environ.get("asgi.scope", {}).get(DOOR_KEY) or FIRST_PARTY
    return found
