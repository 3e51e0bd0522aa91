"""Rate limits: the setting's parser, the buckets' arithmetic (SQLite's and Redis's alike), the headers' formats,
and the limiter admitting, refusing and settling requests in-process."""

from __future__ import annotations

import contextlib
import itertools
import math
import secrets
import time
from typing import Any

import pytest
import redis

from app import create_app
from app.api import BACKEND_KEY
from app.ratelimits import leases as leases_module
from app.ratelimits import limiter as limiter_module
from app.ratelimits.config import Limits, RateLimits, key_hash, parse_rate_limits
from app.ratelimits.guards import LimitedBackend
from app.ratelimits.headers import Reading, ratelimit_headers, refusal, retry_after, rfc3339, thousands
from app.ratelimits.limiter import RateLimited, RateLimiter
from app.settings import ConfigError, load_settings
from backends.catalogue import DEFAULT_FILE, ModelCatalogue
from backends.exchange import MessageRequest
from backends.state import Bucket, BucketLevels, in_scope
from backends.state.buckets import take, take_in_redis

from builders import message_body, state_store

CATALOGUE = ModelCatalogue.from_file(DEFAULT_FILE)


# ------------------------------------------------------------------------------------------------ the setting
def test_the_environment_line():
    rules = parse_rate_limits(" rpm=50, itpm=30000 ,otpm=8_000,count_tokens_rpm=100,batches_rpm=50,per=scope")
    assert rules == RateLimits(Limits(50, 30000, 8000, 100, 50), per="scope")
    assert parse_rate_limits("rpm=5").per == "key"
    assert parse_rate_limits("") is None and parse_rate_limits("  ") is None


def test_the_settings_file_form_keeps_keys_only_hashed(tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text(
        "rate_limits:\n"
        "  rpm: 50\n"
        "  models: {haiku: {itpm: 50000}, claude-3-haiku-20240307: {count_cache_reads: true}}\n"
        "  scopes: {nightly: rpm=1000}\n"
        "  keys: {sk-team-a: {rpm: 7}}\n"
        "  total: {otpm: 400000}\n"
    )
    rules = load_settings({"UNDERSTUDY_CONFIG": str(config)}).rate_limits
    assert rules.default == Limits(rpm=50) and rules.total == Limits(otpm=400000)
    assert rules.models == {"haiku": Limits(itpm=50000), "claude-3-haiku-20240307": Limits(count_cache_reads=True)}
    assert rules.scopes == {"nightly": Limits(rpm=1000)}
    assert rules.keys == {key_hash("sk-team-a"): Limits(rpm=7)}
    assert "sk-team-a" not in repr(rules)
    found = rules.limits(model="claude-3-haiku-20240307", model_class="haiku", scope="nightly", hashed_key="x")
    assert found == Limits(rpm=1000, itpm=50000, count_cache_reads=True)
    assert rules.limits(model=None, model_class=None, scope="default", hashed_key=key_hash("sk-team-a")).rpm == 7


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("rpm", "must be NAME=NUMBER pairs"),
        ("rmp=50", "unknown limit 'rmp' (known: rpm, itpm, otpm, count_tokens_rpm, batches_rpm)"),
        ("rpm=0", "rpm must be a positive whole number"),
        ("rpm=fifty", "rpm must be a positive whole number"),
        ("rpm=1.5", "rpm must be a positive whole number"),
        ("rpm=5,per=team", "per must be one of key, scope, server"),
        ("per=key", "sets no limit"),
    ],
)
def test_a_malformed_line_stops_start_up_with_one_line_naming_it(value, says):
    with pytest.raises(ConfigError) as error:
        load_settings({"UNDERSTUDY_RATE_LIMITS": value})
    message = str(error.value)
    assert message.startswith("UNDERSTUDY_RATE_LIMITS: ") and says in message and "\n" not in message


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"rpm": 5, "teams": {}}, "unknown entry 'teams'"),
        ({"rpm": True}, "rpm must be a positive whole number"),
        ({"scopes": {"no/pe": {"rpm": 5}}}, "scopes: 'no/pe' is not a scope name"),
        ({"models": {"haiku": {"count_tokens_rpm": 5}}}, "models: haiku: unknown limit 'count_tokens_rpm'"),
        ({"models": {"haiku": {"count_cache_reads": "maybe"}}}, "count_cache_reads must be true or false"),
        ({"keys": ["k"]}, "keys must be a mapping"),
        (["rpm"], "must be a line such as rpm=50"),
    ],
)
def test_a_malformed_mapping_is_named(value, says):
    with pytest.raises(ValueError) as error:
        parse_rate_limits(value)
    assert says in str(error.value)


