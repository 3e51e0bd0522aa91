"""Rate limits on a real server: the headers on every kind of answer, the 429 in the API's words, the official SDK
waiting as retry-after says, and buckets shared by two workers and by two hosts on one Redis.

Each test calls with API keys of its own, so its buckets are its own (the limits are per key by default);
nothing here asserts a time but as a lower bound.
"""

from __future__ import annotations

import concurrent.futures
import re
import secrets
import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest
import yaml

from app.launcher.server_process import ServerProcess

from builders import message_body

MODEL = "claude-sonnet-4-5"
#: Every key's limits, and the few keys with limits of their own.
LIMITS = {
    "rpm": 600,
    "itpm": 100_000,
    "otpm": 20_000,
    "count_tokens_rpm": 300,
    "batches_rpm": 300,
    "keys": {"three-a-minute": {"rpm": 3}, "twelve-a-minute": {"rpm": 12}, "ten-a-minute": {"rpm": 10}},
}
RATELIMIT_HEADERS = [
    f"anthropic-ratelimit-{kind}-{field}"
    for kind in ("requests", "input-tokens", "output-tokens", "tokens")
    for field in ("limit", "remaining", "reset")
]
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    """Two workers sharing the limits through the state file."""
    config = tmp_path_factory.mktemp("rate-limits") / "settings.yaml"
    config.write_text(yaml.safe_dump({"rate_limits": LIMITS}))
    with ServerProcess({"UNDERSTUDY_CONFIG": str(config), "UNDERSTUDY_VALIDATE_RESPONSES": "true"}, workers=2) as up:
        yield up


def sdk(server: ServerProcess, key: str | None = None, retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=server.base_url, api_key=key or f"key-{secrets.token_hex(6)}", max_retries=retries, timeout=30
    )


def raw_post(server: ServerProcess, key: str, path: str = "/v1/messages", body: dict | None = None) -> httpx.Response:
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return httpx.post(server.base_url + path, json=body or message_body(), headers=headers, timeout=30)


def test_every_answer_carries_the_rate_limit_headers(server):
    with sdk(server) as client:
        created = client.messages.with_raw_response.create(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "Hello"}]
        )
        with client.messages.with_streaming_response.create(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "Hello"}], stream=True
        ) as streamed:
            assert "event: message_stop" in streamed.text()
        counted = client.messages.with_raw_response.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "Hello"}]
        )
        batch = client.messages.batches.with_raw_response.create(
            requests=[{"custom_id": "one", "params": {"model": MODEL, "max_tokens": 10, "messages": [
                {"role": "user", "content": "Hi"}]}}]
        )  # fmt: skip
        listed = client.messages.batches.with_raw_response.list()
    for answer in (created, streamed):
        assert all(name in answer.headers for name in RATELIMIT_HEADERS), answer.headers
        assert answer.headers["anthropic-ratelimit-requests-limit"] == "600"
        assert answer.headers["anthropic-ratelimit-tokens-limit"] == "120000"
        assert answer.headers["anthropic-ratelimit-output-tokens-remaining"] == "20000"  # rounded to thousands
        assert all(re.fullmatch(RFC3339, answer.headers[name]) for name in RATELIMIT_HEADERS if name.endswith("-reset"))
    assert created.headers["anthropic-ratelimit-requests-remaining"] == "599"
    assert streamed.headers["anthropic-ratelimit-requests-remaining"] in ("598", "599")  # refilled meanwhile
    assert counted.headers["anthropic-ratelimit-requests-limit"] == "300"
    for answer in (batch, listed):
        assert answer.headers["anthropic-ratelimit-requests-limit"] == "300"
    assert listed.headers["anthropic-ratelimit-requests-remaining"] == "298"
    assert "anthropic-ratelimit-input-tokens-limit" not in counted.headers  # count_tokens: a request limit only


def test_going_over_is_a_429_in_the_apis_words_with_retry_after(server):
    answers = [raw_post(server, "three-a-minute") for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert error["message"].startswith(
        "This request would exceed your organization's rate limit of 3 requests per minute (org: "
    )
    assert f"model: {MODEL}). For details, refer to: https://docs.claude.com/en/api/rate-limits." in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
    with sdk(server, "three-a-minute") as client, pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.status_code == 429 and raised.value.body["error"]["type"] == "rate_limit_error"


def test_the_official_sdk_waits_as_retry_after_says_and_then_succeeds(server):
    """12 a minute: one more every 5 s. Drained, the next call is refused with retry-after; the SDK, retries on,
    sleeps that long and its retry is admitted."""
    for _ in range(50):  # bounded: 12 are admitted, then one is refused
        refused = raw_post(server, "twelve-a-minute")
        if refused.status_code == 429:
            break
    assert refused.status_code == 429
    waited = int(refused.headers["retry-after"])
    started = time.monotonic()
    with sdk(server, "twelve-a-minute", retries=3) as client:
        answer = client.messages.with_raw_response.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    assert answer.http_response.status_code == 200
    assert answer.retries_taken >= 1
    assert time.monotonic() - started >= min(waited, 5) - 1.5  # it slept (at least most of) what was asked


def test_two_workers_share_one_set_of_buckets(server):
    """20 calls on fresh connections, 8 at a time, so both workers take some: exactly the bucket's 10 are admitted
    (one more if a refill lands during the burst: 10 a minute is one every 6 s)."""

    def call(_: int) -> int:
        return raw_post(server, "ten-a-minute").status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(20)))
    assert statuses.count(200) in (10, 11) and statuses.count(429) == 20 - statuses.count(200)


def test_two_hosts_on_one_redis_share_one_set_of_buckets(redis_server):
    env = {
        "UNDERSTUDY_STATE_URL": redis_server.url,
        "UNDERSTUDY_STATE_PREFIX": f"rate-limits-{secrets.token_hex(4)}",
        "UNDERSTUDY_RATE_LIMITS": "rpm=8",
    }
    with ServerProcess(env) as first, ServerProcess(env) as second:
        statuses = [raw_post(host, "one-key").status_code for _ in range(8) for host in (first, second)]
    assert statuses.count(200) in (8, 9) and statuses[:8] == [200] * 8


def test_a_malformed_setting_stops_start_up_with_one_line_naming_it():
    server = ServerProcess({"UNDERSTUDY_RATE_LIMITS": "rpm=lots"})
    with pytest.raises(RuntimeError):
        server.start(timeout=20)
    assert (
        "understudy: configuration error: UNDERSTUDY_RATE_LIMITS: rpm must be a positive whole number of requests "
        "or tokens per minute (got 'rpm=lots')"
    ) in server.output
