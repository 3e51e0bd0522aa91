"""Every private hook into Connexion, Flask, Werkzeug, gunicorn and prometheus_client, behind three doors:
`install(app)`, `install_worker(worker)` and `add_to_histogram(child, ...)`.

Connexion 3 and gunicorn offer no public way to do the following, so this
module does it, pinned to the versions it was written against (setup.cfg) and
watched by tests/unit/test_internals.py, which fails loudly when the upstream
code copied, overridden or patched here changes. With UNDERSTUDY_INTERNALS
off, neither is called and Connexion and gunicorn run as shipped: the same
answers, more slowly, a2wsgi's bridge into Flask instead of ours, and
connections that arrive together may pile onto one worker.

1. The bridge into Flask. Connexion reaches Flask through a2wsgi, which keeps
   a thread for the whole of a response and strands it when a client drops a
   stream; `http/bridge.py` takes its place.
2. Connexion's per-request set-up, done once. py-spy profiles of a worker
   under the echo benchmark (bench/README.md) showed Connexion redoing, on
   every request, work whose result never changes:
   - its security handlers call `inspect.signature` on the key-check
     function, twice per request, to learn whether it takes `request` (8% of
     the worker's time);
   - its request validation middleware builds two URI parsers, a parameter
     validator and a body validator per request, each looking the
     operation's body definition up again, and reads the Content-Type
     through a helper that builds a typing alias on every call (some 6%);
   - its Flask view wrapper (FlaskOperation.fn) builds a decorator, decorates
     the handler (inspecting its signature again) and a URI parser per
     request, then has Flask parse the JSON body that request validation
     already parsed, and werkzeug set up a form parser to find that a JSON
     body holds no files (8%), and turns each parameter name into a Python
     name with three regular-expression substitutions, and looks the
     operation's body definition up again, two or three times;
   - its parameter decorator works out, for every request, each argument the
     operation could give (path and query parameters with their defaults,
     the body, files, the security context) and then keeps those the view
     takes: for the views that take the JSON body alone (creating a message,
     counting its tokens, a batch, the OpenAI-compatible door's chat
     completion), that is the body (8%: a worker's CPU per echo request
     under wrk went from 450 to 411 µs);
   - its Swagger UI middleware routes every request through two Starlette
     routers before passing on one that is not for the UI (4%);
   - its routing middleware finds every request's operation by trying the
     API's routes in turn, through a Mount and a Router, copying the scope at
     each level: a path with no parameters is looked up in a table instead
     (in-process, 227 to 216 µs an echo request).
   The classes here are Connexion's own with that work done once per function
   or per operation. What is checked, in what order, and every error, stay
   the same.
3. gunicorn's asgi worker accepting one connection per wake-up, so that the
   workers share out connections that arrive together (`http/worker.py` says
   why and what it measured): gunicorn creates its server with the loop's
   `create_server` and no backlog; the worker's loop gets one that asks for 1.
4. Its connections given a deadline for a request's headers. gunicorn's asgi
   worker bounds the wait for a second request (its keep-alive timer) but not
   for the first: a connection that sends nothing, or its headers a byte at a
   time, was held for ever. `Protocol` is gunicorn's HTTP/1 protocol with a
   timer from the connection's start to its first complete headers.
5. A stopping worker that drains before it stops. gunicorn's worker, told to
   stop, closes a kept-alive connection right after its current response,
   although that response told the client it could send another request: a
   client that did so just then lost it (19 of 15,423 requests across 5
   SIGHUPs). Here the worker first stops accepting and, for as long as an
   idle connection may stay open (gunicorn's `keepalive`), answers every
   request with `Connection: close`, or until its last connection has gone;
   then it stops as gunicorn's does.
   It stops accepting by removing the listening sockets' readers, and closes
   its servers a turn later: closing them at once loses a connection
   accepted in the same turn. Once stopped, it does not wait out its
   heartbeat (gunicorn's loop sleeps a second between looks at `alive`): the
   sleep is cancelled, which gunicorn's loop takes as its cue to shut down.
   An idle server stopped in 0.6 s instead of 1.5.
6. The spec checked once. Connexion checks the whole spec against the
   OpenAPI schema (and every default against its own schema) each time an
   API is added: 0.2 to 0.5 s, two thirds of building the app, in every
   gunicorn worker and every app a test builds. Here a spec that passed is
   remembered by a digest of its JSON (3 ms), and the same spec is not
   checked again in this process, nor in gunicorn's workers, which fork from
   the master that checked it when it checked the configuration, nor by the
   next server to start (`spec/passed_specs.py` keeps the digests on disk).
   Any other spec is checked as Connexion checks it.
7. gunicorn's HTTP parser in C (gunicorn_h1c, installed with Understudy)
   for `Protocol`, a subclass of gunicorn's. gunicorn asks whether the C
   parser is installed through the class of the connection's protocol, and
   caches the answer on that class, but reads one part of it (whether the
   parser enforces the request limits) off ASGIProtocol: asked first through
   `Protocol`, that part is never set, and every connection falls back to
   the parser in Python (some 6% of a worker's time under wrk, against 1.6%).
   Asking through ASGIProtocol first caches the answer where gunicorn reads
   it, and `Protocol` inherits it.
8. Many observations added to a prometheus_client histogram at once. Its
   public `observe` takes one value, and writes two of the shared files'
   values for it; the metrics (app/observing/metrics.py) add each worker's
   requests up in memory and write the sums once a second, so a histogram's
   buckets and sum are added to as `observe` adds to them, by a count each.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import signal
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import connexion
import connexion.spec
import flask
from connexion import decorators, lifecycle, security, utils
from connexion.apps import flask as flask_apps
from connexion.context import operation
from connexion.datastructures import MediaTypeDict
from connexion.decorators import parameter
from connexion.decorators.parameter import SyncParameterDecorator
from connexion.http_facts import FORM_CONTENT_TYPES
from connexion.middleware import request_validation, routing, swagger_ui
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.operations import OpenAPIOperation
from connexion.utils import inspect_function_arguments
from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers.gasgi import ASGIWorker
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.bridge import FlaskBridge
from app.http.parsed_body import parsed_body
from app.spec import passed_specs
from backends.wire import ApiError, error_json, new_id

#: How many media types (with charsets) of one operation keep their verdict and body validator; others are redone.
BODY_VALIDATORS_PER_OPERATION = 8
#: How many names the sanitizer remembers: openapi.yaml has some sixty; a bound all the same, as a handler taking
#: **kwargs would be handed a client's own query names.
SANITIZED_NAMES = 512


@functools.cache
def _accepts_kwarg(function: Callable[..., Any], keyword: str) -> bool:
    """Whether `function` takes `keyword`: Connexion's check, remembered (the functions are the spec's, fixed)."""
    arguments, has_kwargs = inspect_function_arguments(function)
    return has_kwargs or keyword in arguments


class ApiKeySecurityHandler(security.ApiKeySecurityHandler):
    """Connexion's x-api-key handler, inspecting the check function's signature once."""

    _accepts_kwarg = staticmethod(_accepts_kwarg)


class BearerSecurityHandler(security.BearerSecurityHandler):
    """Connexion's Bearer handler, inspecting the check function's signature once."""

    _accepts_kwarg = staticmethod(_accepts_kwarg)


#: The security handlers for the two schemes openapi.yaml declares.
SECURITY_MAP = {"apiKey": ApiKeySecurityHandler, "bearer": BearerSecurityHandler}


class RequestValidationOperation(request_validation.RequestValidationOperation):
    """Connexion's request validation of one operation, its parsers and validators built once.

    `__call__` is Connexion's (connexion 3.3, middleware/request_validation.py) step for step;
    only the construction of the URI parser, the parameter validator, the accepted media types
    and the body validator moved out of the request path. They hold no per-request state.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._body_validator = functools.lru_cache(maxsize=BODY_VALIDATORS_PER_OPERATION)(self._make_body_validator)
        self._accepts = functools.lru_cache(maxsize=BODY_VALIDATORS_PER_OPERATION)(self._accepts_uncached)

    @functools.cached_property
    def _uri_parser(self) -> Any:
        return self._operation.uri_parser_class(self._operation.parameters, self._operation.body_definition())

    @functools.cached_property
    def _parameter_validator(self) -> Any:
        return self._validator_map["parameter"](  # type: ignore[operator]
            self._operation.parameters,
            uri_parser=self._uri_parser,
            strict_validation=self.strict_validation,
            security_query_params=self.security_query_params,
        )

    @functools.cached_property
    def _consumes(self) -> MediaTypeDict:
        return MediaTypeDict([(media_type.lower(), None) for media_type in self._operation.consumes])

    def _accepts_uncached(self, mime_type: str) -> bool:
        return not self._operation.consumes or mime_type.lower() in self._consumes

    def validate_mime_type(self, mime_type: str) -> None:
        if not self._accepts(mime_type):
            super().validate_mime_type(mime_type)  # raises Connexion's own UnsupportedMediaTypeProblem

    def extract_content_type(self, headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:  # type: ignore[override]
        # Connexion's (utils.extract_content_type) builds a typing alias on every call: 2% of a worker's time.
        mime_type, encoding = utils.split_content_type(_content_type(headers))
        if mime_type is None:
            mime_type = self._operation.consumes[0] if self._operation.consumes else "application/octet-stream"
        return mime_type, encoding or "utf-8"

    def _make_body_validator(self, mime_type: str, encoding: str) -> Any:
        """The body validator for one media type and charset, or None when the body is not validated."""
        schema = self._operation.body_schema(mime_type)
        if not schema:
            return None
        try:
            validator_class = self._validator_map["body"][mime_type]  # type: ignore[index]
        except KeyError:
            message = f"Skipping validation. No validator registered for content type: {mime_type}."
            request_validation.logger.info(message)
            return None
        return validator_class(
            schema=schema,
            required=self._operation.request_body.get("required", False),
            nullable=utils.is_nullable(self._operation.body_definition(mime_type)),
            encoding=encoding,
            strict_validation=self.strict_validation,
            uri_parser=self._uri_parser,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._parameter_validator.validate(scope)
        mime_type, encoding = self.extract_content_type(scope["headers"])
        self.validate_mime_type(mime_type)
        validator = self._body_validator(mime_type, encoding)
        if validator is not None:
            receive, scope = await validator.wrap_receive(receive, scope=scope)
        await self.next_app(scope, receive, send)


class RequestValidationAPI(request_validation.RequestValidationAPI):
    def make_operation(self, operation: Any) -> RequestValidationOperation:
        return RequestValidationOperation(
            self.next_app,
            operation=operation,
            strict_validation=self.strict_validation,
            validator_map=self.validator_map,
        )


class RequestValidationMiddleware(request_validation.RequestValidationMiddleware):
    """Connexion's request validation middleware, with the operations above."""

    api_cls = RequestValidationAPI


def _content_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The first Content-Type header's value, as connexion.utils.extract_content_type finds it."""
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.decode("latin-1")
    return None


class SwaggerUIMiddleware(swagger_ui.SwaggerUIMiddleware):
    """Connexion's Swagger UI middleware, which lets a request for none of its paths straight through.

    Connexion's runs every request through two levels of Starlette routers before handing one that is
    not for the UI to the next app (some 4% of a worker's time). This one sends only requests under
    the paths its routes serve (`/openapi.json`, `/v1/ui`, …) to them, and the rest on at once.
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._prefixes: tuple[str, ...] = ()

    def add_api(self, *args: Any, **kwargs: Any) -> None:
        super().add_api(*args, **kwargs)
        self._prefixes = tuple(_route_prefixes(self.router.routes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path") and not scope["path"].startswith(self._prefixes):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _route_prefixes(routes: list[BaseRoute], base: str = "") -> list[str]:
    """The path prefixes under which `routes` (mounts followed down) can match anything."""
    prefixes = []
    for route in routes:
        path = base + getattr(route, "path", "")
        if isinstance(route, Mount) and route.routes:
            prefixes += _route_prefixes(route.routes, path)
        else:
            prefixes.append(path.split("{", 1)[0])  # a path parameter matches anything after it
    return prefixes


class RoutingMiddleware(routing.RoutingMiddleware):
    """Connexion's routing middleware, which looks a request for a path without parameters up in a table.

    Connexion's tries the API's routes in turn (under a Mount, in a Router of their own), copying the scope at each
    level, to find the operation a request is for. A path with no parameters names its operation outright: the
    table, built from the same routes as the API is added, maps (method, path) to it, and the request is handed on
    as Connexion's RoutingOperation hands it on. Any other request goes through the routers: a path with
    parameters, one under a root path, and one the table leaves out because a route before it would match it first.
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.static: dict[tuple[str, str], tuple[str, routing.RoutingOperation]] = {}

    def add_api(self, *args: Any, **kwargs: Any) -> None:
        super().add_api(*args, **kwargs)
        self.static = static_routes(self.router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self.static.get((scope["method"], scope["path"]))
            if found is not None:
                base_path, operation = found
                await operation.next_app(_routed(scope, base_path, operation.operation_id), receive, send)
                return
        await super().__call__(scope, receive, send)


def _routed(scope: Scope, base_path: str, operation_id: str | None) -> Scope:
    """What RoutingOperation hands on: a copy of the scope, its operation noted (and no path parameters)."""
    routed = dict(scope)
    routed.setdefault("path_params", {})
    extensions = routed.setdefault("extensions", {})
    extensions.setdefault(ROUTING_CONTEXT, {}).update({"api_base_path": base_path, "operation_id": operation_id})
    return routed


def static_routes(routes: Sequence[BaseRoute]) -> dict[tuple[str, str], tuple[str, routing.RoutingOperation]]:
    """(method, path) → (the API's base path, its operation), for each route whose path has no parameters and that
    Starlette's routers reach first (the first route that fully matches a request takes it)."""
    table: dict[tuple[str, str], tuple[str, routing.RoutingOperation]] = {}
    earlier: list[tuple[str, BaseRoute]] = []

    def add(routes: Sequence[BaseRoute], base_path: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                add(route.routes, base_path + route.path)
                continue
            if (
                isinstance(route, Route)
                and isinstance(route.endpoint, routing.RoutingOperation)
                and not route.param_convertors
            ):
                for method in route.methods or ():
                    key = (method, base_path + route.path)
                    if key not in table and not any(_takes(other, base, *key) for base, other in earlier):
                        table[key] = (base_path, route.endpoint)
            earlier.append((base_path, route))

    add(routes, "")
    return table


def _takes(route: BaseRoute, base_path: str, method: str, path: str) -> bool:
    """Whether `route`, under `base_path`, fully matches a request for `path` by `method`."""
    if not path.startswith(base_path):
        return False
    scope = {"type": "http", "method": method, "path": path[len(base_path) :], "root_path": ""}
    return route.matches(scope)[0] == Match.FULL


#: Connexion's own middleware classes, and the ones above that take their place.
REPLACEMENTS = {
    routing.RoutingMiddleware: RoutingMiddleware,
    request_validation.RequestValidationMiddleware: RequestValidationMiddleware,
    swagger_ui.SwaggerUIMiddleware: SwaggerUIMiddleware,
}


class FlaskDecorator(decorators.FlaskDecorator):
    """Connexion's wrapper of a Flask view, decorating it once and handing it the body validation parsed.

    Connexion's (decorators/main.py, WSGIDecorator.__call__) decorates the handler again on every
    request and builds a URI parser for it; this one decorates once and keeps the parser of the
    operation. The body: Connexion's WSGIRequest.get_body would parse the JSON again with Flask;
    the request's body is set to the object request validation parsed and checked instead.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._parser: tuple[Any, Any] | None = None  # (operation, its URI parser), swapped whole

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        decorated = self.decorate(function)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # What Connexion's Flask framework.get_request builds, with the request class below.
            request = WSGIRequest(flask.request, uri_parser=self._uri_parser(), view_args=flask.request.view_args)
            scope = flask.request.environ.get("asgi.scope") or {}
            box = parsed_body(scope)
            if box is not None:
                request._body = box.value  # what get_body would parse from the same bytes
            return decorated(request)

        return wrapper

    @property
    def _parameter_decorator_cls(self) -> type[SyncParameterDecorator]:
        return ParameterDecorator

    def _uri_parser(self) -> Any:
        current = operation._get_current_object()  # type: ignore[attr-defined]
        if self._parser is None or self._parser[0] is not current:
            self._parser = (current, self.uri_parser)
        return self._parser[1]


class ParameterDecorator(SyncParameterDecorator):
    """Connexion's parameter decorator, remembering how it sanitizes each name, and handing a view that takes the
    request's JSON body alone just that.

    Connexion turns every parameter and body name into a Python name with three regular-expression
    substitutions, on every request, for names that never change. And for every request it works out each
    argument the operation could give (path and query parameters with their defaults, the body, files,
    the security context) before it keeps those the function takes (decorators/parameter.py, prep_kwargs).
    For a function whose one argument is `body`, of an operation with no path parameters whose body is
    named `body`, given a JSON object, what it works out is `{"body": that object}` (a query parameter is
    kept only for a function that takes it); the view is called with it directly. Any other function,
    operation or body (form data, null) goes Connexion's way.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        sanitize: Callable[[str], str] = self.sanitize_fn  # type: ignore[has-type]
        self.sanitize_fn = functools.lru_cache(maxsize=SANITIZED_NAMES)(sanitize)
        self._body_alone: tuple[Any, bool] | None = None  # (operation, whether it gives the body alone), swapped whole

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        connexions = super().__call__(function)
        arguments, has_kwargs = inspect_function_arguments(parameter.unwrap_decorators(function))
        if has_kwargs or arguments != ["body"]:
            return connexions

        @functools.wraps(function)
        def wrapper(request: lifecycle.WSGIRequest) -> Any:
            if self._gives_the_body_alone() and request.mimetype not in FORM_CONTENT_TYPES:
                body = request.get_body()
                if isinstance(body, dict):
                    return function(body=body)
            return connexions(request)

        return wrapper

    def _gives_the_body_alone(self) -> bool:
        current = operation._get_current_object()  # type: ignore[attr-defined]
        if self._body_alone is None or self._body_alone[0] is not current:
            alone = (
                current.is_request_body_defined
                and current.body_name(None) == "body"
                and not any(defined["in"] == "path" for defined in current.parameters)
            )
            self._body_alone = (current, alone)
        return self._body_alone[1]


class WSGIRequest(lifecycle.WSGIRequest):
    """Connexion's request for a Flask view, which knows that only a multipart body holds files, and that a
    request without a query string has no query parameters."""

    @property
    def query_params(self) -> dict[str, Any]:
        # Connexion's has werkzeug parse the query string and resolves what it finds by the operation's
        # parameters, on every request: with nothing to parse, that is always {}.
        if self._query_params is None and not self.environ.get("QUERY_STRING"):  # type: ignore[has-type]
            self._query_params: dict[str, Any] = {}
        return super().query_params  # type: ignore[no-any-return]

    def files(self) -> dict[str, Any]:
        # werkzeug finds files in multipart/form-data bodies alone; for any other it still builds a form
        # parser, on every request, to find none.
        if self.mimetype != "multipart/form-data":
            return {}
        return super().files()  # type: ignore[no-any-return]


class FlaskOperation(flask_apps.FlaskOperation):
    """Connexion's Flask view of one operation, with its wrapper built once rather than per request."""

    @functools.cached_property
    def fn(self) -> Callable[..., Any]:  # type: ignore[override]
        return FlaskDecorator(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)


class ViewFunctions(dict[str, Callable[..., Any]]):
    """Flask's table of views (`Flask.view_functions`), turning each Connexion view registered into the one above.

    Connexion registers its views when the middleware stack is first built, at start-up, through
    Flask's `add_url_rule`, which stores them here.
    """

    def __setitem__(self, endpoint: str, view: Callable[..., Any]) -> None:
        if isinstance(view, flask_apps.FlaskOperation) and not isinstance(view, FlaskOperation):
            view = FlaskOperation(view._fn, view.jsonifier, view.operation_id, view.pythonic_params)
        super().__setitem__(endpoint, view)


#: Connexion's lookup of an operation's request body definition for a media type.
_connexions_body_definition = OpenAPIOperation.body_definition


def _body_definition_once(self: OpenAPIOperation, content_type: str | None = None) -> dict[str, Any]:
    """Connexion's `body_definition`, remembered per operation and media type (for a few media types each).

    Connexion's builds a media-type dictionary of the body's content and looks the type up in it, two or
    three times a request, to find the same definition of the spec each time (it returns the spec's own dict).
    """
    remembered: dict[str | None, dict[str, Any]] = self.__dict__.setdefault("_understudy_body_definitions", {})
    found = remembered.get(content_type)
    if found is None:
        found = _connexions_body_definition(self, content_type)
        if len(remembered) < BODY_VALIDATORS_PER_OPERATION:  # a client chooses the media type: keep few
            remembered[content_type] = found
    return found


#: Connexion's check of a whole spec against the OpenAPI schema (the one every Specification inherits).
_connexions_check = inspect.getattr_static(connexion.spec.Specification, "_validate_spec").__func__


def _check_spec_once(cls: type[connexion.spec.Specification], spec: dict[str, Any]) -> None:
    """Connexion's `_validate_spec`, skipped for a spec that has passed it, in this process or before it."""
    name = passed_specs.digest(spec)
    if not passed_specs.has_passed(name):
        _connexions_check(cls, spec)  # raises InvalidSpecification for a spec that breaks the schema
        passed_specs.remember_passed(name)


def install(app: connexion.FlaskApp, *, threads: int, on_the_loop: Collection[str] = ()) -> None:
    """Put every hook above into `app`, before its API is added: one call, in the composition root.

    The spec check and the body definitions, a class's, hold for the process from the first call (a spec passes
    or not whoever adds it; an operation's body is defined by its spec alone).
    """
    connexion.spec.OpenAPISpecification._validate_spec = classmethod(_check_spec_once)  # type: ignore[assignment]
    OpenAPIOperation.body_definition = _body_definition_once  # type: ignore[method-assign]
    middleware = app.middleware
    middleware.middlewares = [REPLACEMENTS.get(layer, layer) for layer in middleware.middlewares]
    middleware.options.security_map = SECURITY_MAP
    app._middleware_app.asgi_app = FlaskBridge(app.app.wsgi_app, threads=threads, on_the_loop=on_the_loop)
    app.app.view_functions = ViewFunctions(app.app.view_functions)  # views wrapped once, not per request


def add_to_histogram(child: Any, counts: Sequence[int], total: float) -> None:
    """Add to a prometheus_client histogram's child (`Histogram.labels(...)`) what observing values would have added:
    `counts[i]` values in its i-th bucket (the first whose bound they are at most, +Inf last), summing to `total`.

    prometheus_client's Histogram.observe adds one to that bucket's value and the value to its sum; the buckets
    are kept apart (not cumulative), each in a value of `_buckets`, the sum in `_sum`."""
    for place, count in enumerate(counts):
        if count:
            child._buckets[place].inc(count)
    child._sum.inc(total)


def install_worker(worker: ASGIWorker, *, header_timeout: float) -> None:
    """Put every gunicorn hook into `worker`: call it in the worker's `run`, before gunicorn's."""
    ASGIProtocol._check_h1c_protocol_available()  # 7: the C parser, for Protocol too
    loop = worker.loop
    if isinstance(loop, asyncio.BaseEventLoop):  # uvloop, if chosen, accepts its own way
        loop.create_server = functools.partial(  # type: ignore[method-assign]
            _served_our_way, loop.create_server, worker, header_timeout
        )
    # gunicorn's own SIGTERM handler (set in init_signals, before run) only sets `alive` to False.
    loop.add_signal_handler(signal.SIGTERM, _drain_then_stop, worker)


async def _served_our_way(
    create_server: Callable[..., Awaitable[asyncio.Server]],
    worker: ASGIWorker,
    header_timeout: float,
    _gunicorns_protocol: Callable[[], ASGIProtocol],
    **kwargs: Any,
) -> asyncio.Server:
    """The loop's create_server as gunicorn's `_serve` calls it, with `Protocol` in place of gunicorn's own."""
    worker.serving_task = asyncio.current_task()  # type: ignore[attr-defined]  # `_serve`'s, for _stop
    return await _one_per_wake_up(create_server, worker.cfg.backlog, lambda: Protocol(worker, header_timeout), **kwargs)


async def _one_per_wake_up(
    create_server: Callable[..., Awaitable[asyncio.Server]], backlog: int, *args: Any, **kwargs: Any
) -> asyncio.Server:
    """asyncio's create_server, accepting one connection per wake-up from a queue `backlog` deep.

    asyncio uses its `backlog` argument twice: for listen(), and as how many connections to accept
    per wake-up. Ask for 1, then give the (already listening) socket its queue depth back.
    """
    server = await create_server(*args, **{**kwargs, "backlog": 1})
    listening: socket.socket = kwargs["sock"]
    listening.listen(backlog)
    return server


#: The answer to headers that did not arrive in time (RFC 9110 §15.5.9), in the API's shape, then the connection closes.
def _request_timeout_response() -> bytes:
    body = error_json(ApiError(408, "The request headers did not arrive in time", error_type="timeout_error"), None)
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nrequest-id: {new_id('req')}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class Protocol(ASGIProtocol):
    """gunicorn's HTTP/1 protocol, with a deadline for a connection's first headers and no keep-alive while draining.

    After the first request, gunicorn's keep-alive timer bounds the wait for the next one's headers.
    """

    def __init__(self, worker: ASGIWorker, header_timeout: float) -> None:
        super().__init__(worker)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._bytes_before_headers = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._header_timer = self.worker.loop.call_later(self._header_timeout, self._headers_too_late)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is not None:
            self._bytes_before_headers = True
        super().data_received(data)

    def _on_headers_complete(self) -> Any:
        self._cancel_header_timer()
        return super()._on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)
        if getattr(self.worker, "draining", False) and self.worker.nr_conns == 0:
            _stop(self.worker)  # the drain is over once no connection is left

    def _will_close(self, request: Any, response_requires_close: bool) -> bool:
        return getattr(self.worker, "draining", False) or super()._will_close(request, response_requires_close)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_late(self) -> None:
        """A connection silent from the start is closed; one part-way through its headers gets a 408 first."""
        self._header_timer = None
        if self._bytes_before_headers and not self._closed:
            self._safe_write(_request_timeout_response())
        self._keepalive_timeout()  # gunicorn's close of an idle connection, which also wakes its loop


def _drain_then_stop(worker: ASGIWorker) -> None:
    """SIGTERM: stop accepting, answer with `Connection: close` while idle connections may live, then stop."""
    if getattr(worker, "draining", False):
        return
    worker.draining = True  # type: ignore[attr-defined]
    stop_accepting(worker.loop, worker.servers)
    if worker.nr_conns == 0:
        _stop(worker)  # nothing to drain (Protocol.connection_lost stops it when the last connection goes)
    else:
        worker.loop.call_later(worker.cfg.keepalive + DRAIN_MARGIN_SECONDS, _stop, worker)


def stop_accepting(loop: asyncio.AbstractEventLoop, servers: list[asyncio.Server]) -> None:
    """Take no more connections, and close the listening sockets a loop turn later (so new ones are refused).

    Closing an asyncio server at once would lose a connection the loop accepted in the same turn:
    the task that attaches it to the server runs a turn later, fails on the closed server (its
    `_attach` asserts the server is open), and leaves the accepted socket unserved until the process
    exits and resets it (about 1 request in 5,000 across SIGHUPs on a loaded machine). Removing the
    sockets' readers stops the accepting at once; the close, queued behind those tasks, comes after.
    """
    for server in servers:
        for listening in server.sockets:
            loop.remove_reader(listening.fileno())
        loop.call_soon(server.close)


#: How much longer than an idle connection's keep-alive the drain lasts, so the last one's timer has fired.
DRAIN_MARGIN_SECONDS = 0.5


def _stop(worker: ASGIWorker) -> None:
    """What gunicorn's own SIGTERM handler does (`alive` false: its loop then shuts down gracefully), at once."""
    worker.alive = False
    serving = getattr(worker, "serving_task", None)
    if serving is not None and _at_heartbeat(serving):
        serving.cancel()  # gunicorn's loop catches the CancelledError and shuts down


def _at_heartbeat(task: asyncio.Task[Any]) -> bool:
    """Whether `task` waits in an asyncio.sleep, as gunicorn's serving loop does between its heartbeats.

    Anywhere else (its lifespan's start-up, creating its servers, its shutdown) a cancel would break it.
    """
    awaiting = getattr(task.get_coro(), "cr_await", None)
    return getattr(awaiting, "cr_code", None) is asyncio.sleep.__code__
