"""Message Batches against real gunicorn servers, driven by the official SDK and raw HTTP.

Batches are answered in the background by every worker (backends/batches/):
created, polled until they end, their results read back as the SDK reads
them, on the echo and the scripted backend and through the proxy; canceled
mid-way and expired (with a slow pace); and a worker killed with SIGKILL
mid-batch, after which every request still has exactly one result. Bad
input gets the real API's 4xx, and nothing accepted before it is lost.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from app.launcher.server_process import ServerProcess

from answers import Answer
from builders import API_KEY, PATIENCE_SECONDS, ended, gateway_env, message_body, upstream_env

ADMIN_KEY = "admin-key-for-batch-tests"
MODEL = "claude-sonnet-4-5"
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}


def params(text: str, **fields: Any) -> dict[str, Any]:
    return message_body(text, **fields)


def batch_requests(count: int, prefix: str = "request") -> list[dict[str, Any]]:
    return [{"custom_id": f"{prefix}-{n}", "params": params(f"Hello {n}")} for n in range(count)]


def by_custom_id(results: Iterator[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in results:
        assert line.custom_id not in found, f"{line.custom_id} has two results"
        found[line.custom_id] = line.result
    return found


def error_message(answer: Answer, status: int, error_type: str) -> str:
    """`answer` is the API's error object for `status`: its message."""
    assert answer.status == status, answer.body[:500]
    body = answer.json()
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert body["error"]["type"] == error_type and body["request_id"] == answer.headers["request-id"]
    return str(body["error"]["message"])


def call(server: ServerProcess, method: str, path: str, body: Any = None, headers: dict | None = None) -> Answer:
    payload = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, path, body=payload, headers=HEADERS if headers is None else headers)
        return Answer(connection.getresponse())
    finally:
        connection.close()


