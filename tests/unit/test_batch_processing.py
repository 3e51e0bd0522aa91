"""The server's own Message Batches, in-process: the store's claims and leases, the processor, the batch object.

Time is a fake clock here, so leases, paces and expiry are stepped through
exactly; the processors are driven one `step()` at a time, never on threads.
Every test that takes `store` runs on both stores: the SQLite one, and the Redis
one on the session's redis-server, under a key prefix of the test's own.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.crc import key_slot

from app.launcher.server_process import free_port
from app.spec.batch_params import params_check
from app.spec.loading import load_spec
from app.spec.request_rules import RequestRules
from backends.batches import BatchProcessor, BatchStore, LocalBatches, SQLiteBatchStore
from backends.batches.local import RESULTS_PER_CHUNK, rfc3339
from backends.batches.processor import CLAIM_SIZE, journal_path
from backends.batches.redis_store import RedisBatchStore
from backends.batches.store import DOWNLOAD_LEASE_SECONDS, Answer, StoredBatch
from backends.catalogue import DEFAULT_FILE, ModelCatalogue
from backends.echo import EchoBackend
from backends.exchange import MessageRequest, Reply
from backends.state import SQLiteStore, StoreUnavailable, current_scope, in_scope
from backends.state.redis_client import connect
from backends.wire import ApiError, ConnectionAbort

from builders import Clock, message_body, state_store
from redis_server import RedisServer

CHECK = params_check(load_spec(), RequestRules(ModelCatalogue.from_file(DEFAULT_FILE)))
ECHO = EchoBackend(ModelCatalogue.from_file(DEFAULT_FILE))


@pytest.fixture
def state(tmp_path) -> SQLiteStore:
    return state_store(tmp_path / "state.sqlite3")


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, state: SQLiteStore) -> Iterator[BatchStore]:
    if request.param == "sqlite":
        yield SQLiteBatchStore(state)
        return
    client = connect(request.getfixturevalue("redis_server").url)
    try:
        yield RedisBatchStore(client, f"test-{secrets.token_hex(4)}")
    finally:
        client.close()


def batches(store: BatchStore, clock: Clock, **settings: float) -> LocalBatches:
    return LocalBatches(store, clock=clock, **settings)


def processor(store: BatchStore, clock: Clock, answer=ECHO.create_message, **options: Any) -> BatchProcessor:
    return BatchProcessor(store, answer, CHECK, clock=clock, **options)


def requests(count: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"r{n}", "params": message_body(f"text {n}")} for n in range(count)]


def results(local: LocalBatches, batch_id: str) -> list[dict[str, Any]]:
    text = b"".join(local.results(batch_id, {}).chunks).decode()
    assert text.endswith("\n") and "\n\n" not in text
    return [json.loads(line) for line in text.splitlines()]


def run(*processors: BatchProcessor) -> None:
    """Step the processors in turn until none has anything to answer, and once more to end what can end."""
    while any([each.step() for each in processors]):
        pass
    for each in processors:
        each.step()


def test_a_batch_from_creation_to_its_results(store, clock):
    local = batches(store, clock)
    batch = local.create(requests(3), {"anthropic-version": "2023-06-01", "x-api-key": "secret"}).body
    assert batch["processing_status"] == "in_progress" and batch["results_url"] is None
    assert batch["request_counts"] == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert batch["created_at"] == "2027-01-15T08:00:00.000000Z" and batch["expires_at"] == "2027-01-16T08:00:00.000000Z"
    assert store.get(batch["id"]).headers == {"anthropic-version": "2023-06-01"}  # the key is never kept

    run(processor(store, clock))
    done = local.retrieve(batch["id"], {}).body
    assert done["processing_status"] == "ended" and done["ended_at"] == done["created_at"]
    assert done["request_counts"] == {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0}
    assert done["results_url"] == f"/v1/messages/batches/{batch['id']}/results"
    lines = results(local, batch["id"])
    assert [line["custom_id"] for line in lines] == ["r0", "r1", "r2"]
    assert lines[1]["result"]["message"]["content"] == [{"type": "text", "text": "text 1"}]
    assert lines[1]["result"]["message"]["usage"]["service_tier"] == "batch"


def test_the_results_file_is_read_a_page_at_a_time(store, clock, monkeypatch):
    monkeypatch.setattr("backends.batches.local.RESULTS_PER_CHUNK", 10)
    local = batches(store, clock)
    batch_id = local.create(requests(25), {}).body["id"]
    run(processor(store, clock))
    chunks = list(local.results(batch_id, {}).chunks)
    assert [chunk.count(b"\n") for chunk in chunks] == [10, 10, 5]


def test_a_malformed_request_is_errored_as_post_v1_messages_would_refuse_it(store, clock):
    local = batches(store, clock)
    bad = [
        {"custom_id": "no-max-tokens", "params": {"model": "m", "messages": [{"role": "user", "content": "x"}]}},
        {"custom_id": "assistant-first", "params": message_body("x", messages=[{"role": "assistant", "content": "x"}])},
    ]
    batch_id = local.create(bad, {}).body["id"]
    run(processor(store, clock))
    errors = {line["custom_id"]: line["result"]["error"] for line in results(local, batch_id)}
    assert errors["no-max-tokens"]["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    assert errors["assistant-first"]["error"]["message"] == 'messages: first message must use the "user" role'
    assert errors["no-max-tokens"]["request_id"].startswith("req_") and errors["no-max-tokens"]["type"] == "error"


def test_a_request_s_betas_are_the_batch_s_anthropic_beta(store, clock):
    # The object form of fallback_credit_token needs its beta, named in the create request's anthropic-beta.
    params = message_body("x", fallback_credit_token={"token": "t", "mode": "strict"})
    local = batches(store, clock)
    without = local.create([{"custom_id": "r", "params": params}], {}).body["id"]
    named = local.create([{"custom_id": "r", "params": params}], {"anthropic-beta": "fallback-credit-2026-07-01"})
    run(processor(store, clock))
    error = results(local, without)[0]["result"]["error"]["error"]
    assert error["message"] == "fallback_credit_token: Input should be a valid string"
    assert results(local, named.body["id"])[0]["result"]["type"] == "succeeded"


def test_a_backend_failure_is_an_errored_api_error(store, clock):
    def broken(request: MessageRequest) -> Reply:
        raise RuntimeError("boom")

    local = batches(store, clock)
    batch_id = local.create(requests(1), {}).body["id"]
    run(processor(store, clock, answer=broken))
    error = results(local, batch_id)[0]["result"]["error"]["error"]
    assert error == {"type": "api_error", "message": "Internal server error"}


def test_a_store_out_of_reach_while_answering_hands_the_run_back(store, clock):
    def unreachable(request: MessageRequest) -> Reply:
        raise StoreUnavailable()  # the scripted backend's sequences, say, on a Redis that went away

    local = batches(store, clock)
    batch_id = local.create(requests(2), {}).body["id"]
    with pytest.raises(StoreUnavailable):
        processor(store, clock, answer=unreachable).step()
    run(processor(store, clock))  # once it is back: at once, not after the lease
    assert [line["result"]["type"] for line in results(local, batch_id)] == ["succeeded"] * 2


def test_the_backend_sees_each_request_with_its_custom_id_and_the_batch_headers(store, clock):
    seen: list[MessageRequest] = []

    def answer(request: MessageRequest) -> Reply:
        seen.append(request)
        return ECHO.create_message(request)

    local = batches(store, clock)
    local.create(requests(2), {"anthropic-beta": "b1", "authorization": "Bearer k", "content-length": "10"})
    run(processor(store, clock, answer=answer))
    assert [request.custom_id for request in seen] == ["r0", "r1"]
    assert seen[0].headers == {"anthropic-beta": "b1"} and seen[0].body == message_body("text 0")


def test_two_workers_share_a_big_batch_a_run_each(store, clock):
    local = batches(store, clock)
    batch_id = local.create(requests(CLAIM_SIZE * 2 + 1), {}).body["id"]
    first, second = processor(store, clock), processor(store, clock)
    answered: dict[str, int] = {}
    for each in (first, second):
        before = len(results_so_far(store, batch_id))
        each.step()
        answered[each.name] = len(results_so_far(store, batch_id)) - before
    assert list(answered.values()) == [CLAIM_SIZE, CLAIM_SIZE]
    run(first, second)
    assert local.retrieve(batch_id, {}).body["request_counts"]["succeeded"] == CLAIM_SIZE * 2 + 1


def results_so_far(store: BatchStore, batch_id: str) -> list[str]:
    lines = "".join(store.result_pages(store.get(batch_id), page_size=1000)).splitlines()
    return [line for line in lines if '"result":{"type":"succeeded"' in line]


def test_requests_claimed_by_a_worker_that_died_are_taken_over_after_its_lease(store, clock):
    local = batches(store, clock)
    batch_id = local.create(requests(5), {}).body["id"]
    batch = store.get(batch_id)
    dead = store.claim(batch, "dead-worker-1", now=clock.now, lease_until=clock.now + 10, limit=5)
    assert len(dead) == 5  # ... and then the worker was killed, holding them

    survivor = processor(store, clock, lease_seconds=10)
    assert not survivor.step()  # the lease still holds: nobody may take them
    clock.now += 11
    run(survivor)
    assert local.retrieve(batch_id, {}).body["request_counts"]["succeeded"] == 5

    late = store.complete(batch, "dead-worker-1", [Answer(0, "succeeded", '{"type":"succeeded"}')])
    assert late == []  # had the first worker come back, its answer would not count: one result per request
    assert len(results(local, batch_id)) == 5


def test_requests_claimed_again_come_in_request_order(store, clock):
    batch = store.get(batches(store, clock).create(requests(6), {}).body["id"])
    lease = {"now": clock.now, "lease_until": clock.now + 10}
    assert [each.position for each in store.claim(batch, "dead", **lease, limit=2)] == [0, 1]
    assert [each.position for each in store.claim(batch, "stopping", **lease, limit=2)] == [2, 3]
    store.release(batch, "stopping")
    assert [each.position for each in store.claim(batch, "other", **lease, limit=10)] == [2, 3, 4, 5]
    store.release(batch, "other")
    clock.now += 11
    again = store.claim(batch, "late", now=clock.now, lease_until=clock.now + 10, limit=10)
    assert [(each.position, each.custom_id) for each in again] == [(n, f"r{n}") for n in range(6)]
    assert json.loads(again[5].params) == message_body("text 5")


def test_a_cancel_closes_out_a_dead_worker_s_requests_once_its_lease_passes(store, clock):
    local = batches(store, clock)
    batch_id = local.create(requests(5), {}).body["id"]
    batch = store.get(batch_id)
    store.claim(batch, "dead", now=clock.now, lease_until=clock.now + 10, limit=2)
    local.cancel(batch_id, {})
    worker = processor(store, clock)
    run(worker)
    assert local.retrieve(batch_id, {}).body["processing_status"] == "canceling"  # two still held
    clock.now += 11
    run(worker)
    done = local.retrieve(batch_id, {}).body
    assert done["processing_status"] == "ended" and done["request_counts"]["canceled"] == 5
    assert store.complete(batch, "dead", [Answer(0, "succeeded", '{"type":"succeeded"}')]) == []
    assert [line["result"] for line in results(local, batch_id)] == [{"type": "canceled"}] * 5


def test_a_worker_renews_its_lease_while_it_answers(store, clock):
    local = batches(store, clock)
    batch_id = local.create(requests(6), {}).body["id"]
    batch = store.get(batch_id)
    taken_over: list[int] = []

    def slow(request: MessageRequest) -> Reply:
        clock.now += 4  # each answer takes 4 s, against a lease of 10: the run takes 24 s
        taken_over.extend(
            claimed.position
            for claimed in store.claim(batch, "other", now=clock.now, lease_until=clock.now + 10, limit=6)
        )
        return ECHO.create_message(request)

    run(processor(store, clock, answer=slow, lease_seconds=10))
    assert taken_over == []  # another worker found every request still held, all along
    assert len(results(local, batch_id)) == 6


def test_a_stopping_worker_hands_back_what_it_did_not_answer(store, clock):
    local = batches(store, clock)
    batch_id = local.create(requests(4), {}).body["id"]
    stopping = processor(store, clock, lease_seconds=1000)

    def answer_then_stop(request: MessageRequest) -> Reply:
        stopping._stopping.set()
        return ECHO.create_message(request)

    stopping.answer = answer_then_stop
    stopping.step()
    assert len(results_so_far(store, batch_id)) == 1
    run(processor(store, clock))  # at once, though the stopped worker's lease had long to run
    assert len(results_so_far(store, batch_id)) == 4


def test_a_pace_spreads_the_answers_across_the_minimum_time(store, clock):
    local = batches(store, clock, min_seconds=10)
    batch_id = local.create(requests(10), {}).body["id"]
    worker = processor(store, clock)
    run(worker)
    assert len(results_so_far(store, batch_id)) == 1  # the first at once
    clock.now += 4.5
    run(worker)
    assert len(results_so_far(store, batch_id)) == 5
    assert local.retrieve(batch_id, {}).body["processing_status"] == "in_progress"
    clock.now += 5.5
    run(worker)
    assert local.retrieve(batch_id, {}).body["processing_status"] == "ended"


def test_cancel_ends_the_batch_with_its_unanswered_requests_canceled(store, clock):
    local = batches(store, clock, min_seconds=10)
    batch_id = local.create(requests(10), {}).body["id"]
    worker = processor(store, clock)
    run(worker)
    clock.now += 1
    canceling = local.cancel(batch_id, {}).body
    assert canceling["processing_status"] == "canceling" and canceling["cancel_initiated_at"] == rfc3339(clock.now)
    assert local.cancel(batch_id, {}).body == canceling  # again: nothing changes
    run(worker)
    done = local.retrieve(batch_id, {}).body
    assert done["processing_status"] == "ended"
    assert done["request_counts"] == {"processing": 0, "succeeded": 1, "errored": 0, "canceled": 9, "expired": 0}
    assert [line["result"] for line in results(local, batch_id)][1:] == [{"type": "canceled"}] * 9
    with pytest.raises(ApiError, match="has already ended and cannot be canceled") as error:
        local.cancel(batch_id, {})
    assert error.value.status == 400


def test_requests_not_answered_when_the_batch_expires_are_expired(store, clock):
    local = batches(store, clock, min_seconds=100, expire_seconds=5)
    batch_id = local.create(requests(10), {}).body["id"]
    worker = processor(store, clock)
    run(worker)
    clock.now += 5
    run(worker)
    done = local.retrieve(batch_id, {}).body
    assert done["request_counts"]["succeeded"] == 1 and done["request_counts"]["expired"] == 9
    assert done["ended_at"] == done["expires_at"]


def test_delete_and_results_only_once_the_batch_has_ended(store, clock):
    local = batches(store, clock, min_seconds=10)
    batch_id = local.create(requests(2), {}).body["id"]
    for refused in (local.delete, local.results):
        with pytest.raises(ApiError) as error:
            refused(batch_id, {})
        assert error.value.status == 400
    clock.now += 10
    run(processor(store, clock))
    assert local.delete(batch_id, {}).body == {"id": batch_id, "type": "message_batch_deleted"}
    for gone in (local.retrieve, local.cancel, local.delete, local.results):
        with pytest.raises(ApiError, match=f"Message Batch not found: {batch_id}") as error:
            gone(batch_id, {})
        assert error.value.status == 404


def ended_batch(store: BatchStore, clock: Clock, count: int) -> tuple[LocalBatches, str]:
    local = batches(store, clock)
    batch_id = local.create(requests(count), {}).body["id"]
    run(processor(store, clock))
    return local, batch_id


def items(store: BatchStore, batch: StoredBatch) -> int:
    """How many of the batch's requests the store holds."""
    if isinstance(store, SQLiteBatchStore):
        sql = "SELECT count(*) FROM batch_items WHERE batch = ?"
        return int(store.store.connection().execute(sql, (batch.number,)).fetchone()[0])
    assert isinstance(store, RedisBatchStore)
    return int(store.client.hlen(store.batch_keys(batch.scope, batch.id).ids))


