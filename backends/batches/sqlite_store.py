"""The Message Batches store in the state file of one machine: tables `batches`, `batch_items`, `batch_downloads`.

The tables are in the state store's file, beside the journal and the scripted
sequences (their schema is in backends/state/sqlite_store.py), and every change
here is a write of that store's: a full disk is a StoreFull (503), and the WAL
is started over past its limit, as for the store's own writes. A batch's row
carries its scope; what a client names by id is looked up with the current
scope's name beside it (store.py has the contract).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from backends.batches.store import DOWNLOAD_LEASE_SECONDS, OUTCOMES, Answer, Claimed, StoredBatch, bare_result
from backends.state import SQLiteStore, StoreFull, current_scope
from backends.wire import compact_json

BATCH_COLUMNS = (
    "number, id, scope, status, total, unanswered, created_at, expires_at, done_after, cancel_initiated_at, "
    "ended_at, counts, headers"
)

T = TypeVar("T")


def stored_batch(row: Sequence[Any]) -> StoredBatch:
    """A batch from a row of BATCH_COLUMNS."""
    number, batch_id, scope, status, total, unanswered, created, expires, done_after, canceled, ended = row[:11]
    counts, headers = row[11], row[12]
    return StoredBatch(
        number, batch_id, scope, status, total, unanswered, created, expires, done_after, canceled, ended,
        json.loads(counts) if counts else None, json.loads(headers),
    )  # fmt: skip


class SQLiteBatchStore:
    """BatchStore in the state store's file, every change one transaction of the store's."""

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

    # ------------------------------------------- by id, in the current scope
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
        scope = current_scope()

        def insert(connection: sqlite3.Connection) -> None:
            number = connection.execute(
                "INSERT INTO batches (id, scope, status, total, unanswered, created_at, expires_at, done_after,"
                " headers) VALUES (?, ?, 'in_progress', ?, ?, ?, ?, ?, ?) RETURNING number",
                (batch_id, scope, len(requests), len(requests), created_at, expires_at, done_after,
                 compact_json(headers)),
            ).fetchone()[0]  # fmt: skip
            connection.executemany(
                "INSERT INTO batch_items (batch, position, custom_id, params) VALUES (?, ?, ?, ?)",
                ((number, position, custom_id, params) for position, (custom_id, params) in enumerate(requests)),
            )

        self._transaction(insert)
        stored = self.get(batch_id)
        assert stored is not None
        return stored

    def get(self, batch_id: str) -> StoredBatch | None:
        sql = f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ? AND scope = ?"
        row = self._connection().execute(sql, (batch_id, current_scope())).fetchone()
        return None if row is None else stored_batch(row)

    def page(
        self, *, after: StoredBatch | None, before: StoredBatch | None, limit: int
    ) -> tuple[list[StoredBatch], bool]:
        if before is not None:
            rows = self._connection().execute(
                f"SELECT {BATCH_COLUMNS} FROM batches WHERE scope = ? AND number > ? ORDER BY number LIMIT ?",
                (current_scope(), before.number, limit + 1),
            )
            newer = [stored_batch(row) for row in rows]
            return newer[:limit][::-1], len(newer) > limit
        rows = self._connection().execute(
            f"SELECT {BATCH_COLUMNS} FROM batches WHERE scope = ? AND number < ? ORDER BY number DESC LIMIT ?",
            (current_scope(), after.number if after is not None else 2**63 - 1, limit + 1),
        )
        older = [stored_batch(row) for row in rows]
        return older[:limit], len(older) > limit

    def request_cancel(self, batch_id: str, now: float) -> StoredBatch | None:
        self._statement(
            "UPDATE batches SET status = 'canceling', cancel_initiated_at = ?"
            " WHERE id = ? AND scope = ? AND status = 'in_progress'",
            (now, batch_id, current_scope()),
        )
        return self.get(batch_id)

    def delete(self, batch_id: str, now: float) -> StoredBatch | None:
        scope = current_scope()

        def delete_if_ended(connection: sqlite3.Connection) -> StoredBatch | None:
            sql = f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ? AND scope = ?"
            row = connection.execute(sql, (batch_id, scope)).fetchone()
            batch = None if row is None else stored_batch(row)
            if batch is not None and batch.status == "ended":
                connection.execute("DELETE FROM batches WHERE number = ?", (batch.number,))
                _remove_requests_unless_read(connection, batch.number, now)
            return batch

        return self._transaction(delete_if_ended)

    # ------------------------------------------------- the processor's work
    def running(self) -> list[StoredBatch]:
        rows = self._connection().execute(
            f"SELECT {BATCH_COLUMNS} FROM batches WHERE status != 'ended' ORDER BY number"
        )
        return [stored_batch(row) for row in rows]

    def claim(self, batch: StoredBatch, token: str, *, now: float, lease_until: float, limit: int) -> list[Claimed]:
        rows = self._statement(
            "UPDATE batch_items SET claim = ?, lease_until = ? WHERE rowid IN ("
            " SELECT rowid FROM batch_items WHERE batch = ? AND outcome IS NULL AND position < ?"
            " AND (claim IS NULL OR lease_until < ?) ORDER BY position LIMIT ?"
            ") RETURNING position, custom_id, params",
            (token, lease_until, batch.number, batch.answerable(now), now, limit),
        )
        return sorted((Claimed(*row) for row in rows), key=lambda claimed: claimed.position)

    def renew(self, batch: StoredBatch, token: str, lease_until: float) -> None:
        self._statement(
            "UPDATE batch_items SET lease_until = ? WHERE claim = ? AND outcome IS NULL", (lease_until, token)
        )

    def complete(self, batch: StoredBatch, token: str, answers: Sequence[Answer]) -> list[Answer]:
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

    def release(self, batch: StoredBatch, token: str) -> None:
        self._statement(
            "UPDATE batch_items SET claim = NULL, lease_until = NULL WHERE claim = ? AND outcome IS NULL", (token,)
        )

    def close_out(self, batch: StoredBatch, outcome: str, now: float) -> int:
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

    # ---------------------------------------------------------------- results
    def result_pages(
        self, batch: StoredBatch, *, page_size: int, clock: Callable[[], float] = time.time
    ) -> Generator[str, None, None]:
        """The pages are read on a connection of the download's own, closed when it ends or is abandoned:
        whichever threads serve a download take turns with it, and no thread's connection keeps a page
        cache filled by it. The download's lease is a row of batch_downloads."""
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
                    f'{{"custom_id":{compact_json(custom_id)},"result":{result or bare_result(outcome)}}}\n'
                    for _, custom_id, outcome, result in rows
                )
        finally:
            connection.close()
            # On a full disk the lease stays: once it passes, sweep_downloads does this.
            with contextlib.suppress(StoreFull):
                self._transaction(lambda connection: _end_download(connection, token, clock()))

    def sweep_downloads(self, now: float) -> None:
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