def journal(server: ServerProcess, **filters: Any) -> list[dict[str, Any]]:
    """Every journal entry matching `filters`, oldest first."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        query = "&".join(f"{name}={value}" for name, value in {"after": after, "limit": 1000, **filters}.items())
        page = call(server, "GET", f"/_understudy/requests?{query}", headers={"x-understudy-admin-key": ADMIN_KEY})
        assert page.status == 200, page.body
        data = page.json()["data"]
        if not data:
            return entries
        entries += data
        after = data[-1]["id"]


def sdk_for(server: ServerProcess, key: str = API_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)


def server_with(**env: str) -> ServerProcess:
    return ServerProcess({"UNDERSTUDY_API_KEYS": API_KEY, "UNDERSTUDY_VALIDATE_RESPONSES": "true", **env}, workers=2)


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerProcess]:
    """Echo, journaled, with batches that take at least a minute: answered a request every few seconds."""
    with server_with(
        UNDERSTUDY_BATCH_MIN_SECONDS="60", UNDERSTUDY_JOURNAL="true", UNDERSTUDY_ADMIN_KEY=ADMIN_KEY
    ) as running:
        yield running


# ---------------------------------------------------------------------------------------------- echo


def test_a_batch_is_answered_by_the_echo_backend(server, sdk):
    requests = [
        {"custom_id": "first", "params": params("Hello, batch")},
        {"custom_id": "short", "params": params("one two three four", max_tokens=2)},
        {"custom_id": "third", "params": params("Goodbye")},
    ]
    batch = sdk.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress" and batch.results_url is None and batch.ended_at is None
    assert batch.request_counts.processing == 3 and batch.request_counts.succeeded == 0
    assert (batch.expires_at - batch.created_at).total_seconds() == 24 * 3600
    assert batch.cancel_initiated_at is None and batch.archived_at is None

    done = ended(sdk, batch.id)
    counts = done.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired) == (0, 3, 0, 0, 0)
    assert done.ended_at >= done.created_at
    assert done.results_url == f"{server.base_url}/v1/messages/batches/{batch.id}/results"  # this server, always

    lines = list(sdk.messages.batches.results(batch.id))
    assert [line.custom_id for line in lines] == ["first", "short", "third"]  # the order of the requests
    results = {line.custom_id: line.result for line in lines}
    assert all(result.type == "succeeded" for result in results.values())
    assert results["first"].message.content[0].text == "Hello, batch"
    assert (
        results["short"].message.content[0].text == "one two" and results["short"].message.stop_reason == "max_tokens"
    )
    assert {result.message.usage.service_tier for result in results.values()} == {"batch"}


def test_the_results_file_as_it_is_sent(server, sdk):
    batch = ended(sdk, sdk.messages.batches.create(requests=batch_requests(3)).id)
    answer = call(
        server, "GET", f"/v1/messages/batches/{batch.id}/results", headers={**HEADERS, "accept": "application/binary"}
    )
    assert answer.status == 200 and answer.headers["content-type"] == "application/x-jsonl"
    assert answer.headers["content-disposition"] == f"attachment; filename*=utf-8''{batch.id}_results.jsonl"
    assert answer.body.endswith(b"\n") and b"\n\n" not in answer.body  # no blank line: the SDK parses every line
    assert [json.loads(line)["custom_id"] for line in answer.body.splitlines()] == [
        "request-0",
        "request-1",
        "request-2",
    ]


def test_head_of_a_results_file_answers_without_making_it(server, sdk):
    batch = ended(sdk, sdk.messages.batches.create(requests=batch_requests(3)).id)
    path = f"/v1/messages/batches/{batch.id}/results"
    logged = len(server.lines)
    head = call(server, "HEAD", path, headers=HEADERS)
    assert (head.status, head.body, head.headers["content-type"]) == (200, b"", "application/x-jsonl")
    assert len(call(server, "GET", path, headers=HEADERS).body.splitlines()) == 3  # the file is there still
    assert "no-body response" not in "".join(server.lines[logged:])


def test_a_download_under_way_outlives_a_delete_of_its_batch(server, sdk):
    count = 20_000  # some 10 MB of results: far more than the socket buffers hold before the client reads
    batch = ended(sdk, sdk.messages.batches.create(requests=batch_requests(count)).id)
    with httpx.stream("GET", f"{server.base_url}/v1/messages/batches/{batch.id}/results", headers=HEADERS) as download:
        lines = download.iter_lines()
        first = next(lines)
        deleted = call(server, "DELETE", f"/v1/messages/batches/{batch.id}", headers=HEADERS)
        assert deleted.status == 200, deleted.body
        assert call(server, "GET", f"/v1/messages/batches/{batch.id}/results", headers=HEADERS).status == 404
        custom_ids = [json.loads(line)["custom_id"] for line in [first, *lines] if line]
    assert custom_ids == [f"request-{n}" for n in range(count)]


def test_a_malformed_request_is_errored_in_the_words_of_post_v1_messages(server, sdk):
    malformed = {
        "no-max-tokens": {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
        "bad-content": params("Hi", messages=[{"role": "user", "content": 42}]),
        "assistant-first": params("Hi", messages=[{"role": "assistant", "content": "Hi"}]),
        "unknown-field": params("Hi", colour="blue"),
    }
    requests = [{"custom_id": "fine", "params": params("Fine")}]
    requests += [{"custom_id": custom_id, "params": body} for custom_id, body in malformed.items()]
    requests.append({"custom_id": "streamed", "params": params("Hi", stream=True)})
    batch = sdk.messages.batches.create(requests=requests)  # accepted: params are checked as they are processed
    assert ended(sdk, batch.id).request_counts.errored == 5

    results = by_custom_id(sdk.messages.batches.results(batch.id))
    assert results["fine"].type == "succeeded"
    for custom_id, body in malformed.items():
        refused = call(server, "POST", "/v1/messages", body)
        assert results[custom_id].type == "errored"
        error = results[custom_id].error
        assert error.type == "error" and error.request_id.startswith("req_")
        assert error.error.type == "invalid_request_error"
        assert error.error.message == error_message(
            refused, 400, "invalid_request_error"
        )  # the same field, the same words
    assert results["streamed"].error.error.message == "stream: Input should be False"


def test_the_beta_namespace_and_its_query(sdk):
    beta = sdk.beta.messages.batches
    options: dict[str, Any] = {"betas": ["message-batches-2024-09-24"], "extra_query": {"beta": "true"}}
    batch = beta.create(requests=batch_requests(2, "beta"), **options)
    assert beta.retrieve(batch.id, **options).id == batch.id
    assert batch.id in [listed.id for listed in beta.list(limit=5, **options)]
    ended(sdk, batch.id)
    assert [line.custom_id for line in beta.results(batch.id, **options)] == ["beta-0", "beta-1"]
    assert beta.delete(batch.id, **options).type == "message_batch_deleted"


def test_batches_are_listed_newest_first_a_page_at_a_time(sdk):
    created = [sdk.messages.batches.create(requests=batch_requests(1)).id for _ in range(3)]
    page = sdk.messages.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    assert [batch.id for batch in page.data] == created[::-1][:2]
    assert (page.first_id, page.last_id) == (created[2], created[1])
    everything = [batch.id for batch in sdk.messages.batches.list(limit=2)]  # the SDK pages on with after_id
    assert everything[:3] == created[::-1] and len(everything) == len(set(everything))
    newer = sdk.messages.batches.list(before_id=created[0], limit=1)
    assert [batch.id for batch in newer.data] == [created[1]] and newer.has_more


# ------------------------------------------------------------------------------------------ scripted

SCRIPT = """
fallback: echo
rules:
  - name: vip
    match: {custom_id: {regex: '^vip-'}}
    reply: {text: 'VIP answer for {{ custom_id }}'}
  - name: refused
    match: {custom_id: refuse-me}
    reply: {error: {status: 429, type: rate_limit_error, message: Slow down}}
  - name: counted
    match: {user_text: count}
    replies: [{text: one}, {text: two}, {text: three}]
