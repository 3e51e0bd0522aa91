"""The request body's size limit, kept without reading the body into memory; a body cut short is a 400.

A declared Content-Length over the limit is refused at once, and a body sent
without one (chunked) is counted as it arrives and refused the moment it
passes the limit. A body that stops before its end is never taken for a
shorter body: it is a 400 invalid_request_error with the error code
`request_body_timeout`, as the SDK models it (BadRequestError, `error_code`).

Some routes have a limit of their own (`route_limits`): a Message Batch may be
256 MB, a file upload 500 MB. A chunked body is counted as it passes, and,
where JSON validation needs a Content-Length (Connexion's own, when
app/internals.py's hooks are off: `read_chunked_whole`), read whole first
and given one: no body is held beyond its route's limit. The upload routes
(`upload_routes`) take only multipart/form-data, which is parsed as it
streams (app/spec/multipart.py): their bodies are only counted as they
pass, never held, and a body of any other type is refused before a byte of
it is read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backends.wire import ApiError

#: The one media type an upload route takes.
MULTIPART = "multipart/form-data"
#: Sent with either refusal: the unread rest of the body must not be taken for a next request.
CLOSE = {"connection": "close"}


class RequestTooLarge(ApiError):
    """The body is over the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request exceeds the maximum allowed size of {limit} bytes", headers=CLOSE)


class RequestTimeout(ApiError):
    """The body stopped short: the client closed the connection, or sent nothing for gunicorn's `timeout`."""

    def __init__(self) -> None:
        super().__init__(
            400, "The request body did not arrive in full in time", headers=CLOSE, error_code="request_body_timeout"
        )


class BodyLimitMiddleware:
    """Refuses a body over `limit` bytes (413) or one that stops short (400), before any layer below reads it.

    `route_limits` gives some routes, by (method, path), a limit of their own: a Message Batch may be 256 MB,
    a file upload 500 MB.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        route_limits: Mapping[tuple[str, str], int] | None = None,
        upload_routes: Collection[tuple[str, str]] = (),
        read_chunked_whole: bool = True,
    ) -> None:
        self.app = app
        self.limit = limit
        self.route_limits = dict(route_limits or {})
        self.upload_routes = frozenset(upload_routes)
        self.read_chunked_whole = read_chunked_whole

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = (scope["method"], scope["path"])
        limit = self.route_limits.get(route, self.limit)
        if route in self.upload_routes:
            _refuse_unless_multipart(scope, limit)
            receive = _counted(_whole_body(receive), limit)
        else:
            scope, receive = await self._limit_body(scope, _whole_body(receive), limit)
        await self.app(scope, receive, send)

    async def _limit_body(self, scope: Scope, receive: Receive, limit: int) -> tuple[Scope, Receive]:
        """Refuse a declared length over the limit; read a chunked body, counting, and declare its length."""
        if _check_declared_length(scope, limit):
            return scope, receive
        if _header(scope, b"transfer-encoding") is None:
            return scope, receive
        if not self.read_chunked_whole:
            return scope, _counted(receive, limit)
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                raise RequestTooLarge(limit)
        headers = [(name, value) for name, value in scope["headers"] if name != b"transfer-encoding"]
        headers.append((b"content-length", str(len(body)).encode()))
        return {**scope, "headers": headers}, replay(bytes(body), receive)


def _refuse_unless_multipart(scope: Scope, limit: int) -> None:
    """An upload route's body: multipart/form-data within the limit, or refused before it is read."""
    if not (_header(scope, b"content-type") or "").lower().startswith(MULTIPART):
        raise ApiError(400, f"Content-Type must be {MULTIPART}", headers=CLOSE)
    _check_declared_length(scope, limit)


def _check_declared_length(scope: Scope, limit: int) -> bool:
    """Whether the body declares its length; refused (400, 413) when that is no number or over the limit."""
    declared = _header(scope, b"content-length")
    if declared is None:
        return False
    if not declared.isdigit():
        raise ApiError(400, "Content-Length header is not a valid number")
    if int(declared) > limit:
        raise RequestTooLarge(limit)
    return True


def _whole_body(receive: Receive) -> Receive:
    """A receive channel on which a body that stops before its end raises RequestTimeout.

    gunicorn hands the app an http.disconnect when the client closes the connection, or sends nothing
    for `timeout` seconds, before the body is complete; taken for the end of the body, a cut body would
    be read as a whole one (a misleading 400 for broken JSON, or a request served that was never sent).
    """
    complete = False

    async def receive_whole() -> Message:
        nonlocal complete
        message = await receive()
        if message["type"] == "http.request":
            complete = complete or not message.get("more_body", False)
        elif message["type"] == "http.disconnect" and not complete:
            raise RequestTimeout()
        return message

    return receive_whole


def _counted(receive: Receive, limit: int) -> Receive:
    """A receive channel that passes the body on as it comes, raising RequestTooLarge once it passes `limit`."""
    received = 0

    async def counting_receive() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise RequestTooLarge(limit)
        return message

    return counting_receive


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives `body` once, then whatever the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
