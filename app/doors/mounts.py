"""Which door each request came in by, and the first-party API under the path prefixes where the clouds serve it.

openapi.yaml's `servers` list, after this server's root, the base paths where
the same API is served again: `/anthropic` (Bedrock Mantle's and Microsoft
Foundry's) and Google Cloud's `/v1/projects/{project}/locations/{location}/workspaces/{workspace}/invoke`,
each naming its door (`x-understudy-door`). A request under one is routed as
the path after it. A door's own operations (doors/*.yaml) name theirs the same
way. Everything else is the first-party door, or Claude Platform on AWS's
when it is signed with AWS Signature Version 4. The door is noted in the
scope for the layers below (the error shape, the handlers, the scripted
backend's `door` match), and in the request's facts (app/http/facts.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from app.doors.base import DOOR_KEY, FIRST_PARTY, SENT_PATH_KEY
from app.http.facts import note
from app.http.sigv4 import is_signed

DOOR_EXTENSION = "x-understudy-door"
#: The one prefix two doors share: Foundry's clients send a key header (`api-key`, `x-api-key`); Mantle's a
#: bearer key or a signature.
SHARED_BY_FOUNDRY = "mantle"
FOUNDRY_KEY_HEADERS = (b"api-key", b"x-api-key")


class DoorMiddleware:
    """Notes each request's door in the scope, and routes a request under a mounted prefix as the path after it."""

    def __init__(self, app: ASGIApp, *, spec: Mapping[str, Any]) -> None:
        self.app = app
        self.mounts = [
            (_pattern(server["url"], prefix=True), server[DOOR_EXTENSION])
            for server in spec.get("servers", [])
            if DOOR_EXTENSION in server
        ]
        self.operations = [
            (_pattern(path), operation[DOOR_EXTENSION])
            for path, operations in spec["paths"].items()
            for operation in operations.values()
            if isinstance(operation, Mapping) and DOOR_EXTENSION in operation
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = self._routed(scope)
            note(door=scope[DOOR_KEY])
        await self.app(scope, receive, send)

    def _routed(self, scope: Scope) -> Scope:
        path = scope["path"]
        for pattern, door in self.mounts:
            found = pattern.match(path)
            if found:
                raw = scope.get("raw_path") or path.encode()
                raw_prefix = pattern.match(raw.decode("latin-1"))
                rest = path[found.end() :]
                return {
                    **scope,
                    "path": rest,
                    "raw_path": raw[raw_prefix.end() :] if raw_prefix else rest.encode(),
                    SENT_PATH_KEY: raw,
                    DOOR_KEY: _foundry_or(door, scope),
                }
        door = next((door for pattern, door in self.operations if pattern.fullmatch(path)), None)
        return {**scope, DOOR_KEY: door or _first_party_door(scope)}


def _pattern(template: str, *, prefix: bool = False) -> re.Pattern[str]:
    """A path template (`{name}` for a segment, or more for an operation's) as a pattern."""
    parts = re.split(r"(\{[^/}]+\})", template.rstrip("/") if prefix else template)
    segment = "[^/]+" if prefix else ".+"
    body = "".join(segment if part.startswith("{") else re.escape(part) for part in parts)
    return re.compile(body + ("(?=/)" if prefix else ""), re.DOTALL)  # a decoded path may hold any character


def _foundry_or(door: str, scope: Scope) -> str:
    if door == SHARED_BY_FOUNDRY and any(name.lower() in FOUNDRY_KEY_HEADERS for name, _ in scope["headers"]):
        return "foundry"
    return door


def _first_party_door(scope: Scope) -> str:
    """The first-party API's door, or Claude Platform on AWS's for a request signed as AWS signs."""
    for name, value in scope["headers"]:
        if name.lower() == b"authorization" and is_signed(value):
            return "aws"
    return FIRST_PARTY
