"""The server's own Message Batches, kept in the shared state file: tables `batches` and `batch_items`, with leases.

Every gunicorn worker answers batch requests in the background, and they share
the work through this store. A worker *claims* a run of a batch's unanswered
requests — its claim token and a lease time written on them in one statement,
so no two workers hold the same request — answers them, and writes their
results in one transaction that keeps only the results of requests its claim
still holds. A worker killed mid-run loses nothing: once its lease has passed,
another worker claims those requests again, and since a result is kept only
for the claim that holds its request, every request gets exactly one result.

The tables are in the state store's file, beside the journal and the
scripted sequences (their schema is in backends/state.py), and every change
here is a write of that store's: a full disk is a StoreFull (503), and the
WAL is started over past its limit, as for the store's own writes. Results
are read back a page at a time, in the order of the batch's requests, so a
100,000-request batch is never held in memory whole; a download under way
holds a lease (table `batch_downloads`) that keeps the requests of a batch
deleted meanwhile until it has read them all, so a download is never cut
short by a delete.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from backends.state import SQLiteStore, StoreFull
from backends.wire import compact_json

BATCH_COLUMNS = (
    "number, id, status, total, unanswered, created_at, expires_at, done_after, cancel_initiated_at, ended_at, "
    "counts, headers"
)
OUTCOMES = ("succeeded", "errored", "canceled", "expired")
#: A download of results holds the batch's requests this long past its last renewal (renewed halfway through):
#: a download whose worker died lets go of them once it passes.
DOWNLOAD_LEASE_SECONDS = 600.0

T = TypeVar("T")


@dataclass(frozen=True)
class StoredBatch:
    """One batch as the store holds it."""

    number: int
    id: str
    status: str
    total: int
    unanswered: int
    created_at: float
    expires_at: float
    done_after: float
    cancel_initiated_at: float | None
    ended_at: float | None
    #: Requests per outcome, once the batch has ended.
    counts: dict[str, int] | None
    #: The headers each request is answered with: the create request's, secrets left out.
    headers: dict[str, str]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredBatch:
        """From a row of BATCH_COLUMNS."""
        number, batch_id, status, total, unanswered, created, expires, done_after, canceled, ended = row[:10]
        counts, headers = row[10], row[11]
        return cls(
            number, batch_id, status, total, unanswered, created, expires, done_after, canceled, ended,
            json.loads(counts) if counts else None, json.loads(headers),
        )  # fmt: skip

    def answerable(self, now: float) -> int:
        """How many of the requests may have been answered by `now`: all of them, or evenly across the pace."""
        pace = self.done_after - self.created_at
        if pace <= 0:
            return self.total
        return min(self.total, int(self.total * (now - self.created_at) / pace) + 1)


@dataclass(frozen=True)
class Claimed:
    """A request a worker has claimed, to answer."""

    position: int
    custom_id: str
    params: str  # JSON


@dataclass(frozen=True)
class Answer:
    """A claimed request's result."""

    position: int
    outcome: str  # succeeded or errored
    result: str  # the result object as JSON