def test_a_models_entry_names_a_class_or_a_model_of_the_catalogue():
    with pytest.raises(ConfigError) as error:
        create_app({"rate_limits": {"rpm": 5, "models": {"sonet": {"rpm": 1}}}})
    assert str(error.value).startswith("UNDERSTUDY_RATE_LIMITS: models: 'sonet' is neither a model class (")
    limiter = RateLimiter(parse_rate_limits({"models": {"claude-haiku-4-5": {"rpm": 1}}}), None, CATALOGUE)
    assert set(limiter.rules.models) == {"claude-haiku-4-5-20251001"}  # an alias, resolved


def test_without_limits_the_backend_is_served_as_it_is():
    assert not isinstance(create_app().app.extensions[BACKEND_KEY], LimitedBackend)


# ------------------------------------------------------------------------------------------------ the arithmetic
@pytest.fixture
def store(tmp_path):
    opened = state_store(tmp_path / "state.db")
    yield opened
    opened.close()


def test_a_bucket_refills_continuously_up_to_its_capacity(store):
    connection = store._connection()
    bucket = Bucket("requests", capacity=60, per_second=1, cost=50)
    assert take(connection, "s", [bucket], 1000.0, False) == BucketLevels(True, (10.0,), 1000.0)
    assert take(connection, "s", [bucket], 1010.0, False) == BucketLevels(False, (20.0,), 1010.0)
    assert take(connection, "s", [bucket], 1040.0, False) == BucketLevels(True, (0.0,), 1040.0)
    assert take(connection, "s", [Bucket("requests", 60, 1, 0)], 9999.0, False).levels == (60.0,)  # never above


def test_a_take_is_all_or_none_and_a_forced_one_always_applies(store):
    connection = store._connection()
    small, large = Bucket("requests", 10, 1, 1), Bucket("output_tokens", 100, 1, 101)
    assert take(connection, "s", [small, large], 0.0, False) == BucketLevels(False, (10.0, 100.0), 0.0)
    assert take(connection, "s", [small, large], 0.0, True).levels == (9.0, -1.0)  # a correction may overdraw
    refund = Bucket("output_tokens", 100, 1, -500)
    assert take(connection, "s", [refund], 0.0, True).levels == (100.0,)  # a refund stops at the capacity
    assert take(connection, "other", [large], 0.0, False).levels == (100.0,)  # subjects are apart


