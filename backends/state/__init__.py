"""Shared state: the store interface (base.py), its SQLite and Redis stores, and scopes (scopes.py).

`open_store` picks the store from a location, as fsspec's registry picks a
file system by name: `sqlite:///path` (or no location: a file of this
server's own) or `redis://host:port/db` (`rediss://` with TLS, `unix://` for
a socket). Only the Redis store imports redis-py.
"""

from __future__ import annotations

from backends.state.base import (
    FILTERS,
    Bucket,
    BucketLevels,
    FileRow,
    JournalPage,
    StateStore,
    StoreFull,
    StoreUnavailable,
)
from backends.state.scopes import DEFAULT_SCOPE, SCOPE_HEADER, current_scope, in_scope, is_scope_name
from backends.state.sqlite_store import SQLiteStore, default_state_file, remove_state_file

__all__ = [
    "DEFAULT_SCOPE",
    "FILTERS",
    "SCOPE_HEADER",
    "Bucket",
    "BucketLevels",
    "FileRow",
    "JournalPage",
    "SQLiteStore",
    "StateStore",
    "StoreFull",
    "StoreUnavailable",
    "current_scope",
    "default_state_file",
    "in_scope",
    "is_scope_name",
    "remove_state_file",
]
