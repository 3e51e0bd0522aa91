"""State shared by every gunicorn worker: sequence positions, the request journal, the last good script.

gunicorn runs several worker processes, and a scripted test like "the first
call gets a 529, the second a 200" must hold whichever worker takes each
call; so must the journal a test reads back. `StateStore` is the small
interface; `SQLiteStore` keeps it in one SQLite file (stdlib, WAL mode, safe
across processes and threads). A networked store (Redis, for servers on
several machines) is one more class with the same methods.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

# (A state file from before script versions were kept also holds a `scripts` table, now unused.)
SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    request_id TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER,
    rule TEXT,
    entry TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS good_scripts (path TEXT PRIMARY KEY, text TEXT NOT NULL, version INTEGER NOT NULL);
"""
#: Journal filters and the column each compares.
FILTERS = {"path": "path", "rule": "rule", "status": "status", "method": "method", "request_id": "request_id"}


def default_state_file() -> Path:
    """Where state lives when no file is configured: a file of this server's own.

    Under gunicorn the master sets UNDERSTUDY_STATE_FILE before it forks (see
    gunicorn.conf.py), so every worker shares one file, which the master
    removes when it exits; a single process gets its own, removed with its
    store (`SQLiteStore(..., temporary=True)`).
    """
    return Path(tempfile.gettempdir()) / f"understudy-state-{os.getpid()}.sqlite3"


def remove_state_file(path: Path | str) -> None:
    """Remove a SQLite state file and the two files WAL mode keeps beside it, whichever exist."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


class StateStore(Protocol):
    """What the scripted backend and the journal need from shared state."""

    def next_count(self, key: str) -> int:
        """Add one to the counter `key` and return its new value (1 the first time), atomically."""

    def reset_counters(self) -> None:
        """Set every counter back to zero."""

    def add_entry(self, entry: Mapping[str, Any]) -> int:
        """Append a journal entry; its id."""

    def entries(self, *, after: int = 0, limit: int = 100, **filters: Any) -> list[dict[str, Any]]:
        """Journal entries with ids above `after`, oldest first, matching `filters` (see FILTERS)."""

    def clear_entries(self) -> None:
        """Empty the journal."""

    def save_script(self, path: str, text: str, version: int) -> None:
        """Remember a script text that loaded without error, unless one of a later `version` is already kept.

        `version` grows with every edit of the file (its ctime): two workers that load two edits
        at once may save them in either order, and the later edit is kept all the same.
        """

    def last_script(self, path: str) -> str | None:
        """The last good script text for `path`, if any."""

    def close(self) -> None:
        """Let go of what the store holds open; it is not used afterwards."""


class SQLiteStore:
    """StateStore in one SQLite file; one connection per thread, transactions for atomic updates.

    A `temporary` store is one process's own (its file is `default_state_file()`): closing it, or the
    store being garbage-collected, or the process exiting, removes the file. Only in the process that
    made it: a process forked from it (a server that loads the app before forking) leaves the file to it.
    """

    def __init__(self, path: Path, *, temporary: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._finalizer = weakref.finalize(
            self, _release, self._connections, self.path if temporary else None, os.getpid()
        )
        with self._connection() as connection:
            connection.executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # Used by its own thread only; close() may close it from another.
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
            self._connections.append(connection)
        return connection

    def close(self) -> None:
        """Close every connection this store opened, in any thread (and remove a temporary store's file)."""
        self._finalizer()

    def next_count(self, key: str) -> int:
        row = (
            self._connection()
            .execute(
                "INSERT INTO counters (key, value) VALUES (?, 1)"
                " ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
                (key,),
            )
            .fetchone()
        )
        return int(row[0])

    def reset_counters(self) -> None:
        self._connection().execute("DELETE FROM counters")

    def add_entry(self, entry: Mapping[str, Any]) -> int:
        cursor = self._connection().execute(
            "INSERT INTO journal (at, request_id, method, path, status, rule, entry) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.get("at", time.time()),
                entry.get("request_id"),
                entry["method"],
                entry["path"],
                entry.get("status"),
                entry.get("rule"),
                json.dumps(entry, ensure_ascii=False, default=str),
            ),
        )
        return int(cursor.lastrowid or 0)

    def entries(self, *, after: int = 0, limit: int = 100, **filters: Any) -> list[dict[str, Any]]:
        clauses, values = ["id > ?"], [after]
        for name, value in filters.items():
            if value is not None:
                clauses.append(f"{FILTERS[name]} = ?")
                values.append(value)
        rows = self._connection().execute(
            f"SELECT id, entry FROM journal WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
            (*values, limit),
        )
        return [{"id": row[0], **json.loads(row[1])} for row in rows]

    def clear_entries(self) -> None:
        self._connection().execute("DELETE FROM journal")

    def save_script(self, path: str, text: str, version: int) -> None:
        self._connection().execute(
            "INSERT INTO good_scripts (path, text, version) VALUES (?, ?, ?) ON CONFLICT (path) DO UPDATE"
            " SET text = excluded.text, version = excluded.version WHERE excluded.version >= good_scripts.version",
            (path, text, version),
        )

    def last_script(self, path: str) -> str | None:
        row = self._connection().execute("SELECT text FROM good_scripts WHERE path = ?", (path,)).fetchone()
        return None if row is None else str(row[0])


def _release(connections: list[sqlite3.Connection], temporary: Path | None, made_in: int) -> None:
    """Close a store's connections and remove its temporary file, in the process that opened them.

    A forked process touches neither: SQLite connections must not be used, not even closed, across a
    fork(), and the file is the parent's.
    """
    if os.getpid() != made_in:
        return
    for connection in connections:
        connection.close()
    connections.clear()
    if temporary is not None:
        remove_state_file(temporary)
