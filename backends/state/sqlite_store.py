"""StateStore in one SQLite file: the state of every gunicorn worker of one machine (base.py: the interface).

Sequences, the journal, the last good script, prompt-cache entries, the files'
metadata and rate-limit buckets (buckets.py) are kept here, in one file (stdlib,
WAL mode, safe across processes and threads). Message Batches keep their tables
in the same file (`batches`, `batch_items` and `batch_downloads`, in SCHEMA
below); backends/batches/sqlite_store.py reads and writes them through
`connection()`, `write()` and `separate_connection()`, so that its writes meet a
full disk and the WAL's limit as the store's own do. Rows of the journal, files
and batches carry their scope; counters and cache entries, their scope in their key.

Two things keep the file bounded and the server up when its disk is not:

- **Retention.** The journal keeps the newest entries within a byte and an
  entry limit. Each entry records its size and a running total, so the
  journal's size is read off its first and last rows, and going over a limit
  deletes the oldest twentieth in one statement. The WAL is started over
  whenever it passes WAL_LIMIT_BYTES (SQLite's own checkpoints never let it
  start over while two workers write in turn: it grew to 133 MB in 100,000
  entries).
- **A full disk.** A write that finds no room raises `StoreFull`, the API's
  503: what needs no write carries on, and /health's small write tells a
  load balancer. A reserve file beside the state file is given up when the
  journal is cleared on a full disk, so that the clear has room to happen;
  nothing else is needed to recover than room.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from backends.state import buckets as buckets_sql
from backends.state.base import FILTERS, Bucket, BucketLevels, FileRow, JournalPage, StoreFull
from backends.state.scopes import DEFAULT_SCOPE, current_scope

logger = logging.getLogger("understudy")

#: The schema's version, in the file's user_version: 0 before retention, 1 with it, 2 with the probe table,
#: 3 with the batches' tables, the prompt-cache entries and the files table, 4 with the batches' downloads,
#: 5 with scopes (SCOPED_TABLES), 6 with the rate limits' levels (buckets.py).
SCHEMA_VERSION = 6
#: The first version with scopes.
SCOPES_VERSION = 5
#: The first version whose journal entries carry their sizes.
RETENTION_VERSION = 1
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        request_id TEXT,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER,
        rule TEXT,
        bytes INTEGER NOT NULL,          -- the size of `entry` in UTF-8
        running_bytes INTEGER NOT NULL,  -- the sizes of this entry and every one before it since the journal was empty
        entry TEXT NOT NULL              -- last: the columns before it are read without reading it
    )""",
    # (A state file from before script versions were kept also holds a `scripts` table, now unused.)
    "CREATE TABLE IF NOT EXISTS good_scripts (path TEXT PRIMARY KEY, text TEXT NOT NULL, version INTEGER NOT NULL)",
    # One row, written by `writable()` (for /health) to find out whether the store can write.
    "CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at REAL NOT NULL)",
    # Message Batches and their requests, claimed by the workers with leases (read and written by
    # backends/batches/sqlite_store.py, through `connection()`, `write()` and `separate_connection()`).
    """CREATE TABLE IF NOT EXISTS batches (
        number INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order, for listing
        id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,                      -- in_progress, canceling or ended
        total INTEGER NOT NULL,
        unanswered INTEGER NOT NULL,               -- requests without a result yet
        created_at REAL NOT NULL,                  -- Unix times
        expires_at REAL NOT NULL,
        done_after REAL NOT NULL,                  -- the pace: not ended before this, unless canceled or expired
        cancel_initiated_at REAL,
        ended_at REAL,
        counts TEXT,                               -- {succeeded, errored, canceled, expired} as JSON, once ended
        headers TEXT NOT NULL                      -- the create request's headers as JSON, secrets left out
    )""",
    "CREATE INDEX IF NOT EXISTS batches_running ON batches (number) WHERE status != 'ended'",
    """CREATE TABLE IF NOT EXISTS batch_items (
        batch INTEGER NOT NULL,                    -- batches.number
        position INTEGER NOT NULL,                 -- the request's place in the batch
        custom_id TEXT NOT NULL,
        params TEXT NOT NULL,                      -- JSON
        outcome TEXT,                              -- succeeded, errored, canceled or expired; NULL while unanswered
        result TEXT,                               -- the result object as JSON (for canceled and expired: none)
        claim TEXT,                                -- the token of the claim that is answering it
        lease_until REAL,                          -- ... until then; after it, any worker may claim it again
        PRIMARY KEY (batch, position)
    )""",
    "CREATE INDEX IF NOT EXISTS batch_items_unanswered ON batch_items (batch, position) WHERE outcome IS NULL",
    "CREATE INDEX IF NOT EXISTS batch_items_claimed ON batch_items (claim) WHERE claim IS NOT NULL",
    # The downloads of batches' results under way: a deleted batch's requests stay until none reads them.
    """CREATE TABLE IF NOT EXISTS batch_downloads (
        token TEXT PRIMARY KEY,
        batch INTEGER NOT NULL,                    -- batches.number (the batch may be deleted meanwhile)
        lease_until REAL NOT NULL                  -- renewed as it reads; after it, the download is taken for dead
    )""",
    # The echo backend's prompt-cache entries: a prefix's hash and when its entry expires (a Unix time).
    "CREATE TABLE IF NOT EXISTS cache_entries (prefix TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
    # The Files API's files (their bytes are on disk, backends/files/store.py): numbered in upload order, as lists
    # are newest first and cursors name a number.
    "CREATE TABLE IF NOT EXISTS files (number INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
    " metadata TEXT NOT NULL)",
)
#: The tables whose rows belong to a scope, given a `scope` column (the default scope's, in a file from before).
#: Counters and prompt-cache entries carry their scope in their key instead (`scoped`); the last good scripts
#: are the server's own, whatever the scope.
SCOPED_TABLES = ("journal", "files", "batches")
#: The journal's indexes, made after its scope column. An index's entries end with the row's id, so each serves
#: `scope = ? AND column = ? AND id > ? ORDER BY id` (journal_by_scope: the unfiltered page).
SCOPE_INDEXES = (
    *(f"DROP INDEX IF EXISTS journal_by_{name}" for name in FILTERS),  # a file's from before scopes: (column) only
    *(f"CREATE INDEX journal_by_{name} ON journal (scope, {name})" for name in FILTERS),
    "CREATE INDEX IF NOT EXISTS journal_by_scope ON journal (scope)",
    "CREATE INDEX IF NOT EXISTS files_by_scope ON files (scope)",
    "CREATE INDEX IF NOT EXISTS batches_by_scope ON batches (scope)",
)
#: Over a limit, the journal deletes its oldest entries down to this share under it, so deletes come in batches.
PRUNE_SHARE = 1 / 20
#: The WAL is checkpointed and started over when its file passes this size, and cut back to it.
WAL_LIMIT_BYTES = 4 * 1024 * 1024
#: Each connection's page cache, in KiB (SQLite's default is 2,000). A worker has a connection per thread that
#: touches the store, up to UNDERSTUDY_THREADS of them, and each kept a full cache of whatever it last read or
#: wrote: 17-25 MB in a worker after a few batch creates at the size limit. The pages a store's operation needs
#: (a journal insert, a batch claim) fit in far less, and the system's file cache keeps the rest close.
PAGE_CACHE_KIB = 256
#: The reserve file's size: room for a checkpoint of a WAL past its limit, and the clear after it; on a file
#: system under 32 MB, a quarter of it.
RESERVE_BYTES = 2 * WAL_LIMIT_BYTES
#: A writer whose checkpoint of a long WAL is kept back tries again this often, for this long, before it writes on.
CHECKPOINT_RETRY_SECONDS = 0.001
CHECKPOINT_PATIENCE_SECONDS = 5.0

