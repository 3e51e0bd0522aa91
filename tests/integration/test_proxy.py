"""The proxy backend against real upstreams on loopback: Understudy itself, and a purpose-built faulty one.

Upstreams here are real processes — an echo or scripted Understudy, or
tests/fault_upstream.py for resets, stalls and cut streams — never a mocked
HTTP library.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import pytest
import yaml

from app.launcher.server_process import ServerProcess, free_port

from builders import weather_tool
from fault_upstream import RATE_LIMITED

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
CLIENT_KEY = "client-key-of-the-gateway"
ADMIN_KEY = "admin-key-for-tests"
MODEL = "claude-sonnet-4-5"


def proxy_env(upstream_url: str, **extra: str) -> dict[str, str]:
    return {
        "UNDERSTUDY_BACKEND": "proxy",
        "UNDERSTUDY_UPSTREAM_URL": upstream_url,
        "UNDERSTUDY_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "UNDERSTUDY_API_KEYS": CLIENT_KEY,
        "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY,
        **extra,
    }


@pytest.fixture(scope="module")
def upstream():
    """An echo Understudy that accepts only the upstream key, and journals what it receives."""
    env = {"UNDERSTUDY_API_KEYS": UPSTREAM_KEY, "UNDERSTUDY_JOURNAL": "true", "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY}
    with ServerProcess(env) as running:
        yield running


def journal(server):
    options = {"headers": {"x-understudy-admin-key": ADMIN_KEY}}
    with anthropic.Anthropic(base_url=server.base_url, api_key="unused") as client:
        return client.get("/_understudy/requests?limit=1000", cast_to=object, options=options)["data"]


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    recording = tmp_path_factory.mktemp("recording") / "recorded.yaml"
    with ServerProcess(proxy_env(upstream.base_url, UNDERSTUDY_RECORD=str(recording)), workers=2) as running:
        running.recording = recording
        yield running


@pytest.fixture
def sdk(gateway):
    with client_of(gateway, timeout=20) as client:
        yield client


@pytest.fixture(scope="module")
def faulty():
    """tests/fault_upstream.py on a free port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).parents[1] / "fault_upstream.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    process.url = f"http://127.0.0.1:{port}"
    yield process
    process.kill()
    process.wait()
    process.stdout.close()


def client_of(server, **options):
    """The SDK on `server` with a client's gateway key and no retries, so each call is one request (close it)."""
    return anthropic.Anthropic(base_url=server.base_url, api_key=CLIENT_KEY, max_retries=0, **options)


def ask(client, text="Hello through the gateway", **fields):
    fields.setdefault("max_tokens", 100)
    return client.messages.create(model=MODEL, messages=[{"role": "user", "content": text}], **fields)


def test_messages_pass_through_with_the_upstream_key(upstream, sdk):
    message = ask(sdk)
    assert message.content[0].text == "Hello through the gateway"  # the echo upstream answered
    assert message._request_id == journal(upstream)[-1]["request_id"]  # the upstream's request id, kept


def test_streams_pass_through(upstream, sdk):
    with sdk.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "streamed"}]) as s:
        assert "".join(s.text_stream) == "streamed"
        assert s.get_final_message().stop_reason == "end_turn"
        assert s.response.headers["request-id"] == journal(upstream)[-1]["request_id"]


def test_count_tokens_and_models(sdk):
    assert sdk.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "a b c"}]).input_tokens == 3
    models = list(sdk.models.list(limit=5))
    assert len(models) > 5
    assert sdk.models.retrieve(models[0].id).id == models[0].id


def test_upstream_errors_pass_through_unchanged(sdk):
    with pytest.raises(anthropic.NotFoundError) as error:
        sdk.models.retrieve("claude-nope")
    assert error.value.type == "not_found_error" and error.value.api_message == "model: claude-nope"
    assert error.value.request_id == error.value.body["request_id"]  # the upstream's id, kept