@pytest.fixture
def redis_client(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def test_sqlite_and_redis_do_the_same_arithmetic(tmp_path, redis_client):
    """The same takes on both stores give the same levels, but for what each refilled in the time it took."""
    store = state_store(tmp_path / "state.db")
    key = f"rl-{secrets.token_hex(4)}:{{limits=s}}:buckets"
    requests, tokens = Bucket("requests", 50, 50 / 60, 1), Bucket("input_tokens", 30000, 500, 0)
    steps: list[tuple[list[Bucket], bool]] = [
        ([requests, Bucket("input_tokens", 30000, 500, 12000)], False),
        ([requests, Bucket("input_tokens", 30000, 500, 12000)], False),
        ([requests, Bucket("input_tokens", 30000, 500, 12000)], False),  # refused: 6,000 left
        ([Bucket("input_tokens", 30000, 500, -4000)], True),  # a correction: 4,000 given back
        ([requests, Bucket("input_tokens", 30000, 500, 9000)], False),
        ([requests, tokens], False),
    ]
    started = time.monotonic()
    for buckets, force in steps:
        in_sqlite = store.take_tokens("s", buckets, force=force)
        in_redis = take_in_redis(redis_client, key, buckets, force)
        slack = (time.monotonic() - started) * 500 + 1e-6  # what the fastest bucket refilled meanwhile
        assert in_sqlite.taken == in_redis.taken
        assert in_sqlite.levels == pytest.approx(in_redis.levels, abs=slack)
        assert abs(in_redis.now - time.time()) < 5  # Redis's clock, in Unix seconds
    assert [step.taken for step in [store.take_tokens("s", [requests])]] == [True]


def test_redis_keeps_one_hash_per_subject_that_expires_when_full(redis_client):
    key = f"rl-{secrets.token_hex(4)}:{{limits=s}}:buckets"
    take_in_redis(redis_client, key, [Bucket("requests", 60, 1, 30)], False)
    assert redis_client.type(key) == b"hash"
    assert redis_client.hkeys(key) == [b"requests"]
    assert 30_000 < redis_client.pttl(key) <= 31_000  # full again in 30 s: then an absent key says as much
    redis_client.script_flush()  # a Redis that has not seen the script runs it all the same
    assert take_in_redis(redis_client, key, [Bucket("requests", 60, 1, 0)], False).levels[0] == pytest.approx(30, abs=1)


# ------------------------------------------------------------------------------------------------ the formats
def test_times_are_rfc3339_to_the_second_rounded_up():
    assert rfc3339(1_800_000_000.0) == "2027-01-15T08:00:00Z"
    assert rfc3339(1_800_000_000.2) == "2027-01-15T08:00:01Z"


def test_token_counts_are_rounded_to_the_nearest_thousand():
    assert [thousands(n, 30000) for n in (0, 499, 500, 29_499, 29_999, 30_000)] == [0, 0, 1000, 29000, 30000, 30000]
    assert thousands(700, 800) == 800  # never above the limit


def test_headers_name_each_limit_and_the_tokens_total():
    now = 1_800_000_000.0
    readings = [
        Reading(Bucket("requests", 50, 50 / 60, 1), 20.4, now),
        Reading(Bucket("input_tokens", 30000, 500, 0), 15_600, now),
        Reading(Bucket("output_tokens", 8000, 8000 / 60, 0), 8000, now),
    ]
    assert ratelimit_headers(readings) == {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "20",
        "anthropic-ratelimit-requests-reset": rfc3339(now + (50 - 20.4) / (50 / 60)),
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "16000",
        "anthropic-ratelimit-input-tokens-reset": rfc3339(now + 14_400 / 500),
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "8000",
        "anthropic-ratelimit-output-tokens-reset": rfc3339(now),
        "anthropic-ratelimit-tokens-limit": "38000",
        "anthropic-ratelimit-tokens-remaining": "24000",
        "anthropic-ratelimit-tokens-reset": rfc3339(now + 14_400 / 500),
    }


def test_of_two_sets_of_buckets_the_headers_show_the_one_with_less_left():
    mine, total = Bucket("requests", 50, 1, 1), Bucket("requests", 4000, 60, 1)
    headers = ratelimit_headers([Reading(mine, 40, 0.0), Reading(total, 12, 0.0)])
    assert headers["anthropic-ratelimit-requests-limit"] == "4000"
    assert headers["anthropic-ratelimit-requests-remaining"] == "12"


def test_retry_after_is_the_wait_for_every_refused_bucket_in_whole_seconds():
    requests, output = Bucket("requests", 60, 1, 1), Bucket("output_tokens", 8000, 8000 / 60, 4000)
    assert retry_after([Reading(requests, 0.5, 0.0), Reading(output, 8000, 0.0)]) == 1
    assert retry_after([Reading(requests, 5, 0.0), Reading(output, 1000, 0.0)]) == math.ceil(3000 / (8000 / 60))
    too_big = Bucket("output_tokens", 8000, 8000 / 60, 64000)  # never fits: until the bucket is full
    assert retry_after([Reading(too_big, 0, 0.0)]) == 60


def test_the_429_is_worded_as_the_api_words_it():
    message = refusal(
        [Reading(Bucket("requests", 50, 1, 1), 10, 0.0), Reading(Bucket("input_tokens", 30000, 500, 31000), 0, 0.0)],
        who="default/key.abc",
        model="claude-sonnet-4-6",
    )
    assert message.startswith(
        "This request would exceed your organization's rate limit of 30,000 input tokens per minute"
    )
    assert "(org: " in message and ", model: claude-sonnet-4-6). For details, refer to: " in message
    assert message.endswith("to discuss your options for a rate limit increase.")


# ------------------------------------------------------------------------------------------------ the limiter
@pytest.fixture(autouse=True)
def corrections_at_once(monkeypatch):
    """Corrections written as soon as they come (a server gathers them for 50 ms), so that levels read exactly."""
    monkeypatch.setattr(limiter_module, "COALESCE_SECONDS", 0)


def limiter(store, rules: Any) -> RateLimiter:
    return RateLimiter(parse_rate_limits(rules), store, CATALOGUE)


def level(store, subject: str, name: str, capacity: int) -> float:
    """A bucket's level now (a take of nothing)."""
    return store.take_tokens(subject, [Bucket(name, capacity, capacity / 60, 0)]).levels[0]


def assert_level(store, subject: str, name: str, capacity: int, expected: float, began: float) -> None:
    """The bucket's level is `expected`, give or take a token, plus what it has refilled since the test `began`
    (time.monotonic()): however slowly a loaded machine runs the test."""
    found = level(store, subject, name, capacity)
    refilled = capacity / 60 * (time.monotonic() - began)
    assert expected - 1 <= found <= min(capacity, expected + refilled + 1), (found, expected, refilled)


KEY = {"x-api-key": "sk-secret-key"}
MINE = f"default/key.{key_hash('sk-secret-key')[:32]}/m.sonnet"


def test_output_is_estimated_from_max_tokens_and_corrected_at_the_end(store):
    began = time.monotonic()
    limits = limiter(store, "otpm=8000")
    admission = limits.admit_message(message_body(max_tokens=5000), KEY)
    assert_level(store, MINE, "output_tokens", 8000, 3000, began)
    with pytest.raises(RateLimited) as refused:
        limits.admit_message(message_body(max_tokens=5000), KEY)
    assert refused.value.status == 429 and refused.value.error_type == "rate_limit_error"
    assert refused.value.headers["retry-after"] == str(math.ceil(2000 / (8000 / 60)))
    assert "8,000 output tokens per minute" in refused.value.message
    limits.settle(admission, {"input_tokens": 10, "output_tokens": 40})
    limits.flush()
    assert_level(store, MINE, "output_tokens", 8000, 7960, began)


def test_cache_reads_do_not_count_towards_itpm_unless_configured(store):
    document = {"type": "text", "text": "word " * 3000, "cache_control": {"type": "ephemeral"}}
    body = message_body(system=[document])
    began = time.monotonic()
    limits = limiter(store, {"itpm": 30000, "models": {"claude-3-haiku-20240307": {"count_cache_reads": True}}})
    admission = limits.admit_message(body, KEY)
    assert admission.input_estimate < 100  # the cacheable prefix is taken to be read
    limits.settle(admission, {"input_tokens": 4, "cache_creation_input_tokens": 3000, "output_tokens": 5})
    limits.flush()
    assert_level(store, MINE, "input_tokens", 30000, 30000 - 3004, began)  # a write counts
    again = limits.admit_message(body, KEY)
    limits.settle(again, {"input_tokens": 4, "cache_read_input_tokens": 3000, "output_tokens": 5})
    limits.flush()
    assert_level(store, MINE, "input_tokens", 30000, 30000 - 3008, began)  # a read does not
    old = limits.admit_message({**body, "model": "claude-3-haiku-20240307"}, KEY)
    assert old.count_cache_reads and old.input_estimate > 3000


def test_every_key_has_its_own_buckets_and_the_total_is_shared(store):
    began = time.monotonic()
    limits = limiter(store, {"rpm": 2, "total": {"rpm": 3}})
    for key in ("a", "a", "b"):
        assert limits.admit_message(message_body(), {"x-api-key": key}) is not None
    with pytest.raises(RateLimited):
        limits.admit_message(message_body(), {"x-api-key": "a"})  # a's own two are gone
    with pytest.raises(RateLimited) as refused:
        limits.admit_message(message_body(), {"authorization": "Bearer b"})  # b has one left; the total none
    assert refused.value.headers["anthropic-ratelimit-requests-limit"] == "3"
    b = f"default/key.{key_hash('b')[:32]}/m.sonnet"
    assert_level(store, b, "requests", 2, 1, began)  # b's take was given back


def test_model_classes_and_scopes_have_buckets_of_their_own(store):
    limits = limiter(store, {"rpm": 1, "scopes": {"wide": {"rpm": 2}}})
    limits.admit_message(message_body(model="claude-sonnet-4-5"), KEY)
    limits.admit_message(message_body(model="claude-opus-4-6"), KEY)  # another class
    with pytest.raises(RateLimited):
        limits.admit_message(message_body(model="claude-sonnet-4-6"), KEY)  # the same class: Sonnet
    with in_scope("wide"):
        for _ in range(2):
            limits.admit_message(message_body(), KEY)


def test_count_tokens_and_batches_have_request_limits_of_their_own(store):
    limits = limiter(store, "rpm=1,count_tokens_rpm=1,batches_rpm=1")
    assert limits.admit_message(message_body(), KEY) is not None
    assert limits.admit_count_tokens(KEY).headers["anthropic-ratelimit-requests-limit"] == "1"
    assert limits.admit_batches(KEY) is not None
    for admit in (limits.admit_count_tokens, limits.admit_batches):
        with pytest.raises(RateLimited):
            admit(KEY)
    assert limiter(store, "rpm=1").admit_count_tokens(KEY) is None  # not configured: not limited


def test_keys_never_reach_redis_in_the_clear(redis_client):
    class RedisBuckets:
        """The part of a store the limiter uses, keyed as the Redis store keys buckets."""

        prefix = f"rl-{secrets.token_hex(4)}"

        def take_tokens(self, subject, buckets, *, force=False):
            return take_in_redis(redis_client, f"{self.prefix}:{{limits={subject}}}:buckets", buckets, force)

    limits = limiter(RedisBuckets(), "rpm=5,itpm=30000,otpm=8000")
    admission = limits.admit_message(message_body(), KEY)
    limits.settle(admission, {"input_tokens": 3, "output_tokens": 3})
    limits.flush()
    keys = redis_client.keys(f"{RedisBuckets.prefix}:*")
    assert keys and all(b"sk-secret-key" not in key for key in keys)
    assert all(b"sk-secret-key" not in value for key in keys for value in redis_client.hgetall(key).values())


def test_in_process_every_answer_carries_the_headers_and_the_sdk_words_reach_the_client():
    app = create_app({"rate_limits": "rpm=2,count_tokens_rpm=5,batches_rpm=5", "api_keys": "k"})
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    with app.test_client() as client:
        whole = client.post("/v1/messages", json=message_body(), headers=headers)
        streamed = client.post("/v1/messages", json=message_body(stream=True), headers=headers)
        refused = client.post("/v1/messages", json=message_body(), headers=headers)
        counted = client.post(
            "/v1/messages/count_tokens",
            json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]},
            headers=headers,
        )
        listed = client.get("/v1/messages/batches", headers=headers)
    assert [whole.status_code, streamed.status_code, refused.status_code] == [200, 200, 429]
    assert whole.headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert streamed.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert refused.json()["error"]["type"] == "rate_limit_error" and int(refused.headers["retry-after"]) >= 1
    assert counted.headers["anthropic-ratelimit-requests-limit"] == "5"
    assert listed.headers["anthropic-ratelimit-requests-limit"] == "5"


