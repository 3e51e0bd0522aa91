"""Understudy's composition root: `create_app()` builds every part once and wires them together.

The request path, outermost first (README, "How a request travels"):

1. `http/` — ASGI plumbing: `scopes` (whose state the request works in), `facts` (each request's record, for the
   journal and the metrics, when either is on), `methods` (HEAD and
   OPTIONS without a body), then `doors/mounts` (which door the request came
   in by: the first-party API, Bedrock, Vertex AI, the OpenAI-compatible
   endpoint …), `envelope` (request id, the last-resort error in the door's shape),
   `request_checks`, `spec_document` (the spec at /openapi.json, which
   Swagger UI at /v1/ui reads), `body_limit`;
2. Connexion's middleware — routing, security (`api/auth.py`) and validation
   (`spec/validators.py`), all driven by openapi.yaml; its problems worded as
   the API's errors by `spec/problems.py`;
3. `http/bridge.py` — into Flask, on a thread (or, for a view that only asks a backend answering in memory, on
   the event loop's), streams sent as produced;
4. `api/` — the function the operationId names, which delegates to the
   backend (`backends/`) and answers with JSON (`api/responses.py`) or
   server-sent events (`api/streaming.py`); a door's (`api/doors.py`) goes
   through its codec (`doors/`) both ways.

Here, and only here, settings become objects: one state store (every part's,
with every backend), the model catalogue, the request rules it sets (for the
handlers and the batch processor alike), the backend (each given its
constructor arguments explicitly), whoever runs Message Batches (the server's
own, with a processor thread per worker that the app's lifespan starts and
stops, or the backend's), the file store (the Files API's, whatever the
backend), the rate limiter in front of the backend and the batches when
UNDERSTUDY_RATE_LIMITS sets limits (`ratelimits/`), whoever reads each request's facts (the journal, the metrics
when UNDERSTUDY_METRICS is on: `observing/`) with the backend noting its part of them, and the app.
`internals.install` adds the private Connexion and Flask hooks that make it
fast, unless UNDERSTUDY_INTERNALS is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import connexion
from connexion.datastructures import MediaTypeDict
from connexion.jsonifier import Jsonifier
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.options import SwaggerUIOptions
from connexion.validators import JSONResponseBodyValidator
from starlette.exceptions import HTTPException

from app import internals
from app.api import ASKING_THE_BACKEND, BACKEND_KEY, BATCHES_KEY, FILES_KEY, METRICS_KEY, RULES_KEY, STORE_KEY
from app.doors.mounts import DoorMiddleware
from app.http.body_limit import BodyLimitMiddleware
from app.http.envelope import EnvelopeMiddleware
from app.http.facts import FactsMiddleware, Observer
from app.http.journal import Journal
from app.http.memory import MemoryReturnMiddleware, give_memory_back
from app.http.methods import BodylessMethodsMiddleware
from app.http.request_checks import RequestChecksMiddleware
from app.http.scopes import ScopeMiddleware
from app.http.sigv4 import SignatureMiddleware
from app.http.spec_document import SpecDocumentMiddleware
from app.observing.backend import ObservedBackend
from app.ratelimits.guards import rate_limited
from app.settings import ConfigError, Settings, load_settings
from app.spec.batch_params import params_check
from app.spec.loading import load_spec
from app.spec.multipart import MultipartBodyValidator, upload_routes
from app.spec.problems import render_error
from app.spec.request_rules import RequestRules
from app.spec.validators import RequestBodyValidator, RequestParameterValidator
from backends import backend_class
from backends.base import Backend
from backends.batches import Batches, BatchProcessor, BatchStore, LocalBatches, SQLiteBatchStore
from backends.catalogue import DEFAULT_FILE, ModelCatalogue
from backends.exchange import MessageRequest, Reply
from backends.files import FileStore, default_files_dir, resolve_file_sources, shared_files_dir
from backends.state import SQLiteStore, StateStore, StoreUnavailable, default_state_file

if TYPE_CHECKING:
    from app.observing.metrics import Metrics

__all__ = ["ConfigError", "check_configuration", "create_app"]

#: An upload's body may exceed its file by this much: the multipart framing and the other fields.
MULTIPART_ALLOWANCE = 1024 * 1024


def create_app(overrides: Mapping[str, Any] | None = None) -> connexion.FlaskApp:
    """The server, configured from the environment (and `overrides`); raises ConfigError on bad settings."""
    settings = load_settings(overrides=overrides)
    store = _store(settings)
    catalogue = _catalogue(settings)
    backend = _backend(settings, catalogue, store)
    rules = RequestRules(catalogue)
    spec = load_spec(
        allow_unknown_fields=settings.allow_unknown_fields, admin=bool(settings.admin_key), metrics=settings.metrics
    )
    files = _files(settings, store)
    metrics = _metrics(settings, catalogue, backend)
    batches, processor = _batches(settings, backend, store, files, params_check(spec, rules), metrics)
    served, batches = rate_limited(settings, store, catalogue, backend, batches)  # as they are without limits
    observers = _observers(settings, store, metrics)
    if observers:  # only then does anyone read what the backend's answers say
        served = ObservedBackend(served)

    app = connexion.FlaskApp(
        __name__,
        middlewares=_middlewares(settings, spec, observers),
        jsonifier=Jsonifier(separators=(",", ":"), ensure_ascii=False),
        # The UI only: the spec it reads is served by SpecDocumentMiddleware, as loaded.
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/v1/ui", serve_spec=False),
        validator_map=_validators(settings, files),
        lifespan=_lifespan(backend, processor, metrics),
    )
    if settings.internals:
        internals.install(app, threads=settings.threads, on_the_loop=_on_the_loop(served, store))
    app.add_api(spec, validate_responses=settings.validate_responses)
    for caught in (connexion.ProblemException, HTTPException, Exception):
        app.add_error_handler(caught, render_error)
    app.app.extensions[BACKEND_KEY] = served
    app.app.extensions[STORE_KEY] = store
    app.app.extensions[BATCHES_KEY] = batches
    app.app.extensions[FILES_KEY] = files
    app.app.extensions[RULES_KEY] = rules
    app.app.extensions[METRICS_KEY] = metrics
    return app


def check_configuration() -> None:
    """Build the app once and let go of it: what gunicorn's master does before it forks (gunicorn.conf.py).

    Everything a worker builds is built, so a bad setting or a script that will not load stops start-up
    with one line (ConfigError); then the backend, the file store and the state store are closed, so that
    no SQLite connection is carried across fork() into the workers.
    """
    app = create_app()
    store = app.app.extensions[STORE_KEY]
    try:
        store.ping()
    except StoreUnavailable:
        raise ConfigError(f"UNDERSTUDY_STATE_URL: cannot reach the state store at {store.location}") from None
    app.app.extensions[BACKEND_KEY].close()
    app.app.extensions[FILES_KEY].close()
    app.app.extensions[STORE_KEY].close()


def _middlewares(settings: Settings, spec: Mapping[str, Any], observers: list[Observer]) -> list[Any]:
    """Ours, outermost first, then Connexion's own stack (its ServerErrorMiddleware given our error handler)."""
    uploads = upload_routes(spec)
    # Bodies and events are kept for the journal only, within its bound; no record at all when nobody reads one.
    keep_bytes = settings.journal_max_body_bytes if settings.journal_on else None
    facts = [functools.partial(FactsMiddleware, observers=observers, keep_bytes=keep_bytes)] if observers else []
    return [
        functools.partial(ScopeMiddleware, key_scopes=dict(settings.key_scopes)),
        *facts,
        MemoryReturnMiddleware,
        BodylessMethodsMiddleware,
        functools.partial(DoorMiddleware, spec=spec),
        functools.partial(EnvelopeMiddleware, settings=settings),
        RequestChecksMiddleware,
        functools.partial(SpecDocumentMiddleware, spec=spec),
        functools.partial(
            BodyLimitMiddleware,
            limit=settings.max_body_bytes,
            route_limits={
                ("POST", "/v1/messages/batches"): settings.max_batch_bytes,
                **dict.fromkeys(uploads, settings.max_file_bytes + MULTIPART_ALLOWANCE),
            },
            upload_routes=uploads,
            # Our JSON validator streams a body of unknown length; Connexion's, without the hooks, cannot.
            read_chunked_whole=not settings.internals,
        ),
        functools.partial(SignatureMiddleware, credentials=dict(settings.aws_credentials)),
        functools.partial(ServerErrorMiddleware, handler=render_error),
        *ConnexionMiddleware.default_middlewares[1:],
    ]


