"""Which scope a request works in: the API key's, if one is configured to a scope, else the one its header names.

Outermost of Understudy's middleware, so that every layer inside it (the
journal, the handlers on their threads, the backend, the stores) sees the
scope as `current_scope()` (backends/state/scopes.py). A header that names no
valid scope leaves the request in the default scope, for the spec to refuse
(the header's pattern, openapi.yaml's UnderstudyScope): its 400 is the
default scope's to journal, and no state of any scope is touched.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from backends.state.scopes import SCOPE_HEADER, enter_scope, is_scope_name
from backends.wire import client_key

_SCOPE_HEADER = SCOPE_HEADER.encode()


class ScopeMiddleware:
    """Enters the request's scope, from its API key (`key_scopes`: key → scope) or its x-understudy-scope header."""

    def __init__(self, app: ASGIApp, *, key_scopes: Mapping[str, str]) -> None:
        self.app = app
        self.key_scopes = dict(key_scopes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            name = self.scope_of(scope["headers"])
            if name is not None:
                enter_scope(name)  # this request's task's context, and every thread's it hands work to
        await self.app(scope, receive, send)

    def scope_of(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The scope the request names, if any. (The raw headers scanned, since this runs on every request; decoded
        whole only when API keys have scopes, to find the key as every part of the server does: wire.client_key.)"""
        if self.key_scopes:
            key = client_key({name.decode("latin-1"): value.decode("latin-1") for name, value in headers})
            if key in self.key_scopes:
                return self.key_scopes[key]  # a key's scope is not the client's to choose
        named = next((value.decode("latin-1") for name, value in headers if name == _SCOPE_HEADER), None)
        return named if named is not None and is_scope_name(named) else None