def test_corrections_arriving_together_are_written_together(store, monkeypatch):
    began = time.monotonic()
    monkeypatch.setattr(limiter_module, "COALESCE_SECONDS", 0.2)
    writes = []
    take_tokens = store.take_tokens

    def counted(subject, buckets, *, force=False):
        if force:
            writes.append({bucket.name: bucket.cost for bucket in buckets})
        return take_tokens(subject, buckets, force=force)

    monkeypatch.setattr(store, "take_tokens", counted)
    limits = limiter(store, "otpm=8000")
    admissions = [limits.admit_message(message_body(max_tokens=1000), KEY) for _ in range(3)]
    for admission in admissions:
        limits.settle(admission, {"input_tokens": 1, "output_tokens": 10})
    limits.flush()
    # Written together (unless the thread's look fell between two settles, on a slow machine), their sum whole.
    assert len(writes) <= 2 and sum(write["output_tokens"] for write in writes) == -2970
    assert_level(store, MINE, "output_tokens", 8000, 7970, began)


def test_a_stream_is_settled_when_it_ends_and_when_its_client_leaves(store):
    began = time.monotonic()
    limits = limiter(store, "otpm=8000")
    backend = LimitedBackend(create_app().app.extensions[BACKEND_KEY], limits)
    stream = backend.stream_message(MessageRequest(message_body(max_tokens=5000, stream=True), KEY))
    assert stream.headers["anthropic-ratelimit-output-tokens-remaining"] == "3000"
    events = list(stream.events)
    limits.flush()
    produced = events[-2]["usage"]["output_tokens"]
    assert_level(store, MINE, "output_tokens", 8000, 8000 - produced, began)
    left = backend.stream_message(MessageRequest(message_body(max_tokens=5000, stream=True), KEY))
    next(left.events)
    left.close()  # the client went away after the first event
    limits.flush()
    assert level(store, MINE, "output_tokens", 8000) > 7900  # what it had not produced is given back


