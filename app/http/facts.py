"""What one request turned out to be, gathered once for whoever reads it: the journal and the metrics.

Each layer that learns a fact notes it in the request's record, `RequestFacts`,
which travels in a context variable as the request's scope does
(backends/state/scopes.py), so every layer reaches it without a parameter: the
door (app/doors/mounts.py), the model (app/api/messages.py), a refusal by the
version's schema (app/spec/validators.py), by the model's rules
(app/api/messages.py) or by a rate limit, a state store's or the
upstream's failure (app/spec/problems.py, for any error a handler raises),
whether it streamed, its events and tokens and a failure mid-stream
(app/observing/backend.py); and here the status, the scripted rule, the
route Connexion chose, the bodies and the timing. `FactsMiddleware` makes the
record and tells its observers (the journal, the metrics) when the response
starts and when it ends; neither reads anything twice.

With neither the journal nor the metrics on, the middleware is not in the
stack: no record is made, and each layer's note is one context-variable read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ratelimits.limiter import RateLimited
from backends.state import StoreFull, StoreUnavailable
from backends.state.scopes import current_scope
from backends.wire import JSON, RULE_HEADER, compact_json

#: Paths not observed: the admin routes, the inspector and the metrics themselves, and load balancers' health checks.
UNOBSERVED_PREFIXES = ("/_understudy", "/health", "/metrics")
#: The prefix of every operationId, left out of a route's name.
HANDLERS_PACKAGE = "app.api."
_RULE_HEADER = RULE_HEADER.encode()

_current: ContextVar[RequestFacts | None] = ContextVar("understudy_facts", default=None)


def current() -> RequestFacts | None:
    """The record of the request being served, if anyone reads one (the journal or the metrics are on)."""
    return _current.get()


@dataclass(eq=False, slots=True)
class RequestFacts:
    """One request's facts, each noted by the layer that knows it. Bodies and events are kept (within `keep_bytes`)
    only for the journal: `keep_bytes` is None when only the metrics read the record."""

    method: str
    path: str
    keep_bytes: int | None
    at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    scope: str = field(default_factory=current_scope)
    door: str | None = None
    route: str | None = None
    model: str | None = None
    status: int | None = None
    #: The response's headers, as it started: its request id and the scripted rule that answered are read from them
    #: when asked for.
    response_headers: Sequence[tuple[bytes, bytes]] = ()
    #: What refused the request, if a rule did: `model` (the model's and the fields' rules), `version` (the
    #: request's API version's schema) or `rate_limit`.
    refused_by: str | None = None
    #: A state store's failure the request met: `full` or `unavailable`.
    store_error: str | None = None
    #: The kind of the proxy's upstream error the request met (backends/proxy/upstream.py, UpstreamError).
    upstream_error: str | None = None
    streaming: bool = False
    #: Seconds from the request's arrival to its first event (streams), and to the end of its response.
    first_event: float | None = None
    duration: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    #: Each event kept, with its time in seconds since the request arrived; how many were left out past the bound.
    events: list[tuple[float, JSON]] = field(default_factory=list)
    events_left_out: int = 0
    request_body: bytearray = field(default_factory=bytearray)
    request_bytes: int = 0
    response_body: bytearray = field(default_factory=bytearray)
    response_bytes: int = 0
    #: The journal entry written for this request, to complete when it ends; or the entry itself, to be written whole
    #: when it ends (a reply that is not a stream: its client has nothing before then).
    journal_id: int | None = None
    journal_entry: dict[str, Any] | None = None
    _kept_event_bytes: int = 0

    def elapsed(self) -> float:
        """Seconds since the request arrived."""
        return time.perf_counter() - self.started

    @property
    def request_id(self) -> str | None:
        """The request id the response gave."""
        return self._response_header(b"request-id")

    @property
    def rule(self) -> str | None:
        """The scripted rule that answered, as the response named it."""
        return self._response_header(_RULE_HEADER)

    def _response_header(self, wanted: bytes) -> str | None:
        for name, value in self.response_headers:
            if name.lower() == wanted:
                return value.decode() or None
        return None

    def note_event(self, event: JSON) -> None:
        """A stream's event, as it is produced: its tokens, the first one's time, and the event itself if kept."""
        at = self.elapsed()
        if self.first_event is None:
            self.first_event = at
        kind = event.get("type")
        if kind == "message_start":
            self.note_usage(event.get("message", {}).get("usage"))
        elif kind == "message_delta":
            self.note_usage(event.get("usage"))
        if self.keep_bytes is None:
            return
        size = len(compact_json(event))
        if self._kept_event_bytes + size > self.keep_bytes:
            self.events_left_out += 1
            return
        self._kept_event_bytes += size
        self.events.append((at, event))

    def note_usage(self, usage: Any) -> None:
        """A reply's (or an event's) usage: the tokens in and out it counts, where it counts them."""
        if not isinstance(usage, dict):
            return
        if isinstance(usage.get("input_tokens"), int):
            self.input_tokens = usage["input_tokens"]
        if isinstance(usage.get("output_tokens"), int):
            self.output_tokens = usage["output_tokens"]


def note(**facts: Any) -> None:
    """Note facts of the request being served, if anyone reads them (a keyword per RequestFacts field)."""
    record = _current.get()
    if record is not None:
        for name, value in facts.items():
            setattr(record, name, value)


def note_failure(error: BaseException) -> None:
    """Note what an exception the request met says: a rate limit's refusal, a state store's or an upstream's failure."""
    record = _current.get()
    if record is None:
        return
    if isinstance(error, RateLimited):
        record.refused_by = "rate_limit"
    elif isinstance(error, StoreFull):
        record.store_error = "full"
    elif isinstance(error, StoreUnavailable):
        record.store_error = "unavailable"
    else:
        # An UpstreamError's kind, read by name: a server that proxies nothing does not import the proxy.
        record.upstream_error = getattr(error, "kind", None)