class BatchStore:
    """Batches and their requests in the state store's file, every change one transaction of the store's."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def _connection(self) -> sqlite3.Connection:
        return self.store.connection()

    def _transaction(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """`operation` in one write transaction, taken at once (BEGIN IMMEDIATE) so that what it reads no other
        worker changes, and run as the store runs its writes (StoreFull when there is no room)."""

        def transaction(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = operation(connection)
                connection.execute("COMMIT")
                return result
            finally:
                if connection.in_transaction:  # the operation, or the commit, failed
                    connection.execute("ROLLBACK")

        return self.store.write(transaction)

    def _statement(self, sql: str, values: Sequence[Any]) -> list[Any]:
        """One writing statement (its own transaction), run as the store runs its writes; the rows it returns."""
        return self.store.write(lambda connection: connection.execute(sql, values).fetchall())

    # ------------------------------------------------------------------ batches
    def create(
        self,
        batch_id: str,
        *,
        created_at: float,
        expires_at: float,
        done_after: float,
        headers: dict[str, str],
        requests: Sequence[tuple[str, str]],
    ) -> StoredBatch:
        """Store a new batch of (custom_id, params JSON) requests, in_progress, all at once or not at all."""

        def insert(connection: sqlite3.Connection) -> None:
            number = connection.execute(
                "INSERT INTO batches (id, status, total, unanswered, created_at, expires_at, done_after, headers)"
                " VALUES (?, 'in_progress', ?, ?, ?, ?, ?, ?) RETURNING number",
                (batch_id, len(requests), len(requests), created_at, expires_at, done_after, compact_json(headers)),
            ).fetchone()[0]
            connection.executemany(
                "INSERT INTO batch_items (batch, position, custom_id, params) VALUES (?, ?, ?, ?)",
                ((number, position, custom_id, params) for position, (custom_id, params) in enumerate(requests)),
            )

        self._transaction(insert)
        stored = self.get(batch_id)
        assert stored is not None
        return stored

    def get(self, batch_id: str) -> StoredBatch | None:
        """The batch with this id, if there is one."""
        row = self._connection().execute(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if row is None else StoredBatch.from_row(row)

    def page(
        self, *, after: StoredBatch | None, before: StoredBatch | None, limit: int
    ) -> tuple[list[StoredBatch], bool]:
        """Batches newest first: older than `after`, newer than `before`, or the newest; and whether more follow."""
        if before is not None:
            rows = self._connection().execute(
                f"SELECT {BATCH_COLUMNS} FROM batches WHERE number > ? ORDER BY number LIMIT ?",
                (before.number, limit + 1),
            )
            newer = [StoredBatch.from_row(row) for row in rows]
            return newer[:limit][::-1], len(newer) > limit
        rows = self._connection().execute(
            f"SELECT {BATCH_COLUMNS} FROM batches WHERE number < ? ORDER BY number DESC LIMIT ?",
            (after.number if after is not None else 2**63 - 1, limit + 1),
        )
        older = [StoredBatch.from_row(row) for row in rows]
        return older[:limit], len(older) > limit

    def request_cancel(self, batch_id: str, now: float) -> StoredBatch | None:
        """Mark an in_progress batch canceling; the batch as it then is (a batch in another state is unchanged)."""
        self._statement(
            "UPDATE batches SET status = 'canceling', cancel_initiated_at = ? WHERE id = ? AND status = 'in_progress'",
            (now, batch_id),
        )
        return self.get(batch_id)

    def delete(self, batch_id: str, now: float) -> StoredBatch | None:
        """Delete the batch if it has ended; the batch as it was before (None: no such batch).

        Its requests go with it, unless a download of its results is reading them: they then outlive the
        batch until the last such download ends (or its lease passes, `sweep_downloads`).
        """

        def delete_if_ended(connection: sqlite3.Connection) -> StoredBatch | None:
            row = connection.execute(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,)).fetchone()
            batch = None if row is None else StoredBatch.from_row(row)
            if batch is not None and batch.status == "ended":
                connection.execute("DELETE FROM batches WHERE number = ?", (batch.number,))
                _remove_requests_unless_read(connection, batch.number, now)
            return batch

        return self._transaction(delete_if_ended)

    def running(self) -> list[StoredBatch]:
        """The batches that have not ended, oldest first."""
        rows = self._connection().execute(
            f"SELECT {BATCH_COLUMNS} FROM batches WHERE status != 'ended' ORDER BY number"
        )
        return [StoredBatch.from_row(row) for row in rows]

    # ---------------------------------------------------------------- requests
    def claim(self, batch: StoredBatch, token: str, *, now: float, lease_until: float, limit: int) -> list[Claimed]:
        """Claim up to `limit` of the batch's due, unanswered requests that no live lease holds."""
        rows = self._statement(
            "UPDATE batch_items SET claim = ?, lease_until = ? WHERE rowid IN ("
            " SELECT rowid FROM batch_items WHERE batch = ? AND outcome IS NULL AND position < ?"
            " AND (claim IS NULL OR lease_until < ?) ORDER BY position LIMIT ?"
            ") RETURNING position, custom_id, params",
            (token, lease_until, batch.number, batch.answerable(now), now, limit),
        )
        return sorted((Claimed(*row) for row in rows), key=lambda claimed: claimed.position)

    def renew(self, token: str, lease_until: float) -> None:
        """Extend the lease of the requests a claim still holds."""
        self._statement(
            "UPDATE batch_items SET lease_until = ? WHERE claim = ? AND outcome IS NULL", (lease_until, token)
        )

    def complete(self, batch: StoredBatch, token: str, answers: Sequence[Answer]) -> list[Answer]:
        """Keep the answers whose requests the claim still holds (another worker may have taken some over); those."""

        def keep(connection: sqlite3.Connection) -> list[Answer]:
            held = {
                row[0]
                for row in connection.execute(
                    "SELECT position FROM batch_items WHERE claim = ? AND outcome IS NULL", (token,)
                )
            }
            kept = [answer for answer in answers if answer.position in held]
            connection.executemany(
                "UPDATE batch_items SET outcome = ?, result = ?, claim = NULL, lease_until = NULL"
                " WHERE batch = ? AND position = ?",
                ((answer.outcome, answer.result, batch.number, answer.position) for answer in kept),
            )
            _answered(connection, batch, len(kept))
            return kept

        return self._transaction(keep)

    def release(self, token: str) -> None:
        """Hand back the requests a claim holds but did not answer (its worker is stopping)."""
        self._statement(
            "UPDATE batch_items SET claim = NULL, lease_until = NULL WHERE claim = ? AND outcome IS NULL", (token,)
        )

    def close_out(self, batch: StoredBatch, outcome: str, now: float) -> int:
        """Give every unanswered request no live claim holds this outcome (canceled, expired); how many."""

        def close(connection: sqlite3.Connection) -> int:
            closed: int = connection.execute(
                "UPDATE batch_items SET outcome = ?, claim = NULL, lease_until = NULL"
                " WHERE batch = ? AND outcome IS NULL AND (claim IS NULL OR lease_until < ?)",
                (outcome, batch.number, now),
            ).rowcount
            _answered(connection, batch, closed)
            return closed

        return self._transaction(close)

    def finish(self, batch: StoredBatch, now: float) -> bool:
        """End the batch if every request has its result and its pace allows (or it was canceled or expired)."""

        def end(connection: sqlite3.Connection) -> bool:
            ended = connection.execute(
                "UPDATE batches SET status = 'ended', ended_at = ? WHERE number = ? AND status != 'ended'"
                " AND unanswered = 0 AND (status = 'canceling' OR done_after <= ? OR expires_at <= ?)",
                (now, batch.number, now, now),
            ).rowcount
            if ended:
                found = dict(
                    connection.execute(
                        "SELECT outcome, count(*) FROM batch_items WHERE batch = ? GROUP BY outcome", (batch.number,)
                    ).fetchall()
                )
                counts = compact_json({outcome: found.get(outcome, 0) for outcome in OUTCOMES})
                connection.execute("UPDATE batches SET counts = ? WHERE number = ?", (counts, batch.number))
            return bool(ended)

        return self._transaction(end)

    # ----------------------------------------------------------------- results
    def result_pages(
        self, batch: StoredBatch, *, page_size: int, clock: Callable[[], float] = time.time
    ) -> Generator[str, None, None]:
        """The batch's results as JSON Lines, in request order, `page_size` lines to a page.

        The pages are read on a connection of the download's own, closed when it ends or is abandoned:
        whichever threads serve a download take turns with it, and no thread's connection keeps a page
        cache filled by it. The download holds a lease (batch_downloads), renewed as it reads, so that a
        delete of the batch meanwhile leaves its requests for it to read to the end.
        """
        token = secrets.token_hex(16)
        lease_until = clock() + DOWNLOAD_LEASE_SECONDS
        self._statement(
            "INSERT INTO batch_downloads (token, batch, lease_until) VALUES (?, ?, ?)",
            (token, batch.number, lease_until),
        )
        connection = self.store.separate_connection()
        try:
            position = -1
            while True:
                if clock() > lease_until - DOWNLOAD_LEASE_SECONDS / 2:
                    lease_until = clock() + DOWNLOAD_LEASE_SECONDS
                    self._statement("UPDATE batch_downloads SET lease_until = ? WHERE token = ?", (lease_until, token))
                rows = connection.execute(
                    "SELECT position, custom_id, outcome, result FROM batch_items WHERE batch = ? AND position > ?"
                    " ORDER BY position LIMIT ?",
                    (batch.number, position, page_size),
                ).fetchall()
                if not rows:
                    return
                position = rows[-1][0]
                yield "".join(
                    f'{{"custom_id":{compact_json(custom_id)},"result":{result or _bare(outcome)}}}\n'
                    for _, custom_id, outcome, result in rows
                )
        finally:
            connection.close()
            # On a full disk the lease stays: once it passes, sweep_downloads does this.
            with contextlib.suppress(StoreFull):
                self._transaction(lambda connection: _end_download(connection, token, clock()))

    def sweep_downloads(self, now: float) -> None:
        """Forget the downloads whose lease has passed (their worker died mid-download), and the requests of
        deleted batches that only they still held."""
        stale = self._connection().execute("SELECT 1 FROM batch_downloads WHERE lease_until < ? LIMIT 1", (now,))
        if stale.fetchone() is None:
            return  # the common case, with no write

        def sweep(connection: sqlite3.Connection) -> None:
            gone = connection.execute("DELETE FROM batch_downloads WHERE lease_until < ? RETURNING batch", (now,))
            for number in {row[0] for row in gone.fetchall()}:
                _remove_requests_unless_read(connection, number, now)

        self._transaction(sweep)


