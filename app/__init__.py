"""Understudy's application factory: settings, backend, spec and error handling, wired once.

`create_app()` builds the Connexion FlaskApp that gunicorn serves. The request
path through it, outermost first:

1. `journal.JournalMiddleware` (when the journal is on) — every request recorded;
   `envelope.EnvelopeMiddleware` — request id, body size limit, last-resort errors;
2. Connexion's middleware — routing, security (`auth.py`) and validation
   (`validation.py`), all driven by openapi.yaml;
3. `bridge.FlaskBridge` — into Flask, on a thread, streams sent as produced;
4. `handlers/` — the operationId's function, which delegates to the backend
   (`backends/`) and answers with JSON (`responses.py`) or SSE (`streaming.py`).

Every error on the way becomes an API-shaped error in `errors.py`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import connexion
from connexion.datastructures import MediaTypeDict
from connexion.jsonifier import Jsonifier
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.options import SwaggerUIOptions
from starlette.exceptions import HTTPException

from app.bridge import FlaskBridge
from app.config import ConfigError, Settings, load_settings
from app.envelope import EnvelopeMiddleware
from app.errors import render_error
from app.handlers import EXTENSION_KEY
from app.handlers.admin import STORE_KEY
from app.journal import JournalMiddleware
from app.spec import load_spec
from app.speedups import SECURITY_MAP, ViewFunctions, connexion_middlewares
from app.validation import RequestBodyValidator, RequestParameterValidator
from backends import backend_class
from backends.base import Backend
from backends.catalogue import ModelCatalogue
from backends.state import SQLiteStore, default_state_file

__all__ = ["ConfigError", "create_app"]

VALIDATORS = {"parameter": RequestParameterValidator, "body": MediaTypeDict({"*/*json": RequestBodyValidator})}


def create_app(overrides: Mapping[str, Any] | None = None) -> connexion.FlaskApp:
    """The server, configured from the environment (and `overrides`); raises ConfigError on bad settings."""
    settings = load_settings(overrides=overrides)
    backend = _load_backend(settings)

    store = (
        SQLiteStore(settings.state_file or default_state_file()) if settings.journal_on or settings.admin_key else None
    )
    journal = [functools.partial(JournalMiddleware, store=store)] if store and settings.journal_on else []
    middlewares = [
        *journal,
        functools.partial(EnvelopeMiddleware, settings=settings),
        functools.partial(ServerErrorMiddleware, handler=render_error),
        *connexion_middlewares(),  # the rest of Connexion's stack, its per-request set-up done once (speedups.py)
    ]
    app = connexion.FlaskApp(
        __name__,
        middlewares=middlewares,
        jsonifier=Jsonifier(separators=(",", ":"), ensure_ascii=False),
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/v1/ui"),
        validator_map=VALIDATORS,
        security_map=SECURITY_MAP,  # Connexion's key checks, without a signature inspection per request
        lifespan=_closing(backend),
    )
    app.add_api(
        load_spec(allow_unknown_fields=settings.allow_unknown_fields, admin=bool(settings.admin_key)),
        validate_responses=settings.validate_responses,
    )
    for caught in (connexion.ProblemException, HTTPException, Exception):
        app.add_error_handler(caught, render_error)

    # Connexion reaches Flask through a2wsgi, which strands a thread per dropped stream;
    # our bridge takes its place (see bridge.py). Connexion offers no public hook for this.
    app._middleware_app.asgi_app = FlaskBridge(app.app.wsgi_app, threads=settings.threads)
    app.app.view_functions = ViewFunctions(app.app.view_functions)  # views wrapped once, not per request
    app.app.extensions[EXTENSION_KEY] = backend
    app.app.extensions[STORE_KEY] = store
    return app


def _closing(backend: Backend) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: when the worker stops, the backend lets go of its connections and files."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            backend.close()

    return lifespan


def _load_backend(settings: Settings) -> Backend:
    try:
        catalogue = ModelCatalogue.from_file(settings.models_file)
    except ValueError as error:
        raise ConfigError(f"UNDERSTUDY_MODELS_FILE: {error}") from None
    try:
        return backend_class(settings.backend).from_settings(settings, catalogue)
    except ValueError as error:
        raise ConfigError(f"UNDERSTUDY_BACKEND={settings.backend}: {error}") from None