def _metrics(settings: Settings, catalogue: ModelCatalogue, backend: Backend) -> Metrics | None:
    """The metrics /metrics serves, when UNDERSTUDY_METRICS is on."""
    if not settings.metrics:
        return None
    from app.observing.metrics import Metrics  # only a server with metrics on imports prometheus_client

    return Metrics(catalogue, backend.name)


def _observers(settings: Settings, store: StateStore, metrics: Metrics | None) -> list[Observer]:
    """Who reads each request's facts: the journal (which writes its entry first), the metrics."""
    journal: list[Observer] = [Journal(store)] if settings.journal_on else []
    return journal + ([metrics] if metrics is not None else [])


def _on_the_loop(backend: Backend, store: StateStore) -> frozenset[str]:
    """The operations whose views run on the event loop's thread: those that only ask a backend that answers in
    memory, while the store is a local SQLite file (a Redis that stops answering would hold the loop for its
    timeouts); none otherwise. The rest run on a pool thread each (http/bridge.py)."""
    return ASKING_THE_BACKEND if backend.answers_in_memory and isinstance(store, SQLiteStore) else frozenset()


def _store(settings: Settings) -> StateStore:
    """The one state store every part shares: the journal, the admin routes, scripts, the echo backend's prompt
    cache, Message Batches (which the server runs for every backend but the proxy, whose upstream runs them),
    the files' metadata (kept with every backend, so the store is always opened) and rate limits.

    In the Redis UNDERSTUDY_STATE_URL names (servers on several hosts share it), in the SQLite file it or
    UNDERSTUDY_STATE_FILE names, or in a file of this process's own.
    """
    limits = {
        "max_journal_bytes": settings.journal_max_mb * 1024 * 1024,
        "max_journal_entries": settings.journal_max_entries,
    }
    url = settings.state_url
    if url is not None and not url.startswith("sqlite:"):
        from backends.state.redis_store import RedisStore  # only a server on Redis imports redis-py

        return RedisStore(url, prefix=settings.state_prefix, **limits)
    path = url.removeprefix("sqlite://") if url is not None else settings.state_file
    # With no file named, this process's own, removed with the store.
    return SQLiteStore(default_state_file() if path is None else Path(path), temporary=path is None, **limits)