def dead_download(store: BatchStore, batch: StoredBatch, lease_until: float) -> None:
    """The lease of a download begun by a worker that was then killed: never ended."""
    if isinstance(store, SQLiteBatchStore):
        sql = "INSERT INTO batch_downloads VALUES ('dead', ?, ?)"
        store.store.write(lambda connection: connection.execute(sql, (batch.number, lease_until)))
        return
    assert isinstance(store, RedisBatchStore)
    store.client.zadd(store.downloads_key, {f"{batch.scope}/{batch.id}/dead": lease_until})
    store.client.zadd(store.batch_keys(batch.scope, batch.id).downloads, {"dead": lease_until})


def lose_requests(store: BatchStore, batch: StoredBatch) -> None:
    """Delete the batch's requests, as a sweep past a download's lease would."""
    if isinstance(store, SQLiteBatchStore):
        store.store.write(lambda connection: connection.execute("DELETE FROM batch_items"))
        return
    assert isinstance(store, RedisBatchStore)
    store.client.delete(*store.batch_keys(batch.scope, batch.id).requests)


def test_a_download_under_way_outlives_a_delete_of_its_batch(store, clock):
    local, batch_id = ended_batch(store, clock, 2 * RESULTS_PER_CHUNK + 5)
    batch = store.get(batch_id)
    chunks = iter(local.results(batch_id, {}).chunks)
    first = next(chunks)
    local.delete(batch_id, {})
    with pytest.raises(ApiError, match="not found"):
        local.results(batch_id, {})
    lines = (first + b"".join(chunks)).decode().splitlines()
    assert [json.loads(line)["custom_id"] for line in lines] == [f"r{n}" for n in range(2 * RESULTS_PER_CHUNK + 5)]
    assert items(store, batch) == 0  # the last reader took the deleted batch's requests with it