# ------------------------------------------------------------------------------------------------ leases
class CountedTakes:
    """A store whose takes are counted: those on a request's path (not forced) and the corrections (forced)."""

    def __init__(self, store) -> None:
        self.store = store
        self.plain = 0
        self.forced = 0

    def take_tokens(self, subject, buckets, *, force=False):
        if force:
            self.forced += 1
        else:
            self.plain += 1
        return self.store.take_tokens(subject, buckets, force=force)


def test_far_from_the_limit_a_process_admits_from_a_lease_without_a_store_round_trip(store, monkeypatch):
    monkeypatch.setattr(leases_module, "LEASE_SECONDS", 60)  # however slowly a loaded machine runs the test
    began = time.monotonic()
    counted = CountedTakes(store)
    limits = RateLimiter(parse_rate_limits("rpm=6000"), counted, CATALOGUE)
    admissions = [limits.admit_message(message_body(), KEY) for _ in range(50)]
    # The first take finds the bucket; the next ones take leases of 4, 10, 22 and 46 requests beside their own.
    assert counted.plain == 5
    remaining = [int(admission.headers["anthropic-ratelimit-requests-remaining"]) for admission in admissions]
    refill = 6000 / 60 * (time.monotonic() - began)  # however slowly a loaded machine runs the test
    assert all(later <= earlier + refill for earlier, later in itertools.pairwise(remaining))
    assert 5950 - 2 <= remaining[-1] <= 5950 + 2 + refill
    assert_level(store, MINE, "requests", 6000, 6000 - 50 - (46 - 9), began)  # the lease is taken in the store
    limits.flush()  # and what is left of it goes back
    assert_level(store, MINE, "requests", 6000, 6000 - 50, began)