def _files(settings: Settings, store: StateStore) -> FileStore:
    """The Files API's store: files in UNDERSTUDY_FILES_DIR, else beside the SQLite state file (and then, like a
    state file of this process's own, removed with the store) or, on Redis, in a directory every server on this
    machine that shares the Redis (and the key prefix) shares; their metadata in the shared state store."""
    if settings.files_dir is not None:
        return FileStore(settings.files_dir, store)
    if isinstance(store, SQLiteStore):
        return FileStore(default_files_dir(store.path), store, temporary=store.temporary)
    return FileStore(shared_files_dir(f"{settings.state_url} {settings.state_prefix}"), store)


def _validators(settings: Settings, files: FileStore) -> dict[str, Any]:
    """Connexion's validators: JSON bodies as ours check them, multipart bodies streamed to the file store's spool,
    JSON answers checked (with UNDERSTUDY_VALIDATE_RESPONSES) and nothing else: a text file downloaded is its bytes as
    uploaded, UTF-8 or not, which Connexion's text/plain check would decode (a 500)."""
    # With app/internals.py's hooks, the view takes the parsed body from the scope: the bytes need not follow it.
    json_body = functools.partial(RequestBodyValidator, body_in_scope=settings.internals)
    multipart = functools.partial(
        MultipartBodyValidator, spool_directory=files.spool_directory, max_file_bytes=settings.max_file_bytes
    )
    return {
        "parameter": RequestParameterValidator,
        "body": MediaTypeDict({"*/*json": json_body, "multipart/form-data": multipart}),
        "response": MediaTypeDict({"*/*json": JSONResponseBodyValidator}),
    }


def _catalogue(settings: Settings) -> ModelCatalogue:
    try:
        return ModelCatalogue.from_file(settings.models_file or DEFAULT_FILE)
    except ValueError as error:
        raise ConfigError(f"UNDERSTUDY_MODELS_FILE: {error}") from None


