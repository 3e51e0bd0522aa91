"""The SQLite state store: atomic counters across processes, the journal and its filters."""

from __future__ import annotations

import multiprocessing

from backends.state import SQLiteStore


def count_many(path: str, times: int, results) -> None:
    store = SQLiteStore(path)
    results.extend([store.next_count("shared") for _ in range(times)])


def test_counters_are_atomic_across_processes(tmp_path):
    path = str(tmp_path / "state.sqlite3")
    with multiprocessing.Manager() as manager:
        results = manager.list()
        workers = [multiprocessing.Process(target=count_many, args=(path, 50, results)) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert sorted(results) == list(range(1, 201))  # no value handed out twice, none skipped


def test_a_temporary_store_removes_its_file_when_closed_and_another_keeps_it(tmp_path):
    kept, temporary = SQLiteStore(tmp_path / "kept.sqlite3"), SQLiteStore(tmp_path / "own.sqlite3", temporary=True)
    for store in (kept, temporary):
        store.add_entry({"method": "GET", "path": "/v1/models"})
        store.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kept.sqlite3"]


def test_reset_counters(tmp_path):
    store = SQLiteStore(tmp_path / "state.sqlite3")
    assert [store.next_count("a"), store.next_count("a"), store.next_count("b")] == [1, 2, 1]
    store.reset_counters()
    assert store.next_count("a") == 1


def test_journal_filters_and_paging(tmp_path):
    store = SQLiteStore(tmp_path / "state.sqlite3")
    for status in (200, 529, 200):
        store.add_entry(
            {"method": "POST", "path": "/v1/messages", "status": status, "rule": "r", "body": {"n": status}}
        )
    store.add_entry({"method": "GET", "path": "/v1/models", "status": 200})
    assert [entry["status"] for entry in store.entries(path="/v1/messages")] == [200, 529, 200]
    assert [entry["id"] for entry in store.entries(status=529)] == [2]
    assert [entry["id"] for entry in store.entries(after=2, limit=1)] == [3]
    assert store.entries(method="GET")[0]["path"] == "/v1/models"
    store.clear_entries()
    assert store.entries() == []


def test_last_good_script(tmp_path):
    store = SQLiteStore(tmp_path / "state.sqlite3")
    assert store.last_script("s.yaml") is None
    store.save_script("s.yaml", "one", 1)
    store.save_script("s.yaml", "two", 2)
    assert store.last_script("s.yaml") == "two"


def test_a_script_saved_late_does_not_replace_a_later_edit(tmp_path):
    """Two workers load two edits at once; the one that read the earlier edit saves it last."""
    store = SQLiteStore(tmp_path / "state.sqlite3")
    store.save_script("s.yaml", "edit 3", 3)
    store.save_script("s.yaml", "edit 2", 2)
    assert store.last_script("s.yaml") == "edit 3"
