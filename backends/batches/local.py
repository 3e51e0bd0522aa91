"""The server's own Message Batches: the batch routes answered from the store, in the real API's shapes.

Creating a batch stores it and its requests (store.py); the BatchProcessor
(processor.py) of each worker answers them in the background. Everything here
is the MessageBatch object as the API shapes it — `msgbatch_` ids, RFC 3339
timestamps, request counts that are all `processing` until the batch ends —
and the rules of each call: only an ended batch can be deleted or has results,
and an ended one cannot be canceled.

Every call here is in the request's scope: the store looks batches up in it,
so another scope's batch id is a 404, as an unknown one is.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from backends.batches.base import Batches, Headers, results_path
from backends.batches.store import OUTCOMES, BatchStore, StoredBatch
from backends.exchange import ByteStream, Reply
from backends.wire import JSON, SECRET_HEADERS, ApiError, ConnectionAbort, compact_json, new_id

logger = logging.getLogger("understudy")

#: Headers of the create request that say nothing about its requests: not kept for answering them.
NOT_KEPT = SECRET_HEADERS | {"content-length", "content-type", "host", "connection", "transfer-encoding"}
#: Results read from the store, and sent, per chunk of the results file.
RESULTS_PER_CHUNK = 1000


class LocalBatches(Batches):
    """Batches in the store, answered by the workers' processors."""

    def __init__(
        self,
        store: BatchStore,
        *,
        min_seconds: float = 0.0,
        expire_seconds: float = 24 * 3600.0,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.min_seconds = min_seconds
        self.expire_seconds = expire_seconds
        #: Tells this worker's processor there is new work (the others find it when they next look).
        self.wake = wake
        self.clock = clock

    def create(self, requests: Sequence[Mapping[str, Any]], headers: Headers) -> Reply:
        now = self.clock()
        batch = self.store.create(
            new_id("msgbatch"),
            created_at=now,
            expires_at=now + self.expire_seconds,
            done_after=now + self.min_seconds,
            headers={name: value for name, value in headers.items() if name not in NOT_KEPT},
            requests=[(request["custom_id"], compact_json(request["params"])) for request in requests],
        )
        self.wake()
        return Reply(message_batch(batch))

    def retrieve(self, batch_id: str, headers: Headers) -> Reply:
        return Reply(message_batch(self._batch(batch_id)))

    def page(self, *, after_id: str | None, before_id: str | None, limit: int, headers: Headers) -> Reply:
        if after_id is not None and before_id is not None:
            raise ApiError(400, "after_id and before_id cannot be given together")
        after = None if after_id is None else self._cursor(after_id, "after_id")
        before = None if before_id is None else self._cursor(before_id, "before_id")
        batches, has_more = self.store.page(after=after, before=before, limit=limit)
        return Reply(
            {
                "data": [message_batch(batch) for batch in batches],
                "has_more": has_more,
                "first_id": batches[0].id if batches else None,
                "last_id": batches[-1].id if batches else None,
            }
        )

    def cancel(self, batch_id: str, headers: Headers) -> Reply:
        batch = self.store.request_cancel(batch_id, self.clock())
        if batch is None:
            raise _not_found(batch_id)
        if batch.status == "ended":
            raise ApiError(400, f"Message Batch {batch_id} has already ended and cannot be canceled.")
        self.wake()
        return Reply(message_batch(batch))

    def delete(self, batch_id: str, headers: Headers) -> Reply:
        batch = self.store.delete(batch_id, self.clock())
        if batch is None:
            raise _not_found(batch_id)
        if batch.status != "ended":
            raise ApiError(
                400,
                f"Message Batch {batch_id} is still processing; cancel it and wait for it to end before deleting it.",
            )
        return Reply({"id": batch_id, "type": "message_batch_deleted"})

    def results(self, batch_id: str, headers: Headers) -> ByteStream:
        batch = self._batch(batch_id)
        if batch.status != "ended":
            raise ApiError(
                400,
                f"Message Batch {batch_id} has not finished processing; its results are available once "
                "processing_status is 'ended'.",
            )
        disposition = f"attachment; filename*=utf-8''{batch_id}_results.jsonl"
        return ByteStream(self._results_file(batch), {"content-disposition": disposition})

    def _results_file(self, batch: StoredBatch) -> Iterator[bytes]:
        """The results, a page of them per chunk: each page is read from the store only when it is to be sent.

        A file that comes out short of a line per request (its requests gone from under a download whose
        lease had passed) is never ended as if whole: the connection is cut, as the client must notice.
        """
        lines = 0
        pages = self.store.result_pages(batch, page_size=RESULTS_PER_CHUNK, clock=self.clock)
        with contextlib.closing(pages):
            for page in pages:
                lines += page.count("\n")  # one per result: JSON text holds no raw newline
                yield page.encode()
        if lines != batch.total:
            logger.warning("results of %s cut off after %d of %d lines", batch.id, lines, batch.total)
            raise ConnectionAbort()

    def _batch(self, batch_id: str) -> StoredBatch:
        batch = self.store.get(batch_id)
        if batch is None:
            raise _not_found(batch_id)
        return batch

    def _cursor(self, batch_id: str, parameter: str) -> StoredBatch:
        batch = self.store.get(batch_id)
        if batch is None:
            raise ApiError(400, f"{parameter}: no Message Batch with id '{batch_id}'")
        return batch


def message_batch(batch: StoredBatch) -> JSON:
    """The MessageBatch object for a stored batch."""
    ended = batch.status == "ended"
    counts = dict.fromkeys(OUTCOMES, 0) | (batch.counts or {})
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": batch.status,
        "request_counts": {"processing": 0 if ended else batch.total, **counts},
        "created_at": rfc3339(batch.created_at),
        "expires_at": rfc3339(batch.expires_at),
        "ended_at": rfc3339(batch.ended_at),
        "cancel_initiated_at": rfc3339(batch.cancel_initiated_at),
        "archived_at": None,  # results are kept until the batch is deleted
        "results_url": results_path(batch.id) if ended else None,
    }


def rfc3339(moment: float | None) -> str | None:
    """A Unix time as the API writes times: `2024-08-20T18:37:24.100435Z`."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _not_found(batch_id: str) -> ApiError:
    return ApiError(404, f"Message Batch not found: {batch_id}")
