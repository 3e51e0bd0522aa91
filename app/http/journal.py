"""The request journal: every API request received, kept in the shared state store for tests to read.

An entry holds the method, path, query, headers (secrets masked), body, the
status of the response, its request id, the scripted rule that answered, the
door, the model, the scope and what refused it, if a rule did; and what the
response was: its body, or a stream's events with their times, the duration,
the time to the first event and the tokens in and out. It is written before
the response's last bytes are sent, so a client that has its answer can
already read the entry back (`GET /_understudy/requests`), whichever worker
took the call: a stream's as its response starts (a stream not yet ended is
seen), completed as it ends; any other's whole, as it ends. The facts
are the request's record (app/http/facts.py), whose middleware sits outside
everything but the scopes, so it sees the errors every other layer produces,
a 413 included. A body longer than UNDERSTUDY_JOURNAL_MAX_BODY_BYTES is kept
as its size and first 4 KB; a response body alike, and a stream's events up
to that many bytes; the store keeps the journal within its own limits. An
entry that cannot be written (a full disk, say) is lost, never the response it
records.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.types import Scope

from app.http.facts import RequestFacts
from backends.state import StateStore, StoreFull, StoreUnavailable
from backends.wire import SECRET_HEADERS

logger = logging.getLogger("understudy")

MASK = "[masked]"
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


class Journal:
    """Writes one journal entry per observed request, for its client to read back once it has its answer.

    A stream's entry is written as its response starts, so that a test (or the inspector) sees a stream that has
    not ended, and completed as it ends. Any other answer's entry is written whole as its response ends, just before
    its last bytes leave: one write, not two, on the answer's path.
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def started(self, facts: RequestFacts, scope: Scope) -> Awaitable[None] | None:
        entry = {
            "at": facts.at,
            "request_id": facts.request_id,
            "method": facts.method,
            "path": facts.path,
            "query": scope["query_string"].decode("latin-1"),
            "headers": masked_headers(scope["headers"]),
            "body": body_for_journal(bytes(facts.request_body), facts.request_bytes),
            "status": facts.status,
            "rule": facts.rule,
            "door": facts.door,
            "model": facts.model,
            "scope": facts.scope,
            "refused_by": facts.refused_by,
            "streamed": facts.streaming,
        }
        if not facts.streaming:
            facts.journal_entry = entry
            return None
        return self._added(facts, entry)

    def ended(self, facts: RequestFacts) -> Awaitable[None] | None:
        if facts.journal_entry is not None:
            return self._added(facts, {**facts.journal_entry, **ending_of(facts)})
        if facts.journal_id is not None:
            entry_id, ending = facts.journal_id, ending_of(facts)
            return self._kept(facts, lambda: self.store.complete_entry(entry_id, ending))
        return None

    async def _added(self, facts: RequestFacts, entry: dict[str, Any]) -> None:
        # In the request's scope: to_thread copies the context.
        facts.journal_id = await self._kept(facts, lambda: self.store.add_entry(entry))

    async def _kept(self, facts: RequestFacts, write: Callable[[], Any]) -> Any:
        """What `write` returns, run on a thread; None when the store cannot keep it (noted, and said in the log)."""
        try:
            return await asyncio.to_thread(write)
        except StoreFull:
            facts.store_error = "full"
        except StoreUnavailable:
            facts.store_error = "unavailable"
        except Exception:
            logger.exception("could not write a journal entry")
        return None


def ending_of(facts: RequestFacts) -> dict[str, Any]:
    """What an entry gains when its response ends: the response, or the stream's events with their times (in ms
    since the request arrived), and the timing and tokens."""
    ending: dict[str, Any] = {
        "completed": True,
        "route": facts.route,
        "duration_ms": _ms(facts.duration),
        "first_event_ms": _ms(facts.first_event),
        "input_tokens": facts.input_tokens,
        "output_tokens": facts.output_tokens,
        "store_error": facts.store_error,
    }
    if facts.streaming:
        ending["events"] = [{"at_ms": _ms(at), "event": event} for at, event in facts.events]
        ending["events_left_out"] = facts.events_left_out
    else:
        ending["response"] = body_for_journal(bytes(facts.response_body), facts.response_bytes)
    return ending


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