def test_a_lease_runs_out_in_a_tenth_of_a_second_and_its_rest_goes_back(store, monkeypatch):
    began = time.monotonic()
    monkeypatch.setattr(limiter_module, "COALESCE_SECONDS", 0.02)
    counted = CountedTakes(store)
    limits = RateLimiter(parse_rate_limits("rpm=6000"), counted, CATALOGUE)
    for _ in range(3):
        limits.admit_message(message_body(), KEY)
    assert counted.plain == 2 and counted.forced == 0  # the second took a lease, which paid for the third
    deadline = time.monotonic() + 5
    while counted.forced == 0 and time.monotonic() < deadline:
        time.sleep(0.02)  # the corrections thread gives the lease back once it is old
    limits.admit_message(message_body(), KEY)
    assert_level(store, MINE, "requests", 6000, 6000 - 4, began)
    assert counted.plain == 3  # the lease ran out: the next request went to the store


@pytest.mark.parametrize(
    ("rules", "body"),
    [
        ("rpm=40", message_body()),  # a lease of 2 requests would pay for fewer than 4
        ("otpm=8000", message_body(max_tokens=1000)),  # a lease of 400 output tokens pays for no request
    ],
)
def test_limits_small_beside_their_requests_take_no_lease(store, rules, body):
    counted = CountedTakes(store)
    limits = RateLimiter(parse_rate_limits(rules), counted, CATALOGUE)
    for _ in range(5):
        limits.admit_message(body, KEY)
    assert counted.plain == 5


def test_near_the_limit_every_take_is_the_stores_and_two_processes_never_admit_more_than_the_bucket_holds(store):
    """Two limiters on one store, as two workers: from a full bucket of 200, what both admit together is the bucket
    and its refill, however their leases fall; and once under half full, neither takes a lease (of at most 10)."""
    began = time.monotonic()
    workers = [CountedTakes(store), CountedTakes(store)]
    limiters = [RateLimiter(parse_rate_limits("rpm=200"), worker, CATALOGUE) for worker in workers]
    admitted = 0
    for turn in range(400):
        try:
            limiters[turn % 2].admit_message(message_body(), KEY)
            admitted += 1
        except RateLimited:
            pass
    refill = 200 / 60 * (time.monotonic() - began)
    assert 200 - 2 * 10 <= admitted <= 200 + refill + 1  # at most two leases of 10 left unspent
    plain_before = [worker.plain for worker in workers]
    for turn in range(10):
        with contextlib.suppress(RateLimited):  # refused, or let through by what refilled meanwhile
            limiters[turn % 2].admit_message(message_body(), KEY)
    assert [worker.plain for worker in workers] == [count + 5 for count in plain_before]  # each one the store's