def _end_download(connection: sqlite3.Connection, token: str, now: float) -> None:
    """The download is over: its lease goes, and so do its batch's requests if the batch was deleted meanwhile."""
    ended = connection.execute("DELETE FROM batch_downloads WHERE token = ? RETURNING batch", (token,)).fetchone()
    if ended is not None:
        _remove_requests_unless_read(connection, ended[0], now)


def _remove_requests_unless_read(connection: sqlite3.Connection, number: int, now: float) -> None:
    """Delete the requests of the batch numbered `number` if it is deleted and no live download reads them."""
    if connection.execute("SELECT 1 FROM batches WHERE number = ?", (number,)).fetchone() is not None:
        return
    reading = connection.execute(
        "SELECT 1 FROM batch_downloads WHERE batch = ? AND lease_until >= ? LIMIT 1", (number, now)
    ).fetchone()
    if reading is None:
        connection.execute("DELETE FROM batch_items WHERE batch = ?", (number,))


def _answered(connection: sqlite3.Connection, batch: StoredBatch, count: int) -> None:
    """Count `count` more of the batch's requests as having their result."""
    connection.execute("UPDATE batches SET unanswered = unanswered - ? WHERE number = ?", (count, batch.number))


def _bare(outcome: str) -> str:
    """The result of a request that was never answered: `{"type":"canceled"}` or `{"type":"expired"}`."""
    return compact_json({"type": outcome})