def test_a_delete_with_no_download_under_way_takes_the_requests_at_once(store, clock):
    local, batch_id = ended_batch(store, clock, 3)
    batch = store.get(batch_id)
    assert b"".join(local.results(batch_id, {}).chunks).count(b"\n") == 3  # a download that ended
    local.delete(batch_id, {})
    assert items(store, batch) == 0


def test_a_download_whose_worker_died_lets_go_once_its_lease_passes(store, clock):
    local, batch_id = ended_batch(store, clock, 3)
    batch = store.get(batch_id)
    dead_download(store, batch, clock.now + DOWNLOAD_LEASE_SECONDS)
    local.delete(batch_id, {})
    processor(store, clock).step()
    store.sweep_downloads(clock.now)
    assert items(store, batch) == 3  # still held by the lease
    clock.now += DOWNLOAD_LEASE_SECONDS + 1
    store.sweep_downloads(clock.now)
    assert items(store, batch) == 0


def test_a_results_file_that_comes_out_short_is_cut_not_ended(store, clock):
    local, batch_id = ended_batch(store, clock, RESULTS_PER_CHUNK + 1)
    chunks = iter(local.results(batch_id, {}).chunks)
    next(chunks)
    lose_requests(store, store.get(batch_id))
    with pytest.raises(ConnectionAbort):
        next(chunks)