def test_bad_requests_never_reach_the_upstream(upstream, gateway, sdk):
    before = len(journal(upstream))
    with pytest.raises(anthropic.BadRequestError):
        ask(sdk, max_tokens=-1)  # below the minimum, 0 (which warms the cache)
    assert len(journal(upstream)) == before
    assert journal(gateway)[-1]["status"] == 400


def test_headers_forwarded_and_dropped(upstream, sdk):
    extra = {"anthropic-beta": "some-beta-2026-01-01", "x-trace": "t-1", "proxy-authorization": "Basic eDp5"}
    ask(sdk, "headers", extra_headers={**extra, "te": "gzip"})
    seen = journal(upstream)[-1]["headers"]
    assert seen["anthropic-version"] == "2026-10-21" and seen["anthropic-beta"] == "some-beta-2026-01-01"
    assert seen["x-trace"] == "t-1"
    assert "proxy-authorization" not in seen and "te" not in seen  # hop-by-hop: this hop's, not the upstream's
    assert "authorization" not in seen  # the client's own key stays at the gateway
    assert seen["x-api-key"] == "[masked]"  # the gateway's upstream key (masked by the upstream's journal)


def test_header_bytes_beyond_ascii_pass_through(upstream, gateway):
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
    body = json.dumps({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "bytes"}]})
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    headers["content-length"] = str(len(body))
    connection.putrequest("POST", "/v1/messages")
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.putheader("x-note", "caf\xe9".encode("latin-1"))  # obs-text: legal, if unusual
    connection.endheaders(body.encode())
    response = connection.getresponse()
    status, answer = response.status, response.read()
    connection.close()
    assert status == 200, answer
    assert journal(upstream)[-1]["headers"]["x-note"] == "caf\xe9"


def test_clients_need_a_gateway_key(gateway):
    with (
        anthropic.Anthropic(base_url=gateway.base_url, api_key=UPSTREAM_KEY, max_retries=0) as stranger,
        pytest.raises(anthropic.AuthenticationError),
    ):
        ask(stranger)  # the upstream key is not a key of the gateway


def test_the_upstream_key_never_leaks(gateway, sdk):
    ask(sdk, "leak check")
    with sdk.messages.stream(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "leak"}]) as s:
        s.get_final_message()
    entries = json.dumps(journal(gateway))
    assert UPSTREAM_KEY not in entries and CLIENT_KEY not in entries
    assert UPSTREAM_KEY not in gateway.output
    assert UPSTREAM_KEY not in gateway.recording.read_text()


def test_client_keys_can_pass_through(upstream):
    env = {"UNDERSTUDY_BACKEND": "proxy", "UNDERSTUDY_UPSTREAM_URL": upstream.base_url}
    with (
        ServerProcess(env) as passing,
        anthropic.Anthropic(base_url=passing.base_url, api_key=UPSTREAM_KEY, max_retries=0) as good,
        anthropic.Anthropic(base_url=passing.base_url, api_key="not-the-upstream-key", max_retries=0) as wrong,
    ):
        assert ask(good, "mine").content[0].text == "mine"
        with pytest.raises(anthropic.AuthenticationError) as error:
            ask(wrong)
        assert error.value.api_message == "invalid x-api-key"  # the upstream's refusal, passed on


@pytest.mark.parametrize(
    ("model", "status", "error_type"),
    [("reset", 502, "api_error"), ("stall", 504, "timeout_error")],
)
def test_upstream_faults_become_api_errors(faulty, model, status, error_type):
    env = proxy_env(faulty.url, UNDERSTUDY_UPSTREAM_READ_TIMEOUT="1")
    with (
        ServerProcess(env) as gateway,
        client_of(gateway) as client,
    ):
        with pytest.raises(anthropic.APIStatusError) as error:
            client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "x"}])
        assert error.value.status_code == status and error.value.type == error_type