"""


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    script = tmp_path_factory.mktemp("batches") / "script.yaml"
    script.write_text(SCRIPT, encoding="utf-8")
    with server_with(
        UNDERSTUDY_BACKEND="scripted", UNDERSTUDY_SCRIPT=str(script), UNDERSTUDY_ADMIN_KEY=ADMIN_KEY
    ) as running:
        yield running


def test_a_batch_is_answered_by_the_scripts_rules(scripted_server):
    with sdk_for(scripted_server) as client:
        requests = [
            {"custom_id": "vip-1", "params": params("Hi")},
            {"custom_id": "vip-2", "params": params("Hi")},
            {"custom_id": "refuse-me", "params": params("Hi")},
            *({"custom_id": f"count-{n}", "params": params("count")} for n in range(3)),
            {"custom_id": "anyone", "params": params("echo me")},
        ]
        batch = client.messages.batches.create(requests=requests, extra_headers={"x-test-id": "batch-42"})
        counts = ended(client, batch.id).request_counts
        assert (counts.succeeded, counts.errored) == (6, 1)

        results = by_custom_id(client.messages.batches.results(batch.id))
        assert results["vip-1"].message.content[0].text == "VIP answer for vip-1"  # a rule matched on the custom_id
        assert results["vip-2"].message.content[0].text == "VIP answer for vip-2"
        refused = results["refuse-me"].error  # an error reply is an errored result, with the error body the API sends
        assert (refused.error.type, refused.error.message) == ("rate_limit_error", "Slow down")
        assert sorted(results[f"count-{n}"].message.content[0].text for n in range(3)) == ["one", "three", "two"]
        assert results["anyone"].message.content[0].text == "echo me"  # the fallback

    entries = journal(scripted_server, method="POST")
    items = {
        entry["custom_id"]: entry for entry in entries if entry["path"].startswith(f"/v1/messages/batches/{batch.id}/")
    }
    assert sorted(items) == sorted(request["custom_id"] for request in requests)  # one entry per request
    vip = items["vip-1"]
    assert vip["path"] == f"/v1/messages/batches/{batch.id}/requests/vip-1" and vip["batch_id"] == batch.id
    assert (vip["status"], vip["rule"], vip["body"]) == (200, "vip", params("Hi"))
    assert vip["headers"]["x-test-id"] == "batch-42"  # the create request's headers, which rules can match
    assert "authorization" not in vip["headers"] and "x-api-key" not in vip["headers"]  # and never its key
    assert (items["refuse-me"]["status"], items["refuse-me"]["rule"]) == (429, "refused")
    assert journal(scripted_server, path=f"/v1/messages/batches/{batch.id}/requests/count-0")[0]["rule"] == "counted"


def test_a_custom_id_rule_never_matches_a_request_of_its_own(scripted_server):
    with sdk_for(scripted_server) as client:
        reply = client.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "vip-"}])
    assert reply.content[0].text == "vip-"  # the echo fallback, not the vip rule


# ---------------------------------------------------------------------------------- cancel and expiry


def wait_for_journal(server: ServerProcess, path: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not journal(server, path=path):
        assert time.monotonic() < deadline, f"nothing journaled at {path}"
        time.sleep(0.1)


def test_a_batch_canceled_mid_way_ends_with_its_unanswered_requests_canceled(slow_server):
    with sdk_for(slow_server) as client:
        batch = client.messages.batches.create(requests=batch_requests(10))
        wait_for_journal(slow_server, f"/v1/messages/batches/{batch.id}/requests/request-0")  # the first is answered

        canceling = client.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
        assert canceling.request_counts.processing == 10  # counts move only when the batch ends

        done = ended(client, batch.id)
        counts = done.request_counts
        assert counts.succeeded >= 1 and counts.canceled >= 1 and counts.succeeded + counts.canceled == 10
        results = by_custom_id(client.messages.batches.results(batch.id))
        assert results["request-0"].type == "succeeded" and results["request-9"].type == "canceled"
        assert sum(result.type == "canceled" for result in results.values()) == counts.canceled

        with pytest.raises(anthropic.BadRequestError, match="has already ended and cannot be canceled"):
            client.messages.batches.cancel(batch.id)
        assert client.messages.batches.delete(batch.id).id == batch.id
        for gone in (client.messages.batches.retrieve, client.messages.batches.cancel, client.messages.batches.delete):
            with pytest.raises(anthropic.NotFoundError, match=f"Message Batch not found: {batch.id}"):
                gone(batch.id)


def test_a_running_batch_has_no_results_and_cannot_be_deleted(slow_server):
    with sdk_for(slow_server) as client:
        batch = client.messages.batches.create(requests=batch_requests(3))
        with pytest.raises(anthropic.BadRequestError, match="is still processing; cancel it"):
            client.messages.batches.delete(batch.id)
        with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):  # the SDK does not even ask
            client.messages.batches.results(batch.id)
        message = error_message(
            call(slow_server, "GET", f"/v1/messages/batches/{batch.id}/results"), 400, "invalid_request_error"
        )
        assert message.startswith(f"Message Batch {batch.id} has not finished processing")
        assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"  # nothing changed
        client.messages.batches.cancel(batch.id)
        assert ended(client, batch.id).request_counts.canceled >= 1


@pytest.fixture(scope="module")
def expiring_server() -> Iterator[ServerProcess]:
    """Batches that would take a minute but expire after two seconds."""
    with server_with(UNDERSTUDY_BATCH_MIN_SECONDS="60", UNDERSTUDY_BATCH_EXPIRE_SECONDS="2") as running:
        yield running


def test_requests_not_answered_by_expires_at_are_expired(expiring_server):
    with sdk_for(expiring_server) as client:
        batch = client.messages.batches.create(requests=batch_requests(10))
        assert (batch.expires_at - batch.created_at).total_seconds() == 2
        done = ended(client, batch.id)
        counts = done.request_counts
        assert counts.expired >= 1 and counts.succeeded + counts.expired == 10
        assert done.ended_at >= done.expires_at and done.cancel_initiated_at is None
        results = by_custom_id(client.messages.batches.results(batch.id))
        assert results["request-9"].type == "expired"
        assert sum(result.type == "expired" for result in results.values()) == counts.expired


# ------------------------------------------------------------------------------------------ bad input


DUPLICATE = "Duplicate custom_id 'a'; each custom_id must be unique within a Message Batch"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({}, "requests: Field required", id="no-requests"),
        pytest.param({"requests": []}, "requests: List should have at least 1 item", id="empty"),
        pytest.param({"requests": [{"custom_id": "a", "params": params("Hi")}] * 2},
                     f"requests.1.custom_id: {DUPLICATE}", id="duplicate"),
        pytest.param({"requests": [{"custom_id": "has space", "params": {}}]},
                     "requests.0.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'", id="bad-characters"),
        pytest.param({"requests": [{"custom_id": "x" * 65, "params": {}}]},
                     "requests.0.custom_id: String should have at most 64 characters", id="too-long"),
        pytest.param({"requests": [{"custom_id": "", "params": {}}]},
                     "requests.0.custom_id: String should have at least 1 character", id="empty-custom-id"),
        pytest.param({"requests": [{"params": {}}]}, "requests.0.custom_id: Field required", id="no-custom-id"),
        pytest.param({"requests": [{"custom_id": "a", "params": "Hi"}]},
                     "requests.0.params: Input should be a valid dictionary", id="params-not-an-object"),
        pytest.param({"requests": [{"custom_id": "a", "params": {}, "colour": "blue"}]},
                     "requests.0.colour: Extra inputs are not permitted", id="extra-field"),
        pytest.param({"requests": [{"custom_id": f"r{n}", "params": {}} for n in range(100_001)]},
                     "requests: List should have at most 100000 items", id="over-100000"),
    ],
)  # fmt: skip
def test_a_bad_batch_is_a_400_naming_the_field(server, body, message):
    assert error_message(call(server, "POST", "/v1/messages/batches", body), 400, "invalid_request_error") == message


def test_a_batch_over_256_mb_is_refused_before_it_is_sent(server):
    head = (
        "POST /v1/messages/batches HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"x-api-key: {API_KEY}\r\nanthropic-version: 2023-06-01\r\ncontent-length: {256 * 1024 * 1024 + 1}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head.encode())  # the head only: not one byte of the body
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = Answer(response)
    assert (
        error_message(answer, 413, "request_too_large") == "Request exceeds the maximum allowed size of 268435456 bytes"
    )


def test_a_batch_a_little_over_the_message_limit_is_accepted(server, sdk):
    text = "x" * (1024 * 1024)
    requests = [{"custom_id": f"big-{n}", "params": params(text, max_tokens=1)} for n in range(40)]  # 40 MB
    answer = call(server, "POST", "/v1/messages/batches", {"requests": requests})
    assert answer.status == 200, answer.body[:300]
    assert ended(sdk, answer.json()["id"]).request_counts.succeeded == 40


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/messages/batches/msgbatch_nope"),
        ("POST", "/v1/messages/batches/msgbatch_nope/cancel"),
        ("DELETE", "/v1/messages/batches/msgbatch_nope"),
        ("GET", "/v1/messages/batches/msgbatch_nope/results"),
    ],
)
def test_an_unknown_batch_is_a_404(server, method, path):
    message = error_message(call(server, method, path), 404, "not_found_error")
    assert message == "Message Batch not found: msgbatch_nope"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("after_id=msgbatch_nope", "after_id: no Message Batch with id 'msgbatch_nope'"),
        ("before_id=msgbatch_nope", "before_id: no Message Batch with id 'msgbatch_nope'"),
        ("limit=0", "limit: Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_list_query_is_a_400(server, query, message):
    answer = call(server, "GET", f"/v1/messages/batches?{query}")
    assert error_message(answer, 400, "invalid_request_error") == message


def test_bad_input_loses_nothing_already_accepted(server, sdk):
    workers = server.worker_pids()
    accepted = sdk.messages.batches.create(requests=batch_requests(50, "kept"))
    for body in ({"requests": [{"custom_id": "a", "params": {}}] * 2}, {"requests": []}, b'{"requests": [', b"\xff"):
        assert call(server, "POST", "/v1/messages/batches", body).status == 400
    for method, suffix in (("POST", "/cancel"), ("DELETE", ""), ("GET", "/results")):
        assert call(server, method, f"/v1/messages/batches/msgbatch_nope{suffix}").status == 404
    results = by_custom_id(sdk.messages.batches.results(ended(sdk, accepted.id).id))
    assert sorted(results) == sorted(f"kept-{n}" for n in range(50))
    assert all(result.type == "succeeded" for result in results.values())
    assert server.worker_pids() == workers and "Traceback" not in server.output


# ------------------------------------------------------------------------------------- a worker killed

KILL_SCRIPT = """
rules:
  - name: slow
    reply: {text: 'answer for {{ custom_id }}', fault: {kind: stall, seconds: 0.01}}
