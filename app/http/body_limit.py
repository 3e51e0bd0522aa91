"""The request body's size limit, kept without reading the body into memory; a body cut short is a 400.

A declared Content-Length over the limit is refused at once, and a body sent
without one (chunked) is counted as it arrives and refused the moment it
passes the limit. A body that stops before its end is never taken for a
shorter body: it is a 400 invalid_request_error with the error code
`request_body_timeout`, as the SDK models it (BadRequestError, `error_code`).

Some routes have a limit of their own (`route_limits`): a Message Batch may be
256 MB, a file upload 500 MB. A chunked body is read whole and given a
Content-Length, which JSON validation needs; a chunked multipart/form-data
body (an upload) is only counted as it passes, since it is parsed as it
streams (app/spec/multipart.py) and must never be held in memory.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backends.wire import ApiError

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

    def __init__(self, app: ASGIApp, *, limit: int, route_limits: Mapping[tuple[str, str], int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.route_limits = dict(route_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.route_limits.get((scope["method"], scope["path"]), self.limit)
        scope, receive = await self._limit_body(scope, _whole_body(receive), limit)
        await self.app(scope, receive, send)

    async def _limit_body(self, scope: Scope, receive: Receive, limit: int) -> tuple[Scope, Receive]:
        """Refuse a declared length over the limit; read a chunked body, counting, and declare its length."""
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError(400, "Content-Length header is not a valid number")
            if int(declared) > limit:
                raise RequestTooLarge(limit)
            return scope, receive
        if _header(scope, b"transfer-encoding") is None:
            return scope, receive
        if (_header(scope, b"content-type") or "").lower().startswith("multipart/form-data"):
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