def test_an_upstream_that_does_not_accept_in_time_is_a_504():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # room for one waiting connection, which the filler takes: later connects get no answer
    filler = socket.create_connection(listener.getsockname())
    env = proxy_env(f"http://127.0.0.1:{listener.getsockname()[1]}", UNDERSTUDY_UPSTREAM_CONNECT_TIMEOUT="0.5")
    try:
        with (
            ServerProcess(env) as gateway,
            client_of(gateway, timeout=10) as client,
        ):
            started = time.monotonic()
            with pytest.raises(anthropic.APIStatusError) as error:
                ask(client)
            assert error.value.status_code == 504 and error.value.type == "timeout_error"
            assert time.monotonic() - started < 3  # the connect timeout, not the read timeout (600 s)
    finally:
        filler.close()
        listener.close()


def test_upstream_errors_keep_their_body_and_retry_headers_and_lose_hop_by_hop_ones(faulty):
    with (
        ServerProcess(proxy_env(faulty.url)) as gateway,
        client_of(gateway) as client,
        pytest.raises(anthropic.RateLimitError) as error,
    ):
        client.messages.create(model="rate-limited", max_tokens=1, messages=[{"role": "user", "content": "x"}])
    headers = error.value.response.headers
    assert error.value.response.json() == RATE_LIMITED
    assert headers["retry-after"] == "7" and headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["request-id"] == RATE_LIMITED["request_id"]
    assert "keep-alive" not in headers and "proxy-authenticate" not in headers


def test_unknown_fields_pass_through_only_when_allowed(upstream):
    lenient_upstream = {"UNDERSTUDY_ALLOW_UNKNOWN_FIELDS": "true", "UNDERSTUDY_JOURNAL": "true"}
    lenient_upstream |= {"UNDERSTUDY_ADMIN_KEY": ADMIN_KEY}
    with ServerProcess(lenient_upstream) as newer:
        for allowed in (False, True):
            env = proxy_env(newer.base_url, UNDERSTUDY_ALLOW_UNKNOWN_FIELDS=str(allowed).lower())
            with (
                ServerProcess(env) as gateway,
                client_of(gateway) as client,
            ):
                if allowed:
                    assert ask(client, "newer", extra_body={"feature_from_2027": {"on": True}}).content
                else:
                    with pytest.raises(anthropic.BadRequestError, match="feature_from_2027"):
                        ask(client, "older", extra_body={"feature_from_2027": {"on": True}})
        bodies = [entry["body"] for entry in journal(newer)]
    assert [body["messages"][0]["content"] for body in bodies] == ["newer"]  # the refused call never left
    assert bodies[0]["feature_from_2027"] == {"on": True}