def test_list_pages_newest_first(store, clock):
    local = batches(store, clock)
    ids = [local.create(requests(1), {}).body["id"] for _ in range(5)]
    first = local.page(after_id=None, before_id=None, limit=2, headers={}).body
    assert [batch["id"] for batch in first["data"]] == [ids[4], ids[3]] and first["has_more"]
    rest = local.page(after_id=first["last_id"], before_id=None, limit=10, headers={}).body
    assert [batch["id"] for batch in rest["data"]] == [ids[2], ids[1], ids[0]] and not rest["has_more"]
    newer = local.page(after_id=None, before_id=ids[1], limit=2, headers={}).body
    assert [batch["id"] for batch in newer["data"]] == [ids[3], ids[2]] and newer["has_more"]
    with pytest.raises(ApiError, match="cannot be given together"):
        local.page(after_id=ids[0], before_id=ids[1], limit=2, headers={})


def test_each_answered_request_is_journaled_once_under_its_own_path(store, clock, state):
    journal = state
    local = batches(store, clock, min_seconds=10)
    batch_id = local.create(requests(3), {"x-test-id": "t-1"}).body["id"]
    worker = processor(store, clock, journal=journal)
    run(worker)
    local.cancel(batch_id, {})
    run(worker)
    entries = journal.journal_page(after=0, limit=100, max_bytes=1 << 30).entries
    assert [entry["path"] for entry in entries] == [journal_path(batch_id, "r0")]  # canceled requests were never asked
    entry = entries[0]
    assert entry["method"] == "POST" and entry["status"] == 200 and entry["custom_id"] == "r0"
    assert entry["batch_id"] == batch_id and entry["body"] == message_body("text 0")
    assert entry["headers"] == {"x-test-id": "t-1"} and entry["request_id"].startswith("req_")