class Observer(Protocol):
    """Reads a request's facts: when its response starts, and when it ends (however it ends).

    Each returns what the response must wait for before it goes on (the journal's write), or None when it has
    nothing to wait for: most responses are observed by counting in memory, and an await for nothing costs each
    of them as much as the counting.
    """

    def started(self, facts: RequestFacts, scope: Scope) -> Awaitable[None] | None: ...

    def ended(self, facts: RequestFacts) -> Awaitable[None] | None: ...


class FactsMiddleware:
    """Makes each observed request's record, notes what the response says, and tells the observers."""

    def __init__(self, app: ASGIApp, *, observers: Sequence[Observer], keep_bytes: int | None) -> None:
        self.app = app
        self.observers = tuple(observers)
        self.keep_bytes = keep_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNOBSERVED_PREFIXES):
            await self.app(scope, receive, send)
            return
        facts = RequestFacts(scope["method"], scope["path"], self.keep_bytes)
        # An `extensions` dict every copy of the scope below shares, for Connexion's routing to note its operation in
        # (under ROUTING_CONTEXT).
        if scope.get("extensions") is None:
            scope["extensions"] = {}
        responder = _Responder(self, facts, scope, send)
        token = _current.set(facts)
        try:
            await self.app(scope, responder.receive(receive), responder.send)
        finally:
            if not responder.ended:  # a failure, or a disconnect, before the last of the answer
                await responder.end()
            _current.reset(token)


class _Responder:
    """One request's way through FactsMiddleware: what it received and answered, and its end, told once."""

    def __init__(self, middleware: FactsMiddleware, facts: RequestFacts, scope: Scope, send: Send) -> None:
        self.middleware = middleware
        self.facts = facts
        self.scope = scope
        self._send = send
        self.ended = False

    def receive(self, receive: Receive) -> Receive:
        """`receive`, keeping the request's body within the bound (when bodies are kept at all)."""
        if self.facts.keep_bytes is None:
            return receive
        facts, limit = self.facts, self.facts.keep_bytes

        async def recording() -> Message:
            message = await receive()
            body = message.get("body", b"")
            if body and facts.request_bytes < limit:
                facts.request_body += body[: limit - facts.request_bytes]
            facts.request_bytes += len(body)
            return message

        return recording

    async def send(self, message: Message) -> None:
        facts = self.facts
        if message["type"] == "http.response.start":
            facts.status = message["status"]
            facts.response_headers = message.get("headers", ())
            facts.route = _route(self.scope)
            for observer in self.middleware.observers:
                waiting = observer.started(facts, self.scope)
                if waiting is not None:
                    await waiting
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if facts.keep_bytes is not None and not facts.streaming and facts.response_bytes < facts.keep_bytes:
                facts.response_body += body[: facts.keep_bytes - facts.response_bytes]
            facts.response_bytes += len(body)
            if not message.get("more_body", False):
                await self.end()  # before the last of the answer: a client that has it can read the whole entry
        await self._send(message)

    async def end(self) -> None:
        """Tell the observers the response ended, once (its last body, or a failure, or a disconnect)."""
        if self.ended:
            return
        self.ended = True
        self.facts.duration = self.facts.elapsed()
        for observer in self.middleware.observers:
            waiting = observer.ended(self.facts)
            if waiting is not None:
                await waiting


def _route(scope: Scope) -> str | None:
    """The operation Connexion routed the request to (`messages.create`), if any."""
    operation = scope["extensions"].get(ROUTING_CONTEXT, {}).get("operation_id")
    return operation.removeprefix(HANDLERS_PACKAGE) if isinstance(operation, str) else None
