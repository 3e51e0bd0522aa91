"""The SQLite state store's own ways: atomic counters across processes, the journal's bytes on disk, its WAL and
indexes, older files, a full disk (what every store does: test_stores.py)."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import threading
import time

import pytest

from backends.state import FILTERS, StoreFull
from backends.state.sqlite_store import SCHEMA_VERSION, WAL_LIMIT_BYTES, page_query

from builders import state_store
from small_disk import fill

#: A journal entry of the size the SDKs' requests make (some 800 bytes).
ENTRY = {
    "method": "POST",
    "path": "/v1/messages",
    "status": 200,
    "rule": "greet",
    "headers": {"user-agent": "Anthropic/Python 0.75.0", "x-api-key": "[masked]", "anthropic-version": "2023-06-01"},
    "body": {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi " * 150}]},
}


def entries(store, **options) -> list[dict]:
    """One page of the journal, as a list; limits out of the way unless `options` set them."""
    return store.journal_page(**{"after": 0, "limit": 1000, "max_bytes": 1 << 30, **options}).entries


def stored(path) -> tuple[int, int]:
    """How many entries the file holds, and their bytes, read past the store."""
    with sqlite3.connect(path) as connection:
        count, size = connection.execute("SELECT count(*), sum(length(CAST(entry AS BLOB))) FROM journal").fetchone()
    return count, size or 0


def count_many(path: str, times: int, results) -> None:
    store = state_store(path)
    results.extend([store.next_count("shared") for _ in range(times)])


def in_processes(count: int, target, *args) -> list:
    """`target(*args, results)` in `count` processes at once; what they added to `results`."""
    with multiprocessing.Manager() as manager:
        results = manager.list()
        processes = [multiprocessing.Process(target=target, args=(*args, results)) for _ in range(count)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(120)
        return list(results)


def test_counters_are_atomic_across_processes(tmp_path):
    results = in_processes(4, count_many, str(tmp_path / "state.sqlite3"), 50)
    assert sorted(results) == list(range(1, 201))  # no value handed out twice, none skipped


def test_a_temporary_store_removes_its_file_when_closed_and_another_keeps_it(tmp_path):
    kept, temporary = state_store(tmp_path / "kept.sqlite3"), state_store(tmp_path / "own.sqlite3", temporary=True)
    for store in (kept, temporary):
        store.add_entry({"method": "GET", "path": "/v1/models"})
        store.close()
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == ["kept.sqlite3", "kept.sqlite3-lock", "kept.sqlite3-reserve"]


def test_the_journal_keeps_its_newest_entries_within_the_byte_limit(tmp_path):
    path = tmp_path / "state.sqlite3"
    store = state_store(path, max_journal_bytes=100_000)
    for sent in range(1, 301):
        store.add_entry({**ENTRY, "body": "x" * (sent % 7 * 500)})  # sizes from 300 to 3,300 bytes
        _, size = stored(path)
        assert size <= 100_000 and entries(store)[-1]["id"] == sent
    assert size > 100_000 * 0.95 - 3_300


def write_entries(path: str, times: int, wal_sizes) -> None:
    store = state_store(path)
    for sent in range(times):
        store.add_entry(ENTRY)
        if sent % 100 == 0:
            wal_sizes.append(store.wal_path.stat().st_size)


@pytest.mark.slow  # two processes writing for seconds
def test_the_wal_stays_bounded_while_two_processes_write(tmp_path):
    # SQLite's own checkpoints never let the WAL start over while two processes write in turn: it grew to
    # 133 MB in 100,000 entries.
    path = str(tmp_path / "state.sqlite3")
    state_store(path)  # made before the writers start, as gunicorn's master does
    wal_sizes = in_processes(2, write_entries, path, 6_000)
    assert max(wal_sizes) <= 3 * WAL_LIMIT_BYTES  # some 4.2 MB; 44 MB before the store's own checkpoints
    assert stored(path)[0] == 12_000


def test_a_writer_waits_for_another_workers_checkpoint_rather_than_writing_on(tmp_path):
    # A checkpoint holds SQLite's checkpoint lock while it polls for the writer lock, 100 ms apart once it has
    # waited a while. A worker that wrote on between those polls (its own checkpoint kept back: the lock is taken)
    # could keep the writer lock from it for a thousand writes; the WAL grew to 27 MB so in a CI run.
    path = tmp_path / "state.sqlite3"
    store = state_store(path)
    with (
        contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other_worker,
        contextlib.closing(
            sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        ) as checkpointer,
    ):
        other_worker.execute("PRAGMA wal_autocheckpoint=0")
        other_worker.execute("BEGIN IMMEDIATE")
        other_worker.execute("INSERT INTO counters VALUES (?, 1)", ("x" * WAL_LIMIT_BYTES,))  # the WAL past its limit
        waiting = threading.Thread(target=lambda: checkpointer.execute("PRAGMA wal_checkpoint(RESTART)").fetchone())
        waiting.start()
        time.sleep(0.5)  # its polls for the writer lock are far apart by now
        other_worker.execute("COMMIT")
        store.add_entry(ENTRY)
        # The checkpoint has ended, and done its work: a passive one finds the lock free and nothing left to copy.
        with contextlib.closing(sqlite3.connect(path)) as reader:
            busy, frames, copied = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        waiting.join()
    assert busy == 0 and frames == copied


@pytest.mark.parametrize("name", [None, *FILTERS])
def test_every_filter_is_served_by_an_index(tmp_path, name):
    store = state_store(tmp_path / "state.sqlite3")
    sql, values = page_query(after=10, limit=100, filters={name: "x"} if name else {})
    plan = " ".join(row[3] for row in store._connection().execute(f"EXPLAIN QUERY PLAN {sql}", values))
    assert plan.startswith("SEARCH journal USING") and "TEMP B-TREE" not in plan, plan  # no scan, no sort
    index = (
        f"journal_by_{name} (scope=? AND {name}=? AND rowid>?)" if name else "journal_by_scope (scope=? AND rowid>?)"
    )
    assert f"INDEX {index}" in plan, plan


def test_a_journal_from_before_retention_goes_and_sequences_stay(tmp_path):
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as old:  # the schema of the first version: no sizes, no version
        old.execute("CREATE TABLE counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        old.execute("INSERT INTO counters VALUES ('rule:a', 3)")
        old.execute("CREATE TABLE journal (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, entry TEXT)")
        old.execute("INSERT INTO journal (at, entry) VALUES (1, '{}')")
    store = state_store(path)
    assert entries(store) == [] and store.next_count("rule:a") == 4
    store.add_entry(ENTRY)
    assert len(entries(store)) == 1
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_journal_with_retention_but_no_probe_keeps_its_entries(tmp_path):
    path = tmp_path / "state.sqlite3"
    state_store(path).add_entry(ENTRY)
    with sqlite3.connect(path) as older:  # as the first version with retention left it
        older.execute("DROP TABLE probe")
        older.execute("PRAGMA user_version = 1")
    store = state_store(path)
    assert len(entries(store)) == 1 and store.writable()


def test_a_database_at_its_page_limit_refuses_growth_and_clearing_makes_room(tmp_path):
    # Portable, where a real full disk needs root: SQLite's own cap on the database's pages (the store's
    # connection is this thread's). The WAL can still grow, so writes in place still succeed.
    store = state_store(tmp_path / "state.sqlite3")
    store.add_entry(ENTRY)
    store._connection().execute("PRAGMA max_page_count = 1").fetchone()  # as low as it goes: the current size
    with pytest.raises(StoreFull) as refused:
        for _ in range(100):
            store.add_entry(ENTRY)
    assert refused.value.status == 503 and refused.value.error_type == "api_error"
    written = len(entries(store))  # reads need no room
    store.clear_entries()
    assert entries(store) == [] and store.add_entry(ENTRY) > written


def fill_with_journal(store) -> None:
    """Journal entries until the disk is full: until even a counter, which changes in place, cannot be written."""
    for _ in range(10_000):
        with contextlib.suppress(StoreFull):
            store.add_entry({**ENTRY, "body": "x" * 2000})
        try:
            store.next_count("rule:sequence")
        except StoreFull:
            return
    raise AssertionError("the disk never filled")


def test_on_a_full_disk_writes_fail_reads_work_and_clearing_makes_room_each_time(small_disk):
    store = state_store(small_disk / "state.sqlite3", reserve_bytes=None)  # the reserve: a quarter of the disk
    for episode in range(3):
        fill_with_journal(store)  # some 40 entries on 2 MB, most of them in the WAL
        assert not store.writable(), episode
        assert entries(store)  # reads need no room
        store.clear_entries()  # with the reserve's room; then the room goes back to the disk, the reserve is made
        assert entries(store) == [] and store.writable() and store.add_entry(ENTRY)
        assert store.reserve_path.stat().st_size == store.reserve_bytes


def test_when_something_else_fills_the_disk_the_store_recovers_as_room_returns(small_disk):
    store = state_store(small_disk / "state.sqlite3", reserve_bytes=None)
    store.add_entry(ENTRY)
    filler = fill(small_disk)
    with pytest.raises(StoreFull):
        for _ in range(1000):
            store.add_entry({**ENTRY, "body": "x" * 2000})
    assert not store.writable()
    filler.unlink()
    assert store.writable() and store.next_count("rule:sequence") == 1 and store.add_entry(ENTRY)
