"""HEAD and OPTIONS: answers without a body, on every route.

A HEAD is answered as its GET: the layers below see a GET and answer it
whole (so its response is validated and its Content-Length is the GET's),
and this layer drops the body bytes on their way out, an error's included
(gunicorn logs "ASGI app sent body bytes on a no-body response" otherwise).
A streamed GET (a batch's results) is not made past its first piece: the
HEAD's answer ends there, and the next piece stops the stream as if its
client had gone (a 100,000-line results file took 2 s to make and throw
away).
An OPTIONS names the methods a path allows: no route declares OPTIONS, so the
layers below answer it with a 405 whose Allow header lists the path's methods
(app/spec/problems.py for the spec's routes, Starlette for the docs), and this
layer turns that into a body-less 204 with the same Allow, OPTIONS added. A
path that does not exist stays a 404.
"""

from __future__ import annotations

import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Response headers that describe a body, left out of a 204 (which has none).
BODY_HEADERS = frozenset({b"content-length", b"content-type"})


class BodylessMethodsMiddleware:
    """Answers a HEAD as a GET without the body, and an OPTIONS on an existing route with 204 and Allow."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        bodyless = scope["method"] == "HEAD"
        inner_scope = {**scope, "method": "GET"} if bodyless else scope
        ended = False

        async def send_without_body(message: Message) -> None:
            nonlocal bodyless, ended
            if message["type"] == "http.response.start" and scope["method"] == "OPTIONS" and message["status"] == 405:
                bodyless = True
                message = _allowed_methods(message)
            elif message["type"] == "http.response.body" and bodyless:
                if ended:
                    if message.get("more_body", False):
                        raise BodyNotWanted()  # a stream going on: stop making it
                    return
                # The answer ends here, whether the body would have come in one piece or a stream of them.
                ended = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        with contextlib.suppress(BodyNotWanted):  # where the layer below let it through
            await self.app(inner_scope, receive, send_without_body)


class BodyNotWanted(ConnectionResetError):
    """Raised to the app sending a HEAD's streamed body: stop, as when a client goes (an OSError, as that is)."""


def _allowed_methods(refusal: Message) -> Message:
    """A 405's start as a 204 answering OPTIONS: its Allow header, with OPTIONS, and no body headers."""
    headers = [(name, value) for name, value in refusal.get("headers", []) if name.lower() not in BODY_HEADERS]
    allow = next((value for name, value in headers if name.lower() == b"allow"), b"")
    headers = [(name, value) for name, value in headers if name.lower() != b"allow"]
    methods = [method.strip() for method in allow.split(b",") if method.strip()]
    headers.append((b"allow", b", ".join([*methods, b"OPTIONS"])))
    return {**refusal, "status": 204, "headers": headers}
