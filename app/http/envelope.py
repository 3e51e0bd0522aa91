"""The outermost ASGI layer: every request gets an id, every response its `request-id`, every failure the API's shape.

It wraps everything else, so routing, security, validation and Flask all see
a request that carries its id (and the settings, for the key checks) in the
ASGI scope, and every response, errors included, leaves with a `request-id`
header. An exception no inner layer turned into a response ends here: an
`ApiError` is answered as the API would, anything else as a 500 whose details
go to the log, never to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.doors import DOOR_KEY, error_answer
from backends.wire import REQUEST_ID_KEY, SETTINGS_KEY, ApiError, new_id

logger = logging.getLogger("understudy")

SERVER_HEADER = (b"server", b"understudy")


class EnvelopeMiddleware:
    """Gives each HTTP request an id, and each failure that reaches it the API's error shape."""

    def __init__(self, app: ASGIApp, *, settings: Any) -> None:
        self.app = app
        self.settings = settings

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
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # the last resort: nothing below handled it
            if started:
                logger.error("error after the response started", exc_info=exc)
                return
            await send_error(send_with_id, _as_api_error(exc), request_id, scope.get(DOOR_KEY))


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    logger.error("unexpected error", exc_info=exc)
    return ApiError(500, "Internal server error")


async def send_error(send: Send, error: ApiError, request_id: str | None, door: str | None = None) -> None:
    """Answer with `error` in the API's shape (or the door's), as a complete response."""
    answer = error_answer(door, error, request_id)
    headers = [(b"content-type", answer.content_type.encode()), (b"content-length", str(len(answer.body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in answer.headers.items()]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