def upstream_connections(port: int) -> int:
    """Established loopback connections to `port` from the client side (/proc/net/tcp)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for row in rows if int(row[2].split(":")[1], 16) == port and row[3] == "01")


def test_the_pool_keeps_connections_alive_and_bounded(tmp_path):
    script = tmp_path / "slow.yaml"
    script.write_text(
        yaml.safe_dump(
            [
                {"match": {"user_text": "slow"}, "reply": {"text": "slow", "fault": {"kind": "stall", "seconds": 1}}},
                {"reply": {"text": "quick"}},
            ]
        )
    )
    upstream_env = {"UNDERSTUDY_BACKEND": "scripted", "UNDERSTUDY_SCRIPT": str(script)}
    with ServerProcess(upstream_env) as upstream:
        port = int(upstream.base_url.rsplit(":", 1)[1])
        env = proxy_env(upstream.base_url, UNDERSTUDY_UPSTREAM_CONNECTIONS="2")
        with (
            ServerProcess(env, workers=1) as gateway,
            client_of(gateway, timeout=20) as client,
        ):
            assert [ask(client, f"{n}").content[0].text for n in range(10)] == ["quick"] * 10
            assert upstream_connections(port) == 1  # ten calls, one kept-alive connection
            with ThreadPoolExecutor(max_workers=6) as pool:
                slow = [pool.submit(ask, client, "slow") for _ in range(6)]
                time.sleep(0.5)
                assert upstream_connections(port) == 2  # six waiting calls, two connections: the bound
                assert [call.result().content[0].text for call in slow] == ["slow"] * 6


def test_unreachable_upstream_is_a_502():
    with (
        ServerProcess(proxy_env(f"http://127.0.0.1:{free_port()}")) as gateway,
        client_of(gateway) as client,
    ):
        with pytest.raises(anthropic.APIStatusError) as error:
            ask(client)
        assert error.value.status_code == 502 and error.value.type == "api_error"


def test_a_stream_the_upstream_cuts_ends_with_an_error_event(faulty):
    with (
        ServerProcess(proxy_env(faulty.url)) as gateway,
        client_of(gateway) as client,
    ):
        with (
            pytest.raises(anthropic.APIStatusError) as error,
            client.messages.stream(
                model="cut-stream", max_tokens=10, messages=[{"role": "user", "content": "x"}]
            ) as stream,
        ):
            stream.get_final_message()
        assert error.value.type == "api_error"


def test_events_arrive_as_the_upstream_sends_them_and_a_leaving_client_closes_the_upstream(faulty):
    with (
        ServerProcess(proxy_env(faulty.url)) as gateway,
        client_of(gateway) as client,
    ):
        arrivals = []
        started = time.monotonic()
        with client.messages.stream(
            model="slow-stream", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as s:
            for _ in s.text_stream:
                arrivals.append(time.monotonic() - started)
                if len(arrivals) == 3:
                    break  # leave mid-stream
        left_at = time.monotonic()
        # the upstream sends a delta every 0.2 s: unbuffered, they arrive spread out, not in one batch
        assert arrivals[2] - arrivals[0] > 0.25
        line = faulty.stdout.readline()
        assert line.startswith("client gone after")
        assert time.monotonic() - left_at < 2.0  # the upstream saw the client leave at once, not after 10 s


def test_a_client_leaving_a_stalled_stream_closes_the_upstream_at_once(faulty):
    with (
        ServerProcess(proxy_env(faulty.url)) as gateway,
        client_of(gateway) as client,
    ):
        messages = [{"role": "user", "content": "x"}]
        with client.messages.create(model="stalled-stream", max_tokens=10, messages=messages, stream=True) as events:
            assert next(iter(events)).type == "message_start"
        # the gateway's thread is blocked reading the silent upstream; leaving must still close it
        line = faulty.stdout.readline()
        assert line.startswith("closed after")
        assert float(line.split()[2]) < 2.0


def test_a_slow_upstream_call_does_not_hold_up_the_others(faulty):
    env = proxy_env(faulty.url, UNDERSTUDY_UPSTREAM_READ_TIMEOUT="5")
    with (
        ServerProcess(env) as gateway,
        client_of(gateway) as client,
        ThreadPoolExecutor(max_workers=12) as pool,
    ):
        stalled = pool.submit(
            lambda: client.messages.create(model="stall", max_tokens=1, messages=[{"role": "user", "content": "x"}])
        )
        started = time.monotonic()
        quick = list(pool.map(lambda n: ask(client, f"{n}").content[0].text, range(10)))
        took = time.monotonic() - started
        assert quick == ["ok"] * 10 and took < 4 and not stalled.done()
        with pytest.raises(anthropic.APIStatusError):
            stalled.result()


def test_record_then_replay_gives_the_sdk_the_same_messages(tmp_path):
    script = tmp_path / "upstream.yaml"
    script.write_text(
        yaml.safe_dump(
            [
                {"match": {"tool_result": True}, "reply": {"text": "Done: {{ user_text }}"}},
                {
                    "match": {"tools": True},
                    "reply": {"content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}}]},
                },
                {"reply": {"text": "Recorded answer {{ counter }}", "stream": {"chunk_delay_ms": 20}}},
            ]
        )
    )
    recording = tmp_path / "recorded.yaml"
    upstream_env = {
        "UNDERSTUDY_BACKEND": "scripted",
        "UNDERSTUDY_SCRIPT": str(script),
        "UNDERSTUDY_API_KEYS": UPSTREAM_KEY,
    }

    def session(client):
        seen = [ask(client, "first"), ask(client, "first")]
        with client.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "stream"}]) as s:
            seen.append(s.get_final_message())
        tool = ask(client, "weather?", tools=[weather_tool()])
        tool_use = tool.content[0]
        follow_up = client.messages.create(
            model=MODEL,
            max_tokens=100,
            tools=[weather_tool()],
            messages=[
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": tool.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "cold"}]},
            ],
        )
        return [*seen, tool, follow_up]

    def comparable(message):
        return (
            message.model_dump(exclude={"id", "usage"})["content"],
            message.stop_reason,
            message.usage.output_tokens,
        )

    with (
        ServerProcess(upstream_env) as upstream,
        ServerProcess(proxy_env(upstream.base_url, UNDERSTUDY_RECORD=str(recording)), workers=2) as gateway,
        client_of(gateway) as client,
    ):
        recorded = session(client)
    assert UPSTREAM_KEY not in recording.read_text()
    replay_env = {
        "UNDERSTUDY_BACKEND": "scripted",
        "UNDERSTUDY_SCRIPT": str(recording),
        "UNDERSTUDY_API_KEYS": CLIENT_KEY,
    }
    with (
        ServerProcess(replay_env) as replay,
        client_of(replay) as client,
    ):
        replayed = session(client)
    assert [comparable(m) for m in replayed] == [comparable(m) for m in recorded]
    assert recorded[0].content[0].text == "Recorded answer 1" and recorded[1].content[0].text == "Recorded answer 2"


# ------------------------------------------------------------------------------------ a hostile upstream
#: The limits of the gateway in front of the hostile upstream: small, so that going over them is quick.
BODY_LIMIT = 1024 * 1024
EVENT_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def hostile(faulty, tmp_path_factory):
    """A gateway in front of tests/fault_upstream.py, with small limits, recording every exchange."""
    recording = tmp_path_factory.mktemp("hostile") / "recorded.yaml"
    env = proxy_env(
        faulty.url,
        UNDERSTUDY_UPSTREAM_MAX_BODY_BYTES=str(BODY_LIMIT),
        UNDERSTUDY_UPSTREAM_MAX_EVENT_BYTES=str(EVENT_LIMIT),
        UNDERSTUDY_RECORD=str(recording),
    )
    with ServerProcess(env) as running:
        running.recording = recording
        yield running


@pytest.fixture
def hostile_sdk(hostile):
    with client_of(hostile, timeout=20) as client:
        yield client


def bytes_sent_before_the_gateway_left(faulty) -> int:
    """What the fault upstream says it sent of a flood: `client gone after N bytes` (not `sent all N bytes`)."""
    line = faulty.stdout.readline()
    assert line.startswith("client gone after"), line
    return int(line.split()[3])


@pytest.mark.parametrize("model", ["huge-body", "endless-body"])
def test_an_upstream_body_over_the_limit_is_a_502_and_the_upstream_is_left(faulty, hostile, hostile_sdk, model):
    with pytest.raises(anthropic.APIStatusError) as error:
        hostile_sdk.messages.create(model=model, max_tokens=1, messages=[{"role": "user", "content": "x"}])
    assert error.value.status_code == 502 and error.value.type == "api_error"
    assert f"limit of {BODY_LIMIT} bytes" in error.value.body["error"]["message"]
    # 2 GB on offer: the gateway hung up after its limit (and what the sockets' buffers hold), not at the end
    assert bytes_sent_before_the_gateway_left(faulty) < 64 * 1024 * 1024
    assert "Traceback" not in hostile.output


def test_a_client_that_leaves_a_whole_message_call_stops_the_upstream_read(faulty, tmp_path):
    """The gateway's body limit far above the flood's pace: only the client leaving can stop the read early."""
    env = proxy_env(faulty.url, UNDERSTUDY_UPSTREAM_MAX_BODY_BYTES=str(4 * 1024**3))
    with ServerProcess(env) as gateway:
        body = json.dumps({"model": "endless-body", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})
        head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {CLIENT_KEY}\r\n"
            f"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", gateway.port)) as client:
            client.sendall(head.encode() + body.encode())
            time.sleep(0.5)  # the flood is under way
        sent = bytes_sent_before_the_gateway_left(faulty)
        assert "Traceback" not in gateway.output
    assert sent < 1024**3, sent  # of 2 GB on offer (before: all of it was read, for nobody)


def test_an_event_that_never_ends_becomes_an_error_event(faulty, hostile, hostile_sdk):
    messages = [{"role": "user", "content": "x"}]
    with hostile_sdk.messages.create(model="endless-event", max_tokens=1, messages=messages, stream=True) as events:
        iterator = iter(events)
        assert next(iterator).type == "message_start"
        with pytest.raises(anthropic.APIStatusError) as error:
            next(iterator)
    assert error.value.type == "api_error"
    assert f"limit of {EVENT_LIMIT} bytes" in error.value.body["error"]["message"]
    assert bytes_sent_before_the_gateway_left(faulty) < 64 * 1024 * 1024
    assert "Traceback" not in hostile.output


@pytest.mark.parametrize("model", ["bad-utf8-event", "not-json-event", "untyped-event"])
def test_a_malformed_event_is_an_upstream_error_not_a_crash(hostile, hostile_sdk, model):
    messages = [{"role": "user", "content": "x"}]
    with hostile_sdk.messages.create(model=model, max_tokens=1, messages=messages, stream=True) as events:
        iterator = iter(events)
        assert next(iterator).type == "message_start"
        with pytest.raises(anthropic.APIStatusError) as error:
            next(iterator)
    assert error.value.type == "api_error"
    assert error.value.body["error"]["message"].startswith("The upstream sent a malformed event")
    assert "Traceback" not in hostile.output and "Internal server error" not in hostile.output


def test_a_malformed_first_event_is_a_502(hostile, hostile_sdk):
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.APIStatusError) as error:
        hostile_sdk.messages.create(model="not-json-first", max_tokens=1, messages=messages, stream=True)
    assert error.value.status_code == 502 and error.value.type == "api_error"
    assert error.value.body["error"]["message"].startswith("The upstream sent a malformed event")
    assert "Traceback" not in hostile.output


def raw_call(gateway, model: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """POST /v1/messages with exactly these extra headers (http.client adds no Connection of its own)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
    body = json.dumps({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "raw"}]})
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"} | headers
    connection.request("POST", "/v1/messages", body=body, headers=headers)
    response = connection.getresponse()
    answer = response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    connection.close()
    return answer