def test_a_run_stops_when_its_batch_is_canceled_meanwhile(store, clock):
    local = batches(store, clock)
    batch_id = local.create(requests(20), {}).body["id"]

    def slow(request: MessageRequest) -> Reply:
        clock.now += 4  # each answer takes 4 s; the lease, 9, is renewed every 3
        if request.custom_id == "r1":
            local.cancel(batch_id, {})
        return ECHO.create_message(request)

    run(processor(store, clock, answer=slow, lease_seconds=9))
    counts = local.retrieve(batch_id, {}).body["request_counts"]
    assert counts["succeeded"] == 2 and counts["canceled"] == 18  # not the whole run of 20 answered first


def test_a_processor_that_has_answered_everything_gives_its_memory_back_once(store, clock):
    local = batches(store, clock)
    idle = threading.Event()
    calls: list[None] = []
    worker = processor(store, clock, when_idle=lambda: (calls.append(None), idle.set()))
    local.create(requests(3), {})
    worker.start()
    try:
        assert idle.wait(10), "the processor never went idle after its work"
        worker.wake()  # nothing more to answer: no second call
        time.sleep(0.2)
    finally:
        worker.stop()
    assert len(calls) == 1


# ----------------------------------------------------------------------------------------------- scopes
def test_a_batch_is_seen_in_its_own_scope_only(store, clock):
    local = batches(store, clock)
    with in_scope("run-a"):
        batch_id = local.create(requests(2), {}).body["id"]
    for scope in ("run-b", "default"):
        with in_scope(scope):
            assert store.get(batch_id) is None
            for call in (local.retrieve, local.cancel, local.delete, local.results):
                with pytest.raises(ApiError, match=f"Message Batch not found: {batch_id}") as error:
                    call(batch_id, {})
                assert error.value.status == 404
            assert local.page(after_id=None, before_id=None, limit=10, headers={}).body["data"] == []
            with pytest.raises(ApiError, match="after_id: no Message Batch"):
                local.page(after_id=batch_id, before_id=None, limit=10, headers={})
    run(processor(store, clock))  # outside any scope: the processor finds every scope's batches
    with in_scope("run-b"), pytest.raises(ApiError, match="not found"):
        local.delete(batch_id, {})
    with in_scope("run-a"):
        assert local.retrieve(batch_id, {}).body["processing_status"] == "ended"
        assert [line["custom_id"] for line in results(local, batch_id)] == ["r0", "r1"]
        listed = local.page(after_id=None, before_id=None, limit=10, headers={}).body["data"]
        assert [batch["id"] for batch in listed] == [batch_id]
        assert local.delete(batch_id, {}).body["type"] == "message_batch_deleted"


