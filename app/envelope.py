"""The outermost ASGI layer: request ids, the body size limit and the last-resort error.

It wraps Connexion's whole middleware stack, so everything below it — routing,
security, validation, Flask — sees a request that has an id and a body no
larger than the limit, and every response, errors included, leaves with a
`request-id` header.

The size limit is kept without reading the body into memory: a declared
Content-Length over the limit is refused at once, and a body sent without one
(chunked) is counted as it arrives and refused the moment it passes the limit.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import REQUEST_ID_KEY, RequestTooLarge, error_from_exception, error_json
from backends.base import ApiError
from backends.ids import new_id

logger = logging.getLogger("understudy")

#: Where the settings travel in the ASGI scope, for the security handlers.
SETTINGS_KEY = "understudy.settings"
SERVER_HEADER = (b"server", b"understudy")


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
            scope, receive = await self._limit_body(scope, receive)
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
    if error.status == 413:
        headers.append((b"connection", b"close"))  # the unread body must not be taken for a next request
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
