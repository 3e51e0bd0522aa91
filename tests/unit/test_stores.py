"""The state store's contract (backends/state/base.py), held by the SQLite store and the Redis store alike.

Each test runs on both: a SQLite file of its own, and a real redis-server (the session's) under a key prefix
of its own. Scopes keep their state apart in both.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
import redis

from backends.state import StoreFull, StoreUnavailable, in_scope
from backends.state.redis_store import RedisStore

from builders import state_store
from redis_server import RedisServer

ENTRY = {"method": "POST", "path": "/v1/messages", "status": 200, "rule": "greet", "body": {"n": 1}}
LIMITS = {"max_journal_bytes": 1 << 40, "max_journal_entries": 1 << 40}


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[..., object]]:
    """Makes a store of the kind the test runs on; every store one test makes shares its state."""
    made = []
    prefix = f"test-{secrets.token_hex(4)}"

    def make(**limits: int) -> object:
        if request.param == "sqlite":
            store = state_store(tmp_path / "state.sqlite3", **limits)
        else:
            redis_server = request.getfixturevalue("redis_server")
            store = RedisStore(redis_server.url, prefix=prefix, **{**LIMITS, **limits})
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def entries(store, **options) -> list[dict]:
    return store.journal_page(**{"after": 0, "limit": 1000, "max_bytes": 1 << 30, **options}).entries


def test_counters_count_and_reset(make_store):
    store = make_store()
    assert [store.next_count("a"), store.next_count("a"), store.next_count("b")] == [1, 2, 1]
    store.reset_counters()
    assert store.next_count("a") == 1


def test_journal_filters_and_paging(make_store):
    store = make_store()
    for status in (200, 529, 200):
        store.add_entry({**ENTRY, "status": status, "body": {"n": status}})
    store.add_entry({"method": "GET", "path": "/v1/models", "status": 200})
    assert [entry["status"] for entry in entries(store, path="/v1/messages")] == [200, 529, 200]
    assert [entry["id"] for entry in entries(store, status=529)] == [2]
    assert [entry["id"] for entry in entries(store, after=2, limit=1)] == [3]
    assert entries(store, method="GET")[0]["path"] == "/v1/models"
    assert [entry["id"] for entry in entries(store, path="/v1/messages", limit=2)] == [1, 2]
    page = store.journal_page(after=0, limit=2, max_bytes=1 << 30, rule="greet")
    assert [entry["id"] for entry in page.entries] == [1, 2] and page.has_more
    store.clear_entries()
    assert entries(store) == []
    assert store.add_entry(ENTRY) == 5  # ids are never given twice


def test_a_filtered_page_finds_matches_far_apart(make_store):
    store = make_store()
    for number in range(1, 1201):
        store.add_entry({**ENTRY, "status": 529 if number % 400 == 0 else 200})
    assert [entry["id"] for entry in entries(store, status=529)] == [400, 800, 1200]
    page = store.journal_page(after=0, limit=2, max_bytes=1 << 30, status=529)
    assert [entry["id"] for entry in page.entries] == [400, 800] and page.has_more


def test_last_good_script_and_a_late_save_of_an_earlier_edit(make_store):
    store = make_store()
    assert store.last_script("s.yaml") is None
    store.save_script("s.yaml", "edit 3", 3)
    store.save_script("s.yaml", "edit 2", 2)  # two workers loaded two edits; the earlier one saves last
    assert store.last_script("s.yaml") == "edit 3"
    store.save_script("s.yaml", "edit 4", 4)
    assert store.last_script("s.yaml") == "edit 4"


def test_the_journal_keeps_its_newest_entries_within_the_entry_limit(make_store):
    store = make_store(max_journal_entries=40)
    for sent in range(1, 201):
        store.add_entry(ENTRY)
        ids = [entry["id"] for entry in entries(store)]
        assert len(ids) <= 40 and ids == list(range(ids[0], sent + 1))  # the newest, none missing between
    assert len(ids) >= 38  # deleted in batches of a twentieth, not all at once


def test_the_journal_keeps_its_newest_entries_within_the_byte_limit(make_store):
    store = make_store(max_journal_bytes=100_000)
    for sent in range(1, 301):
        store.add_entry({**ENTRY, "body": "x" * (sent % 7 * 500)})
        kept = entries(store)
        assert kept[-1]["id"] == sent and sum(len(entry["body"]) for entry in kept) <= 100_000


def test_an_entry_over_the_byte_limit_is_kept_alone(make_store):
    store = make_store(max_journal_bytes=10_000)
    store.add_entry(ENTRY)
    store.add_entry({**ENTRY, "body": "x" * 20_000})
    assert [len(entry["body"]) for entry in entries(store)] == [20_000]  # the newest always stays


def test_a_page_stops_before_its_byte_budget_and_says_there_is_more(make_store):
    store = make_store()
    for _ in range(5):
        store.add_entry({**ENTRY, "body": "x" * 40_000})
    page = store.journal_page(after=0, limit=100, max_bytes=100_000)
    assert [entry["id"] for entry in page.entries] == [1, 2] and page.has_more
    page = store.journal_page(after=2, limit=2, max_bytes=100_000)
    assert [entry["id"] for entry in page.entries] == [3, 4] and page.has_more
    page = store.journal_page(after=4, limit=1, max_bytes=100)  # one entry, whatever its size
    assert [entry["id"] for entry in page.entries] == [5] and not page.has_more


def test_newest_first_pages_read_down_from_the_newest(make_store):
    store = make_store()
    for status in (200, 529, 200, 529, 200):
        store.add_entry({**ENTRY, "status": status})
    page = store.journal_page(after=0, limit=2, max_bytes=1 << 30, newest=True)
    assert [entry["id"] for entry in page.entries] == [5, 4] and page.has_more
    page = store.journal_page(after=1, limit=10, max_bytes=1 << 30, newest=True, status=529)
    assert [entry["id"] for entry in page.entries] == [4, 2] and not page.has_more


def test_a_completed_entry_keeps_what_it_had_and_gains_its_ending(make_store):
    store = make_store()
    first = store.add_entry(ENTRY)
    store.add_entry(ENTRY)
    ending = {"duration_ms": 12.5, "events": [{"at_ms": 1.0, "event": {"type": "ping"}}], "completed": True}
    store.complete_entry(first, ending)
    assert entries(store)[0] == {"id": first, **ENTRY, **ending}
    assert [entry["id"] for entry in entries(store, rule="greet", status=200)] == [first, first + 1]


def test_completing_an_entry_that_is_gone_or_in_another_scope_does_nothing(make_store):
    store = make_store()
    with in_scope("elsewhere"):
        theirs = store.add_entry(ENTRY)
    store.complete_entry(theirs, {"completed": True})
    gone = store.add_entry(ENTRY)
    store.clear_entries()
    store.complete_entry(gone, {"completed": True})
    assert entries(store) == []
    with in_scope("elsewhere"):
        assert "completed" not in entries(store)[0]


def test_completed_entries_are_kept_within_the_byte_limit(make_store):
    store = make_store(max_journal_bytes=100_000)
    for sent in range(1, 31):
        store.complete_entry(store.add_entry(ENTRY), {"response": "x" * 10_000})
        kept = entries(store)
        assert sum(len(entry["response"]) for entry in kept) <= 100_000 and len(kept) >= min(sent, 8)


def test_prompt_cache_entries(make_store):
    store = make_store()
    assert store.cache_entry("prefix") is None
    store.put_cache_entry("prefix", 2_000_000_000.5)
    assert store.cache_entry("prefix") == 2_000_000_000.5


def test_files_are_numbered_in_upload_order_and_paged_newest_first(make_store):
    store = make_store()
    numbers = [store.add_file({"id": f"file_{n}", "filename": f"{n}.txt"}) for n in range(5)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 5
    assert store.file("file_2") == (numbers[2], {"id": "file_2", "filename": "2.txt"})
    assert [row[1]["id"] for row in store.files(limit=2)] == ["file_4", "file_3"]
    assert [row[1]["id"] for row in store.files(below=numbers[3], limit=2)] == ["file_2", "file_1"]
    assert [row[1]["id"] for row in store.files(above=numbers[1], limit=2)] == ["file_3", "file_2"]
    assert [row[1]["id"] for row in store.files_by_id(["file_1", "file_4", "nope"])] == ["file_4", "file_1"]
    assert store.delete_file("file_4") and not store.delete_file("file_4")
    assert store.file("file_4") is None and [row[1]["id"] for row in store.files(limit=1)] == ["file_3"]


def test_scopes_keep_their_state_apart(make_store):
    store = make_store()
    with in_scope("run-a"):
        assert [store.next_count("rule:x"), store.next_count("rule:x")] == [1, 2]
        store.add_entry({**ENTRY, "rule": "a"})
        store.put_cache_entry("prefix", 2e9)
        store.add_file({"id": "file_a"})
    with in_scope("run-b"):
        assert store.next_count("rule:x") == 1  # run-a's calls consumed none of run-b's replies
        assert entries(store) == [] and store.cache_entry("prefix") is None
        assert store.file("file_a") is None and store.files() == [] and store.files_by_id(["file_a"]) == []
        assert not store.delete_file("file_a")
        store.add_entry({**ENTRY, "rule": "b"})
        store.reset_counters()
        store.clear_entries()
    with in_scope("run-a"):  # run-b's reset and clear left run-a's state alone
        assert store.next_count("rule:x") == 3
        assert [entry["rule"] for entry in entries(store)] == ["a"]
        assert store.cache_entry("prefix") == 2e9 and store.file("file_a") is not None
    assert store.next_count("rule:x") == 1 and entries(store) == []  # the default scope is a scope too


def test_two_stores_on_one_state_share_it(make_store):
    first, second = make_store(), make_store()
    assert [first.next_count("r"), second.next_count("r"), first.next_count("r")] == [1, 2, 3]
    first.add_entry(ENTRY)
    second.add_entry(ENTRY)
    assert [entry["id"] for entry in entries(first)] == [1, 2]
    second.add_file({"id": "file_x"})
    assert first.file("file_x") is not None


def test_redis_unreachable_is_a_503_and_the_store_recovers_when_it_returns(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        store = RedisStore(server.url, prefix="down", **LIMITS)
        assert store.next_count("r") == 1
        server.stop()
        for operation in (lambda: store.next_count("r"), lambda: store.add_entry(ENTRY), lambda: entries(store)):
            with pytest.raises(StoreUnavailable) as raised:
                operation()
            assert raised.value.status == 503
        assert not store.writable()
        server.start()
        assert store.next_count("r") == 2  # acknowledged before the outage: kept (the append-only file)
        assert store.writable()
        store.close()


def test_redis_out_of_memory_is_store_full(redis_server):
    store = RedisStore(redis_server.url, prefix=f"oom-{secrets.token_hex(4)}", **LIMITS)
    client = redis.Redis.from_url(redis_server.url)
    client.config_set("maxmemory", "1")  # below what it already uses: every write is refused
    try:
        with pytest.raises(StoreFull):
            store.add_entry(ENTRY)
        assert not store.writable()
        assert entries(store) == []  # reads go on
    finally:
        client.config_set("maxmemory", "0")
        client.close()
    assert store.add_entry(ENTRY) >= 1
    store.close()


def test_redis_keys_of_a_scope_share_one_hash_tag_under_the_prefix(redis_server):
    prefix = f"tags-{secrets.token_hex(4)}"
    store = RedisStore(redis_server.url, prefix=prefix, **LIMITS)
    with in_scope("team.one"):
        store.next_count("rule:x")
        store.add_entry(ENTRY)
        store.put_cache_entry("p", 2e9)
        store.add_file({"id": "file_1"})
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = sorted(client.scan_iter(match=f"{prefix}:*"))
    client.close()
    scoped = [key for key in keys if "{scope=" in key]
    assert scoped and all(key.startswith(f"{prefix}:{{scope=team.one}}:") for key in scoped)
    assert {key.split(":")[1] for key in keys} <= {"{scope=team.one}", "{shared}"}
    store.close()


def test_scope_names_cannot_reach_into_other_keys():
    for name in ("a}b", "a:b", "a/b", "{x}", "", "a b", "x" * 65, "-x", ".."):
        with pytest.raises(ValueError), in_scope(name):
            pass
    with in_scope("run-1"), in_scope("A.b_c"):
        pass
