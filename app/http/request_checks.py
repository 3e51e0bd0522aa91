"""Requests refused before routing: paths no route can have, and headers given twice with different values.

Both are cheap checks on the request line and headers, made before anything
else reads them, so that no inner layer has to guess. For the same reason the
Content-Type's media type is written in lower case (it is case-insensitive,
RFC 9110), its parameters left as they are (a multipart boundary is not):
Connexion picks a body's validator by the exact text, and `Multipart/Form-Data`
reached an upload's handler unparsed (a 500).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from backends.wire import ADMIN_KEY_HEADER, ApiError

#: Headers the API reads one value of: given twice with different values, which one counts is anyone's guess.
#: (gunicorn itself refuses a repeated Content-Type, Content-Length or Host.)
SINGLE_VALUED = frozenset({b"anthropic-version", b"x-api-key", b"authorization", ADMIN_KEY_HEADER.encode()})


class RequestChecksMiddleware:
    """Refuses, in the API's words, a request whose path or headers would be read differently by different layers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if "\n" in scope["path"] or "//" in scope["path"]:
                # Connexion routes with Starlette, then Flask routes again, and the two read these paths
                # differently: werkzeug strips leading slashes and merges inner ones (`//health` is `/health`),
                # Starlette's regexes do not match a newline. A view Connexion never routed would run without
                # its operation (a 500). No route of the API has a newline or an empty segment.
                raise ApiError(404, "Not Found")
            scope = _checked_headers(scope)
        await self.app(scope, receive, send)


def _checked_headers(scope: Scope) -> Scope:
    """The scope, its headers checked (one pass over them): a single-valued header given twice with different
    values is a 400; the Content-Type's media type is written in lower case (the same scope if it already is)."""
    seen: dict[bytes, bytes] = {}
    content_type = None
    for index, (raw_name, value) in enumerate(scope["headers"]):
        name = raw_name.lower()
        if name == b"content-type":
            content_type = index
        elif name in SINGLE_VALUED and seen.setdefault(name, value) != value:
            raise ApiError(400, f"{name.decode()}: the header is given more than once, with different values")
    if content_type is None:
        return scope
    name, value = scope["headers"][content_type]
    media_type, separator, parameters = value.partition(b";")
    if media_type.islower() or media_type == media_type.lower():  # the first test is the cheap one
        return scope
    headers = list(scope["headers"])
    headers[content_type] = (name, media_type.lower() + separator + parameters)
    return {**scope, "headers": headers}