def _backend(settings: Settings, catalogue: ModelCatalogue, store: StateStore) -> Backend:
    """The backend `settings.backend` names, built with what it needs; its mistakes as one-line ConfigErrors."""
    try:
        backend = backend_class(settings.backend)
    except ValueError as error:
        raise ConfigError(f"UNDERSTUDY_BACKEND: {error}") from None
    try:
        return backend(catalogue, **_backend_arguments(settings, store))
    except ValueError as error:
        raise ConfigError(f"UNDERSTUDY_BACKEND={settings.backend}: {error}") from None


def _backend_arguments(settings: Settings, store: StateStore) -> dict[str, Any]:
    """What each backend's constructor takes besides the catalogue, from the settings."""
    if settings.backend == "scripted":
        if settings.script is None:
            raise ValueError("the scripted backend needs a script: set UNDERSTUDY_SCRIPT to a YAML file")
        return {"script_path": settings.script, "store": store}
    if settings.backend == "proxy":
        from backends.proxy.recording import Recorder  # only a proxy server pays for the YAML emitter

        secrets = [key for key in (settings.upstream_api_key, *settings.api_keys, settings.admin_key) if key]
        return {
            "upstream_url": settings.upstream_url,
            "upstream_key": settings.upstream_api_key,
            "secrets": secrets,
            "connect_timeout": settings.upstream_connect_timeout,
            "read_timeout": settings.upstream_read_timeout,
            "max_connections": settings.upstream_connections,
            "max_body_bytes": settings.upstream_max_body_bytes,
            "max_event_bytes": settings.upstream_max_event_bytes,
            "recorder": Recorder(settings.record, secrets) if settings.record else None,
        }
    if settings.backend == "echo":
        return {"any_model": settings.any_model, "store": store}
    return {}


def _batches(
    settings: Settings,
    backend: Backend,
    store: StateStore,
    files: FileStore,
    check: Callable[[Mapping[str, Any], Mapping[str, str]], None],
    metrics: Metrics | None,
) -> tuple[Batches, BatchProcessor | None]:
    """Who runs Message Batches: the backend, if it runs them itself; else the server, with a processor per worker."""
    own = backend.own_batches()
    if own is not None:
        return own, None
    batch_store = _batch_store(store)
    processor = BatchProcessor(
        batch_store,
        _answering_with_files(backend, files),
        check,
        lease_seconds=settings.batch_lease_seconds,
        journal=store if settings.journal_on else None,
        when_idle=give_memory_back,
        on_outcome=metrics.batch_items if metrics is not None else None,
    )
    batches = LocalBatches(
        batch_store,
        min_seconds=settings.batch_min_seconds,
        expire_seconds=settings.batch_expire_seconds,
        wake=processor.wake,
    )
    return batches, processor


def _batch_store(store: StateStore) -> BatchStore:
    """The batches' store, beside the state store: in its SQLite file, or in its Redis."""
    if isinstance(store, SQLiteStore):
        return SQLiteBatchStore(store)
    from backends.batches.redis_store import RedisBatchStore  # only a server on Redis imports redis-py
    from backends.state.redis_store import RedisStore

    assert isinstance(store, RedisStore)
    return RedisBatchStore(store.client, store.prefix)


def _answering_with_files(backend: Backend, files: FileStore) -> Callable[[MessageRequest], Reply]:
    """The backend's create_message for a batch's requests, the files each names resolved first, as
    POST /v1/messages resolves them (app/api/messages.py): a text file quoted, an unknown one an errored result."""

    def answer(request: MessageRequest) -> Reply:
        return backend.create_message(dataclasses.replace(request, body=resolve_file_sources(request.body, files)))

    return answer


def _lifespan(
    backend: Backend, processor: BatchProcessor | None, metrics: Metrics | None
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: the worker's batch processor runs while it does, and its metrics are written now and
    then; then the backend lets go of its connections and files."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        if processor is not None:
            processor.start()
        if metrics is not None:
            metrics.start()
        try:
            yield
        finally:
            if processor is not None:
                await asyncio.to_thread(processor.stop)  # the request being answered finishes first
            if metrics is not None:
                await asyncio.to_thread(metrics.stop)
            backend.close()

    return lifespan
