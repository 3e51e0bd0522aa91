"""The backend, as the handlers call it, with what its answers say noted in the request's record.

Only the composition root wraps it, and only when something reads the record
(the journal or the metrics are on): a reply's usage, a count's tokens, and
for a stream that it streamed, each event as it is produced (its time, its
tokens, and the event itself for the journal). Every door's handler calls the
backend, so every door's requests are noted alike, in the backend contract's
own shapes, before any door's codec reframes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from app.http.facts import RequestFacts, current, note_failure
from backends.base import BackendInFront
from backends.exchange import EventStream, MessageRequest, Reply
from backends.wire import JSON


class ObservedBackend(BackendInFront):
    """`backend`, its answers noted in the record of the request being served."""

    def create_message(self, request: MessageRequest) -> Reply:
        reply = self.backend.create_message(request)
        facts = current()
        if facts is not None:
            facts.note_usage(reply.body.get("usage"))
        return reply

    def stream_message(self, request: MessageRequest) -> EventStream:
        stream = self.backend.stream_message(request)
        facts = current()
        if facts is None:
            return stream
        facts.streaming = True
        return dataclasses.replace(stream, events=_noted(stream.events, facts))

    def count_tokens(self, request: MessageRequest) -> Reply:
        reply = self.backend.count_tokens(request)
        facts = current()
        if facts is not None:
            facts.note_usage(reply.body)  # {"input_tokens": N}
        return reply


def _noted(events: Iterator[JSON], facts: RequestFacts) -> Iterator[JSON]:
    """`events`, each noted as it is produced; closing this closes them (the backend's `finally` runs)."""
    try:
        for event in events:
            facts.note_event(event)
            yield event
    except BaseException as error:
        note_failure(error)  # the stream's end reports it, as an error event
        raise
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