"""


def test_a_worker_killed_mid_batch_loses_nothing_and_answers_nothing_twice(tmp_path: Path):
    script = tmp_path / "script.yaml"
    script.write_text(KILL_SCRIPT, encoding="utf-8")
    env = {
        "UNDERSTUDY_BACKEND": "scripted",
        "UNDERSTUDY_SCRIPT": str(script),
        "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY,
        "UNDERSTUDY_BATCH_LEASE_SECONDS": "1",
    }
    with server_with(**env) as server, sdk_for(server) as client:
        # 1,200 requests of 10 ms each: each worker claims a run of 200 (CLAIM_SIZE) at once, and is busy with it
        # for 2 s; so a second in, whichever worker is killed dies holding a run, half of it answered.
        batch = client.messages.batches.create(requests=batch_requests(1200))
        time.sleep(1)
        killed = server.worker_pids()[0]
        os.kill(killed, signal.SIGKILL)  # mid-run: its claimed requests are neither answered nor handed back

        client = client.with_options(max_retries=2)  # a pooled connection may have been the killed worker's
        done = ended(client, batch.id)
        assert done.request_counts.succeeded == 1200
        lines = list(client.messages.batches.results(batch.id))
        assert sorted(line.custom_id for line in lines) == sorted(f"request-{n}" for n in range(1200))  # each once
        assert all(line.result.message.content[0].text == f"answer for {line.custom_id}" for line in lines)
        entries = [entry["custom_id"] for entry in journal(server, method="POST") if entry.get("batch_id") == batch.id]
        assert len(entries) == len(set(entries))  # no request answered twice
        assert killed not in server.worker_pids()  # gunicorn replaced it


# ------------------------------------------------------------------------------------------- the proxy

UPSTREAM_KEY = "sk-upstream-secret-for-batches"
CLIENT_KEY = "client-key-of-the-gateway"


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerProcess]:
    """An echo Understudy that runs the batches; it accepts only the upstream key, and journals."""
    with ServerProcess(upstream_env(UPSTREAM_KEY, ADMIN_KEY)) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(upstream: ServerProcess) -> Iterator[ServerProcess]:
    settings = {"UNDERSTUDY_ADMIN_KEY": ADMIN_KEY, "UNDERSTUDY_VALIDATE_RESPONSES": "true"}
    env = gateway_env(upstream.base_url, UPSTREAM_KEY, CLIENT_KEY, **settings)
    with ServerProcess(env, workers=2) as running:
        yield running


def test_a_batch_through_the_proxy_runs_upstream_and_comes_back_through_the_gateway(upstream, gateway):
    with sdk_for(gateway, CLIENT_KEY) as client:
        batch = client.messages.batches.create(requests=batch_requests(5, "proxied"))
        done = ended(client, batch.id)
        assert done.request_counts.succeeded == 5
        assert done.results_url == f"{gateway.base_url}/v1/messages/batches/{batch.id}/results"  # not the upstream's
        lines = list(client.messages.batches.results(batch.id))
        assert [line.custom_id for line in lines] == [f"proxied-{n}" for n in range(5)]
        assert lines[0].result.message.content[0].text == "Hello 0"  # the upstream's echo answered
        assert batch.id in [listed.id for listed in client.messages.batches.list(limit=10)]

    entries = journal(upstream)
    received = [
        entry for entry in entries if entry["path"].startswith("/v1/messages/batches") and "batch_id" not in entry
    ]
    assert (
        len([entry for entry in entries if entry.get("batch_id") == batch.id]) == 5
    )  # each request, answered upstream
    assert {(entry["method"], entry["path"]) for entry in received} >= {
        ("POST", "/v1/messages/batches"),
        ("GET", f"/v1/messages/batches/{batch.id}"),
        ("GET", f"/v1/messages/batches/{batch.id}/results"),
    }
    for entry in received:  # the upstream got the gateway's key, never the client's (the SDK sends it as Bearer)
        assert entry["headers"]["x-api-key"] == "[masked]" and "authorization" not in entry["headers"]
    assert [entry["status"] for entry in journal(gateway, path="/v1/messages/batches", method="POST")] == [200]
    assert CLIENT_KEY not in json.dumps(received) and UPSTREAM_KEY not in gateway.output


def test_the_upstreams_batch_errors_pass_through(gateway):
    with sdk_for(gateway, CLIENT_KEY) as client:
        with pytest.raises(anthropic.NotFoundError, match="Message Batch not found: msgbatch_nope"):
            client.messages.batches.retrieve("msgbatch_nope")
        batch = ended(client, client.messages.batches.create(requests=batch_requests(1)).id)
        with pytest.raises(anthropic.BadRequestError, match="has already ended"):
            client.messages.batches.cancel(batch.id)
        assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    answer = call(
        gateway, "GET", f"/v1/messages/batches/{batch.id}/results", headers={**HEADERS, "x-api-key": CLIENT_KEY}
    )
    assert error_message(answer, 404, "not_found_error") == f"Message Batch not found: {batch.id}"


def test_the_gateways_secrets_are_masked_in_the_results_it_passes_on(gateway):
    with sdk_for(gateway, CLIENT_KEY) as client:
        requests = [{"custom_id": "leaky", "params": params(f"my key is {CLIENT_KEY}")}, *batch_requests(2)]
        batch = ended(client, client.messages.batches.create(requests=requests).id)
        results = by_custom_id(client.messages.batches.results(batch.id))  # the upstream echoed the key: not passed on
        assert results["leaky"].message.content[0].text == "my key is [masked]"
        assert results["request-1"].message.content[0].text == "Hello 1"