def test_the_processor_answers_each_batch_in_its_own_scope(store, clock, state):
    seen: list[tuple[str | None, str]] = []

    def answer(request: MessageRequest) -> Reply:
        seen.append((request.custom_id, current_scope()))  # where the backend keeps sequences and caches
        return ECHO.create_message(request)

    local = batches(store, clock)
    for scope in ("run-a", "run-b"):
        with in_scope(scope):
            local.create([{"custom_id": f"from-{scope}", "params": message_body("x")}], {})
    assert [batch.scope for batch in store.running()] == ["run-a", "run-b"]
    run(processor(store, clock, answer=answer, journal=state))
    assert seen == [("from-run-a", "run-a"), ("from-run-b", "run-b")]
    for scope in ("run-a", "run-b"):
        with in_scope(scope):
            entries = state.journal_page(after=0, limit=100, max_bytes=1 << 30).entries
            assert [entry["custom_id"] for entry in entries] == [f"from-{scope}"]
    assert state.journal_page(after=0, limit=100, max_bytes=1 << 30).entries == []  # nothing in the default scope


# ------------------------------------------------------------------------------------------------ Redis
@pytest.fixture
def prefix() -> str:
    return f"test-{secrets.token_hex(4)}"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_store() -> Iterator[Callable[[str, str], RedisBatchStore]]:
    """Makes Redis batch stores, each with a client of its own (as each host has); closes their clients after."""
    made: list[RedisBatchStore] = []

    def make(url: str, prefix: str) -> RedisBatchStore:
        made.append(RedisBatchStore(connect(url), prefix))
        return made[-1]

    yield make
    for store in made:
        store.client.close()


