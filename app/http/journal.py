"""The request journal: every API request received, kept in the shared state store for tests to read.

An entry holds the method, path, query, headers (secrets masked), body, the
status of the response, its request id and the scripted rule that answered.
It is written before the response starts, so a client that has its answer
can already read the entry back (`GET /_understudy/requests`), whichever
worker took the call. The middleware sits outside everything else, so it
sees the errors every other layer produces, a 413 included. A body longer
than UNDERSTUDY_JOURNAL_MAX_BODY_BYTES is kept as its size and first 4 KB;
the store keeps the journal within its own limits. An entry that cannot be
written (a full disk, say) is lost, never the response it records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backends.state import StateStore, StoreFull, StoreUnavailable
from backends.wire import RULE_HEADER, SECRET_HEADERS

logger = logging.getLogger("understudy")

MASK = "[masked]"
#: Paths not journaled: the admin routes themselves and load-balancer health checks.
UNJOURNALED_PREFIXES = ("/_understudy", "/health")
#: How much of a body longer than the limit an entry keeps, beside its size.
CUT_BODY_START = 4096


def masked_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers as a dict with every secret masked (repeated headers joined by commas)."""
    result: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = MASK if name in SECRET_HEADERS else raw_value.decode("latin-1")
        result[name] = f"{result[name]},{value}" if name in result else value
    return result


def body_for_journal(body: bytes, received: int) -> Any:
    """The body as JSON when it parses, else as text; one longer than what was kept of it, as its size and start."""
    if received > len(body):
        return {"truncated": True, "bytes": received, "start": body[:CUT_BODY_START].decode("utf-8", "replace")}
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return body.decode("utf-8", "replace")


class JournalMiddleware:
    """Writes one journal entry per API request, as its response starts."""

    def __init__(self, app: ASGIApp, *, store: StateStore, max_body_bytes: int) -> None:
        self.app = app
        self.store = store
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNJOURNALED_PREFIXES):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0

        async def recording_receive() -> Message:
            nonlocal received
            message = await receive()
            body = message.get("body", b"")
            if body and received < self.max_body_bytes:
                chunks.append(body[: self.max_body_bytes - received])
            received += len(body)
            return message

        async def journaling_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._record(scope, b"".join(chunks), received, message)
            await send(message)

        await self.app(scope, recording_receive, journaling_send)

    async def _record(self, scope: Scope, body: bytes, received: int, start: Message) -> None:
        response_headers = {name.lower(): value for name, value in start.get("headers", [])}
        entry = {
            "at": time.time(),
            "request_id": response_headers.get(b"request-id", b"").decode() or None,
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "headers": masked_headers(scope["headers"]),
            "body": body_for_journal(body, received),
            "status": start["status"],
            "rule": response_headers.get(RULE_HEADER.encode(), b"").decode() or None,
        }
        try:
            await asyncio.to_thread(self.store.add_entry, entry)  # in the request's scope: to_thread copies it
        except (StoreFull, StoreUnavailable):
            pass  # the store says so in the log
        except Exception:
            logger.exception("could not write a journal entry")