@pytest.mark.parametrize("model", ["echo-text", "echo-json"])
def test_secrets_an_upstream_echoes_reach_no_client_log_journal_or_recording(hostile, model):
    # The upstream echoes what it received: the gateway's upstream key, and a cookie that carries the
    # gateway's other secrets (the journal masks cookies; the proxy passes them on).
    cookie = f"gateway={CLIENT_KEY}; admin={ADMIN_KEY}"
    status, headers, body = raw_call(hostile, model, {"cookie": cookie})
    assert status == 400
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    if model == "echo-text":
        assert "x-api-key" not in error["message"]  # no text of a body that is not an API error reaches a client
    else:
        assert "x-api-key: [masked]" in error["message"]  # an API error passes on, its secrets masked
    exits = {
        "response": json.dumps(headers) + body.decode(),
        "log": hostile.output,
        "journal": json.dumps(journal(hostile)),
        "recording": hostile.recording.read_text() if hostile.recording.exists() else "",
    }
    for secret in (UPSTREAM_KEY, CLIENT_KEY, ADMIN_KEY):
        assert [name for name, text in exits.items() if secret in text] == [], secret


def test_headers_named_in_connection_are_not_forwarded_either_way(upstream, gateway, faulty, hostile):
    status, _, _ = raw_call(gateway, MODEL, {"connection": "x-secret-hop", "x-secret-hop": "hush", "x-plain": "p"})
    assert status == 200
    seen = journal(upstream)[-1]["headers"]
    assert seen["x-plain"] == "p" and "x-secret-hop" not in seen  # RFC 9110 §7.6.1: this hop's, not the next
    status, headers, _ = raw_call(hostile, "hop-headers", {})
    assert status == 200
    assert headers["x-up-kept"] == "w" and "x-up-hop" not in headers