def test_two_hosts_share_batches_through_one_redis(redis_store, redis_url, prefix, clock):
    here, there = redis_store(redis_url, prefix), redis_store(redis_url, prefix)
    local_here, local_there = batches(here, clock), batches(there, clock)
    with in_scope("ci-1"):
        first = local_here.create(requests(3), {"anthropic-version": "2023-06-01"}).body["id"]
        second = local_there.create(requests(1), {}).body["id"]
    run(processor(there, clock))  # only the other host's processor runs
    with in_scope("ci-1"):
        done = local_here.retrieve(first, {}).body
        assert done["processing_status"] == "ended" and done["request_counts"]["succeeded"] == 3
        assert [line["custom_id"] for line in results(local_here, first)] == ["r0", "r1", "r2"]
        listed = local_here.page(after_id=None, before_id=None, limit=10, headers={}).body["data"]
        assert [batch["id"] for batch in listed] == [second, first]  # numbered in creation order across hosts
        assert local_there.delete(first, {}).body["type"] == "message_batch_deleted"
        assert here.get(first) is None


def test_a_batch_registered_but_never_written_is_skipped(redis_store, redis_url, prefix, clock):
    store = redis_store(redis_url, prefix)
    store._register(keys=[store.counter, store.running_key], args=["default/msgbatch_ghost"])  # then the host died
    assert store.running() == []
    batch_id = batches(store, clock).create(requests(1), {}).body["id"]
    assert [batch.id for batch in store.running()] == [batch_id]