T = TypeVar("T")


def default_state_file() -> Path:
    """Where state lives when no file is configured: a new file of this server's own.

    Under gunicorn the master sets UNDERSTUDY_STATE_FILE before it forks (see
    gunicorn.conf.py), so every worker shares one file; a single process gets
    its own, and so does each app it builds (an app's temporary store removes
    its file when it goes, which must not be another app's).
    """
    return Path(tempfile.gettempdir()) / f"understudy-state-{os.getpid()}-{secrets.token_hex(4)}.sqlite3"


def remove_state_file(path: Path | str) -> None:
    """Remove a state file, the two files WAL mode keeps beside it, the store's reserve and its writers' lock,
    whichever exist."""
    for suffix in ("", "-wal", "-shm", "-reserve", "-lock"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


def scoped(key: str) -> str:
    """`key` in the current scope: a counter's or a cache entry's key in the table they share with every scope."""
    return f"{current_scope()}/{key}"


def page_query(after: int, limit: int, filters: Mapping[str, Any], *, newest: bool = False) -> tuple[str, list[Any]]:
    """The SQL of a journal page in the current scope (`newest`: the newest entries first), and its parameters: one
    more row than `limit`, to tell whether there are more."""
    clauses, values = ["scope = ?", "id > ?"], [current_scope(), after]
    for name, value in filters.items():
        if value is not None:
            clauses.append(f"{name} = ?")
            values.append(value)
    order = "DESC" if newest else "ASC"
    sql = f"SELECT id, bytes, entry FROM journal WHERE {' AND '.join(clauses)} ORDER BY id {order} LIMIT ?"
    return sql, [*values, limit + 1]


class SQLiteStore:
    """StateStore in one SQLite file; one connection per thread, each change one atomic statement.

    A `temporary` store is one process's own (its file is `default_state_file()`): closing it, or the
    store being garbage-collected, or the process exiting, removes the file. Only in the process that
    made it: a process forked from it (a server that loads the app before forking) leaves the file to it.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_journal_bytes: int,
        max_journal_entries: int,
        reserve_bytes: int | None = None,
        temporary: bool = False,
    ) -> None:
        self.path = Path(path)
        self.temporary = temporary
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_journal_bytes = max_journal_bytes
        self.max_journal_entries = max_journal_entries
        disk = os.statvfs(self.path.parent)
        self.reserve_bytes = reserve_bytes or min(RESERVE_BYTES, disk.f_blocks * disk.f_frsize // 4)
        self.wal_path = Path(f"{self.path}-wal")
        self.reserve_path = Path(f"{self.path}-reserve")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._writer = WriterLock(Path(f"{self.path}-lock"))
        self._finalizer = weakref.finalize(
            self, _release, self._connections, self._writer, self.path if temporary else None, os.getpid()
        )
        self._full = False
        self._full_lock = threading.Lock()
        self._create_schema()
        if not self._make_reserve():
            logger.warning("no room for a reserve beside %s: a clear on a full disk may fail", self.path)

    @property
    def location(self) -> str:
        return str(self.path)

    def ping(self) -> None:
        """Nothing to reach: the file was opened (and its schema made) when the store was."""

    # ------------------------------------------------------------- counters
    def next_count(self, key: str) -> int:
        sql = (
            "INSERT INTO counters (key, value) VALUES (?, 1)"
            " ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value"
        )
        return int(self._write(lambda connection: connection.execute(sql, (scoped(key),)).fetchone()[0]))

    def reset_counters(self) -> None:
        # The scope's keys, as a range: they start with "scope/", and "0" follows "/".
        bounds = (scoped(""), f"{current_scope()}0")
        sql = "DELETE FROM counters WHERE key >= ? AND key < ?"
        self._write(lambda connection: connection.execute(sql, bounds), clearing=True)

    # -------------------------------------------------------------- journal
    def add_entry(self, entry: Mapping[str, Any]) -> int:
        text = json.dumps(entry, ensure_ascii=False, default=str)
        row = {
            "at": entry.get("at", time.time()),
            "request_id": entry.get("request_id"),
            "method": entry["method"],
            "path": entry["path"],
            "status": entry.get("status"),
            "rule": entry.get("rule"),
            "bytes": len(text.encode()),
            "entry": text,
            "scope": current_scope(),
        }
        # Retention is the file's, over every scope's entries: it keeps the file bounded.
        sql = (
            "INSERT INTO journal (at, request_id, method, path, status, rule, bytes, running_bytes, entry, scope)"
            " VALUES (:at, :request_id, :method, :path, :status, :rule, :bytes,"
            " :bytes + coalesce((SELECT running_bytes FROM journal ORDER BY id DESC LIMIT 1), 0), :entry, :scope)"
            " RETURNING id, running_bytes"
        )
        entry_id, running_bytes = self._write(lambda connection: connection.execute(sql, row).fetchone())
        self._keep_within_limits(entry_id, running_bytes)
        return int(entry_id)

    def complete_entry(self, entry_id: int, fields: Mapping[str, Any]) -> None:
        scope = current_scope()

        def complete(connection: sqlite3.Connection) -> tuple[int, int] | None:
            found = connection.execute(
                "SELECT entry, bytes FROM journal WHERE id = ? AND scope = ?", (entry_id, scope)
            ).fetchone()
            if found is None:  # deleted or cleared meanwhile
                return None
            text = json.dumps({**json.loads(found[0]), **fields}, ensure_ascii=False, default=str)
            grown = len(text.encode()) - found[1]
            connection.execute("UPDATE journal SET entry = ?, bytes = bytes + ? WHERE id = ?", (text, grown, entry_id))
            # The running totals of this entry and of every later one (a few: those written while it was answered).
            connection.execute("UPDATE journal SET running_bytes = running_bytes + ? WHERE id >= ?", (grown, entry_id))
            last: tuple[int, int] = connection.execute(
                "SELECT id, running_bytes FROM journal ORDER BY id DESC LIMIT 1"
            ).fetchone()
            return last

        last = self._write(complete)
        if last is not None:
            self._keep_within_limits(*last)

    def _keep_within_limits(self, last_id: int, running_bytes: int) -> None:
        keep_from = self._oldest_to_keep(last_id, running_bytes)
        if keep_from is not None:
            self._write(lambda connection: connection.execute("DELETE FROM journal WHERE id < ?", (keep_from,)))

    def _oldest_to_keep(self, last_id: int, last_running_bytes: int) -> int | None:
        """When the journal up to entry `last_id` is over a limit, the id of the oldest entry to keep (the newest
        always stays); None while it is within both."""
        connection = self._connection()
        first = connection.execute("SELECT id, running_bytes - bytes FROM journal ORDER BY id LIMIT 1").fetchone()
        if first is None:  # cleared meanwhile
            return None
        first_id, first_start = first
        # Ids are never reused and only the oldest entries are deleted, so this counts them (or more).
        if last_id - first_id < self.max_journal_entries and last_running_bytes - first_start <= self.max_journal_bytes:
            return None
        keep_entries = self.max_journal_entries - int(self.max_journal_entries * PRUNE_SHARE)
        keep_bytes = self.max_journal_bytes - int(self.max_journal_bytes * PRUNE_SHARE)
        # The first entry that starts within `keep_bytes` of the end: a walk from the oldest, over the ones to delete.
        within_bytes = connection.execute(
            "SELECT id FROM journal WHERE running_bytes - bytes >= ? ORDER BY id LIMIT 1",
            (last_running_bytes - keep_bytes,),
        ).fetchone()
        return min(max(last_id - keep_entries + 1, within_bytes[0] if within_bytes else last_id), last_id)

    def journal_page(
        self, *, after: int, limit: int, max_bytes: int, newest: bool = False, **filters: Any
    ) -> JournalPage:
        sql, values = page_query(after, limit, filters, newest=newest)
        entries: list[dict[str, Any]] = []
        size = 0
        # Closed as soon as the page is full: an unfinished read would hold the WAL back from starting over.
        with contextlib.closing(self._connection().execute(sql, values)) as rows:
            for entry_id, entry_bytes, text in rows:
                if len(entries) == limit or (entries and size + entry_bytes > max_bytes):
                    return JournalPage(entries, has_more=True)
                size += entry_bytes
                entries.append({"id": entry_id, **json.loads(text)})
        return JournalPage(entries, has_more=False)

    def clear_entries(self) -> None:
        scope = (current_scope(),)
        self._write(lambda connection: connection.execute("DELETE FROM journal WHERE scope = ?", scope), clearing=True)

    # -------------------------------------------------------------- scripts
    def save_script(self, path: str, text: str, version: int) -> None:
        sql = (
            "INSERT INTO good_scripts (path, text, version) VALUES (?, ?, ?) ON CONFLICT (path) DO UPDATE"
            " SET text = excluded.text, version = excluded.version WHERE excluded.version >= good_scripts.version"
        )
        self._write(lambda connection: connection.execute(sql, (path, text, version)))

    def last_script(self, path: str) -> str | None:
        row = self._connection().execute("SELECT text FROM good_scripts WHERE path = ?", (path,)).fetchone()
        return None if row is None else str(row[0])

    # --------------------------------------------------------- prompt cache
    def put_cache_entry(self, prefix: str, expires_at: float) -> None:
        sql = (
            "INSERT INTO cache_entries (prefix, expires_at) VALUES (?, ?)"
            " ON CONFLICT (prefix) DO UPDATE SET expires_at = excluded.expires_at"
        )
        self._write(lambda connection: connection.execute(sql, (scoped(prefix), expires_at)))

    def cache_entry(self, prefix: str) -> float | None:
        sql = "SELECT expires_at FROM cache_entries WHERE prefix = ?"
        row = self._connection().execute(sql, (scoped(prefix),)).fetchone()
        return None if row is None else float(row[0])

    # ---------------------------------------------------------------- files
    def add_file(self, metadata: Mapping[str, Any]) -> int:
        sql = "INSERT INTO files (id, metadata, scope) VALUES (?, ?, ?) RETURNING number"
        values = (metadata["id"], json.dumps(metadata), current_scope())
        return int(self._write(lambda connection: connection.execute(sql, values).fetchone()[0]))

    def file(self, file_id: str) -> FileRow | None:
        sql = "SELECT number, metadata FROM files WHERE id = ? AND scope = ?"
        row = self._connection().execute(sql, (file_id, current_scope())).fetchone()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def files(self, *, below: int | None = None, above: int | None = None, limit: int = 20) -> list[FileRow]:
        if above is not None:  # the page just above `above`: read upwards from it, then turn it newest first
            query = "SELECT number, metadata FROM files WHERE scope = ? AND number > ? ORDER BY number LIMIT ?"
            rows = list(self._connection().execute(query, (current_scope(), above, limit)))[::-1]
        else:
            query = "SELECT number, metadata FROM files WHERE scope = ? AND number < ? ORDER BY number DESC LIMIT ?"
            values = (current_scope(), below if below is not None else 2**63 - 1, limit)
            rows = list(self._connection().execute(query, values))
        return [(int(number), json.loads(metadata)) for number, metadata in rows]

    def files_by_id(self, file_ids: Sequence[str]) -> list[FileRow]:
        marks = ", ".join("?" * len(file_ids))
        query = f"SELECT number, metadata FROM files WHERE scope = ? AND id IN ({marks}) ORDER BY number DESC"
        rows = self._connection().execute(query, (current_scope(), *file_ids))
        return [(int(number), json.loads(metadata)) for number, metadata in rows]

    def delete_file(self, file_id: str) -> bool:
        sql = "DELETE FROM files WHERE id = ? AND scope = ?"
        values = (file_id, current_scope())
        return bool(self._write(lambda connection: connection.execute(sql, values).rowcount > 0))

    # ---------------------------------------------------------- rate limits
    def take_tokens(self, subject: str, buckets: Sequence[Bucket], *, force: bool = False) -> BucketLevels:
        return self._write(lambda connection: buckets_sql.take(connection, subject, buckets, time.time(), force))

    # --------------------------------------------------------------- health
    def writable(self) -> bool:
        sql = "INSERT INTO probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at"
        try:
            self._write(lambda connection: connection.execute(sql, (time.time(),)))
        except StoreFull:
            return False
        return True

    # ------------------------------------- for tables kept by other modules (Message Batches')
    def connection(self) -> sqlite3.Connection:
        """This thread's connection, to read with."""
        return self._connection()

    def write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run one atomic write on this thread's connection, as the store runs its own (StoreFull when no room)."""
        return self._write(operation)

    def separate_connection(self) -> sqlite3.Connection:
        """A connection of the caller's own, which threads may take turns with and the caller closes.

        For a long read that moves from thread to thread (a batch's results, streamed): on each thread's
        own connection, every one of them would keep a page cache of it.
        """
        return _open(self.path)

    # ------------------------------------------------------------- plumbing
    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = _open(self.path)  # its thread's; close() may close it from another
            self._connections.append(connection)
        return connection

    def close(self) -> None:
        """Close every connection this store opened, in any thread (and remove a temporary store's file)."""
        self._finalizer()

    def _create_schema(self) -> None:
        """Create the tables, in one transaction so that processes starting together agree; nothing, when done."""
        connection = self._connection()
        if _schema_version(connection) >= SCHEMA_VERSION:
            return  # no write, so that a worker starts on a full disk too
        connection.execute("BEGIN IMMEDIATE")
        try:
            if _schema_version(connection) < RETENTION_VERSION:
                # A journal from before retention has no sizes to keep it by: it goes; sequences and scripts stay.
                connection.execute("DROP TABLE IF EXISTS journal")
            for statement in SCHEMA:
                connection.execute(statement)
            if _schema_version(connection) < SCOPES_VERSION:
                _move_into_the_default_scope(connection)
            for statement in (*SCOPE_INDEXES, *buckets_sql.SCHEMA, f"PRAGMA user_version = {SCHEMA_VERSION}"):
                connection.execute(statement)
            connection.execute("COMMIT")
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")

    def _write(self, operation: Callable[[sqlite3.Connection], T], *, clearing: bool = False) -> T:
        """Run one atomic write; when it finds no room, make what room there is and try once more.

        A checkpoint makes room in the WAL when the database has room for what it holds (the pages of deleted
        entries, say). A clearing write first gives up the reserve file, so that the checkpoint has room, and
        afterwards gives the cleared space back to the disk and makes the reserve again. Still no room: StoreFull.
        """
        connection = self._connection()
        with self._writer:
            try:
                result = _run(operation, connection)
            except StoreFull:
                spent_reserve = clearing and self._release_reserve()
                _checkpoint(connection, "RESTART")
                try:
                    result = _run(operation, connection)
                except StoreFull:
                    self._mark_full(True)
                    raise
                if spent_reserve:
                    self._give_space_back(connection)
            self._mark_full(False)
            self._start_wal_over_if_long(connection)
        return result

    def _give_space_back(self, connection: sqlite3.Connection) -> None:
        """After a clear on a full disk: shrink the file to what it still holds, empty the WAL, make the reserve.

        Else the cleared pages would stay in the file, for the store to reuse but for nothing else, and the reserve
        could not be made again for the next time the disk fills.
        """
        with contextlib.suppress(sqlite3.OperationalError):
            connection.execute("PRAGMA temp_store=MEMORY")  # VACUUM's copy: the disk has no room for it
            connection.execute("VACUUM")
        _checkpoint(connection, "TRUNCATE")
        self._make_reserve()

    def _start_wal_over_if_long(self, connection: sqlite3.Connection) -> None:
        """Checkpoint and start the WAL over once its file passes WAL_LIMIT_BYTES; then make the reserve if it went.

        journal_size_limit cuts the WAL file back to the limit each time it starts over, so it grows past the limit
        only when its frames do. A RESTART checkpoint waits its turn among the writers; SQLite's own, passive and
        after every 1,000 pages, are overtaken by the other workers' commits and never let the WAL start over, and
        they hold the checkpoint lock that a RESTART needs, so they are turned off.
        """
        try:
            wal_bytes = self.wal_path.stat().st_size
        except FileNotFoundError:
            return
        if wal_bytes > WAL_LIMIT_BYTES:
            # Kept back: another worker's checkpoint holds the lock while it polls for the writer lock. Writing on
            # would take that from it between its polls (100 ms apart once it has waited), for thousands of writes.
            patience = time.monotonic() + CHECKPOINT_PATIENCE_SECONDS
            while _checkpoint(connection, "RESTART") and time.monotonic() < patience:
                time.sleep(CHECKPOINT_RETRY_SECONDS)
            self._make_reserve()

    def _mark_full(self, full: bool) -> None:
        if self._full == full:
            return
        with self._full_lock:
            if self._full == full:
                return
            self._full = full
        if full:
            logger.error(
                "state store %s is full (database or disk is full): requests needing a write get a 503, "
                "and requests are not journaled, until there is room",
                self.path,
            )
        else:
            logger.warning("state store %s has room again", self.path)
            self._make_reserve()

    def _make_reserve(self) -> bool:
        """Write the reserve file if it is missing or short, when the disk has as much again to spare; whether it
        is there. (Written out, not just sized: a sparse file would hold no room.)"""
        with contextlib.suppress(FileNotFoundError):
            if self.reserve_path.stat().st_size >= self.reserve_bytes:
                return True
        disk = os.statvfs(self.path.parent)
        if disk.f_bavail * disk.f_frsize < 2 * self.reserve_bytes:
            return False
        partial = self.reserve_path.with_name(f"{self.reserve_path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            with partial.open("wb") as reserve:
                chunk = bytes(min(self.reserve_bytes, 1024 * 1024))
                for start in range(0, self.reserve_bytes, len(chunk)):
                    reserve.write(chunk[: self.reserve_bytes - start])
            partial.replace(self.reserve_path)
        except OSError:
            partial.unlink(missing_ok=True)
            return False
        return True

    def _release_reserve(self) -> bool:
        """Delete the reserve file, to make room; whether there was one."""
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        logger.warning("state store %s: gave up its reserve to make room", self.path)
        return True


class WriterLock:
    """One writer at a time among every thread of every process that writes the state file: a thread lock, and an
    flock on a lock file beside it (a flock belongs to the open file, which the threads of a process share).

    SQLite's own write lock would keep writes apart as well, but a writer that finds it taken sleeps in SQLite's
    busy handler, a millisecond at the least, for a writer ahead of it that needs some 30 µs: under wrk's 16
    connections on two workers, over one such sleep a request, and half the throughput, once every request wrote
    (a rate-limit take). A writer blocked on the flock is woken by the kernel the moment it is free. Readers take
    no part: WAL mode lets them read while a writer writes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._file: int | None = None
        self._pid = 0
        _WRITER_LOCKS.add(self)

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_: object) -> None:
        assert self._file is not None
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        """Close the lock file, if this process opened it."""
        if self._file is not None and self._pid == os.getpid():
            os.close(self._file)
        self._file, self._pid = None, 0

    def _descriptor(self) -> int:
        """The lock file, opened once in each process (a forked worker opens its own: a flock is shared across fork)."""
        if self._pid != os.getpid():
            self._file = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._file  # type: ignore[return-value]

    def _forked(self) -> None:
        """In a forked child: a thread of the parent may have held the thread lock as it forked; start afresh."""
        self._threads = threading.Lock()


#: Every writer lock, to be started afresh in a forked child.
_WRITER_LOCKS: weakref.WeakSet[WriterLock] = weakref.WeakSet()


def _start_writer_locks_afresh() -> None:
    for lock in list(_WRITER_LOCKS):
        lock._forked()


os.register_at_fork(after_in_child=_start_writer_locks_afresh)


def _open(path: Path) -> sqlite3.Connection:
    """A connection to the state file as the store opens them: autocommit, WAL, 30 s to wait for a lock."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    # The WAL's checkpoints are the store's own (see _start_wal_over_if_long), and start it over at its limit.
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
    connection.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
    return connection


def _run(operation: Callable[[sqlite3.Connection], T], connection: sqlite3.Connection) -> T:
    """`operation`, with SQLite's "database or disk is full" raised as StoreFull."""
    try:
        return operation(connection)
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode == sqlite3.SQLITE_FULL:
            raise StoreFull() from error
        raise


def _move_into_the_default_scope(connection: sqlite3.Connection) -> None:
    """A file from before scopes: its rows are the default scope's (a new file: its tables get the column)."""
    for table in SCOPED_TABLES:
        if "scope" not in {column[1] for column in connection.execute(f"PRAGMA table_info({table})")}:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN scope TEXT NOT NULL DEFAULT '{DEFAULT_SCOPE}'")
    connection.execute("UPDATE counters SET key = ? || key", (f"{DEFAULT_SCOPE}/",))
    connection.execute("UPDATE cache_entries SET prefix = ? || prefix", (f"{DEFAULT_SCOPE}/",))


def _schema_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _checkpoint(connection: sqlite3.Connection, mode: str) -> bool:
    """Copy the WAL into the database (when there is room to) and start it over: RESTART, or TRUNCATE to empty it.

    Whether other connections kept it from being done, so that it may be done later: another's checkpoint held the
    lock, or readers held on to the WAL past the lock's timeout. (Not for want of room: that is no later.)
    """
    try:
        busy, _, _ = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    except sqlite3.OperationalError:
        return False
    return bool(busy)


def _release(connections: list[sqlite3.Connection], writer: WriterLock, temporary: Path | None, made_in: int) -> None:
    """Close a store's connections and its lock file, and remove its temporary file, in the process that opened them.

    A forked process touches neither: SQLite connections must not be used, not even closed, across a
    fork(), and the file is the parent's.
    """
    if os.getpid() != made_in:
        return
    for connection in connections:
        connection.close()
    connections.clear()
    writer.close()
    if temporary is not None:
        remove_state_file(temporary)
