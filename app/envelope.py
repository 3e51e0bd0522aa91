"""The outermost ASGI layer: request ids, the body size limit and the last-resort error.

It wraps Connexion's whole middleware stack, so everything below it — routing,
security, validation, Flask — sees a request that has an id and a body no
larger than the limit, and every response, errors included, leaves with a
`request-id` header.

The size limit is kept without reading the body into memory: a declared
Content-Length over the limit is refused at once, and a body sent without one
(chunked) is counted as it arrives and refused the moment it passes the limit.
A body that stops before its end is a 408, never taken for a shorter body; a
header the API reads one value of, given twice with different values, a 400.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import REQUEST_ID_KEY, RequestTimeout, RequestTooLarge, error_from_exception, error_json
from backends.base import ApiError
from backends.ids import new_id

logger = logging.getLogger("understudy")

#: Where the settings travel in the ASGI scope, for the security handlers.
SETTINGS_KEY = "understudy.settings"
SERVER_HEADER = (b"server", b"understudy")
#: Headers the API reads one value of: given twice with different values, which one counts is anyone's guess.
#: (gunicorn itself refuses a repeated Content-Type, Content-Length or Host.)
SINGLE_VALUED = frozenset({b"anthropic-version", b"x-api-key", b"authorization", b"x-understudy-admin-key"})


class EnvelopeMiddleware:
    """Gives each HTTP request an id and a size limit, and each failure the API's error shape."""

    def __init__(self, app: ASGIApp, *, settings: Any) -> None:
        self.app = app
        self.settings = settings
        self.limit: int = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req")
        scope = {**scope, REQUEST_ID_KEY: request_id, SETTINGS_KEY: self.settings}
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"request-id" for name, _ in headers):
                    headers.append((b"request-id", request_id.encode()))
                headers.append(SERVER_HEADER)
                message = {**message, "headers": headers}
            await send(message)

        try:
            if "\n" in scope["path"]:
                # Starlette's router (Connexion's) mis-routes such a path and Flask's does not, so a view would
                # run without its operation (a 500); no route of the API has a newline in it.
                raise ApiError(404, "Not Found")
            _refuse_conflicting_headers(scope)
            scope, receive = await self._limit_body(scope, _whole_body(receive))
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # the last resort: nothing below handled it
            error = error_from_exception(exc)
            if started:
                logger.error("error after the response started", exc_info=exc)
                return
            await _send_error(send_with_id, error, request_id)

    async def _limit_body(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        """Refuse a declared length over the limit; read a chunked body, counting, and declare its length."""
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError(400, "Content-Length header is not a valid number")
            if int(declared) > self.limit:
                raise RequestTooLarge(self.limit)
            return scope, receive
        if _header(scope, b"transfer-encoding") is None:
            return scope, receive
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                raise RequestTooLarge(self.limit)
        headers = [(name, value) for name, value in scope["headers"] if name != b"transfer-encoding"]
        headers.append((b"content-length", str(len(body)).encode()))
        return {**scope, "headers": headers}, _replay(bytes(body), receive)


def _refuse_conflicting_headers(scope: Scope) -> None:
    seen: dict[bytes, bytes] = {}
    for raw_name, value in scope["headers"]:
        name = raw_name.lower()
        if name in SINGLE_VALUED and seen.setdefault(name, value) != value:
            raise ApiError(400, f"{name.decode()}: the header is given more than once, with different values")


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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives `body` once, then whatever the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _send_error(send: Send, error: ApiError, request_id: str) -> None:
    body = error_json(error, request_id)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    if error.status in (408, 413):
        headers.append((b"connection", b"close"))  # the unread body must not be taken for a next request
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