def test_a_creation_that_died_leaves_nothing_for_long(redis_store, redis_url, prefix, clock, monkeypatch):
    store = redis_store(redis_url, prefix)

    def died(**_: Any) -> None:
        raise StoreUnavailable()

    monkeypatch.setattr(store, "_create", died)  # the requests were written, the batch never was
    with pytest.raises(StoreUnavailable):
        batches(store, clock).create(requests(3), {})
    (member,) = store.client.zrange(store.running_key, 0, -1)
    keys = store.batch_keys("default", member.decode().partition("/")[2])
    assert store.client.hlen(keys.ids) == 3 and 0 < store.client.ttl(keys.ids) <= 3600
    assert store.running() == []


def test_an_ended_batch_left_on_the_running_list_is_taken_off_it(redis_store, redis_url, prefix, clock):
    store = redis_store(redis_url, prefix)
    _, batch_id = ended_batch(store, clock, 1)
    store.client.zadd(store.running_key, {f"default/{batch_id}": 1})  # a finish whose second step was lost
    assert store.running() == []
    assert store.client.zcard(store.running_key) == 0


def test_every_key_of_a_scope_is_in_one_slot_under_the_prefix(redis_store, redis_url, prefix, clock):
    store = redis_store(redis_url, prefix)
    local = batches(store, clock)
    with in_scope("run-a"):
        batch_id = local.create(requests(2), {}).body["id"]
    run(processor(store, clock))
    with in_scope("run-a"):
        pages = store.result_pages(store.get(batch_id), page_size=1)
        next(pages)  # a download under way: its lease is in Redis
        keys = {key.decode() for key in store.client.scan_iter(f"{prefix}:*")}
        pages.close()
    scoped = {key for key in keys if key.startswith(f"{prefix}:{{scope=run-a}}:")}
    assert keys - scoped == {store.counter, store.downloads_key}  # the running list is empty again
    assert len({key_slot(key.encode()) for key in scoped}) == 1
    assert store.batch_keys("run-a", batch_id).downloads in scoped


def test_a_batch_id_is_never_a_way_into_another_key(redis_store, redis_url, prefix, clock):
    store = redis_store(redis_url, prefix)
    local = batches(store, clock)
    batch_id = local.create(requests(1), {}).body["id"]
    for crafted in (f"{batch_id}:ids", "x}:batch", "{scope=other}", ""):
        assert store.get(crafted) is None and store.request_cancel(crafted, clock.now) is None
        assert store.delete(crafted, clock.now) is None


def test_an_unreachable_redis_is_store_unavailable(redis_store, clock):
    store = redis_store(f"redis://127.0.0.1:{free_port()}/0", "nowhere")
    local = batches(store, clock)
    for call in (lambda: local.retrieve("msgbatch_x", {}), store.running, lambda: store.sweep_downloads(clock.now)):
        with pytest.raises(StoreUnavailable) as error:
            call()
        assert error.value.status == 503


@pytest.mark.slow  # 1.5 s
def test_a_100000_request_batch_is_created_and_read_back_in_pages(redis_store, redis_url, prefix, clock):
    store = redis_store(redis_url, prefix)
    local = batches(store, clock, min_seconds=3600)
    many = [{"custom_id": f"r{n}", "params": {"model": "m", "max_tokens": 1, "messages": []}} for n in range(100_000)]
    started = time.monotonic()
    batch_id = local.create(many, {}).body["id"]
    created = time.monotonic() - started
    assert created < 5, f"creating took {created:.1f} s"
    worker = processor(store, clock)
    run(worker)  # the pace's first request answered (errored: no messages)
    local.cancel(batch_id, {})
    run(worker)  # the rest canceled in one step
    counts = local.retrieve(batch_id, {}).body["request_counts"]
    assert counts["errored"] == 1 and counts["canceled"] == 99_999
    chunks = list(local.results(batch_id, {}).chunks)
    assert len(chunks) == 100_000 // RESULTS_PER_CHUNK
    assert chunks[-1].endswith(b'{"custom_id":"r99999","result":{"type":"canceled"}}\n')
