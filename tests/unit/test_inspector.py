"""The inspector's routes, the facts each entry gains, and /metrics, in-process: who may read them, what they say."""

from __future__ import annotations

import base64
import threading

import pytest

from app import create_app
from app.api.inspector import POLICY

from builders import API_KEY, HEADERS, message_body

ADMIN = "admin-secret"
BASIC = {"authorization": "Basic " + base64.b64encode(f"anyone:{ADMIN}".encode()).decode()}
WRONG = {"authorization": "Basic " + base64.b64encode(b"anyone:guess").decode()}
ADMIN_HEADER = {"x-understudy-admin-key": ADMIN}
#: The inspector's routes and its data, each with the method it is read by.
GUARDED = [
    ("GET", "/_understudy/"),
    ("GET", "/_understudy/inspector/inspector.js"),
    ("GET", "/_understudy/requests"),
    ("GET", "/_understudy/requests/1/rule"),
    ("GET", "/metrics"),
]


@pytest.fixture
def client(tmp_path, internals):
    settings = {
        "api_keys": API_KEY,
        "admin_key": ADMIN,
        "journal": True,
        "metrics": True,
        "state_file": tmp_path / "state.sqlite3",
        "internals": internals,
        "validate_responses": True,
    }
    with create_app(settings).test_client() as test_client:
        yield test_client


def entries(client):
    return client.get("/_understudy/requests", headers=ADMIN_HEADER).json()["data"]


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_without_the_key_nothing_is_served(client, method, path):
    for credentials in ({}, WRONG, {"x-understudy-admin-key": "guess"}):
        response = client.request(method, path, headers=credentials)
        assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
    assert client.request(method, path).headers["www-authenticate"].startswith("Basic ")  # a browser asks, once


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_without_an_admin_key_set_nothing_is_there(tmp_path, method, path):
    with create_app({"journal": True, "metrics": True, "state_file": tmp_path / "s.sqlite3"}).test_client() as client:
        assert client.request(method, path, headers=BASIC).status_code == 404


def test_metrics_are_off_unless_asked_for(tmp_path):
    app = create_app({"admin_key": ADMIN, "state_file": tmp_path / "s.sqlite3"})
    with app.test_client() as client:
        assert client.get("/metrics", headers=ADMIN_HEADER).status_code == 404
        assert client.get("/_understudy/", headers=BASIC).status_code == 200


def test_the_page_and_its_files_are_served_under_a_strict_policy(client):
    page = client.get("/_understudy/", headers=BASIC)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert policy == POLICY and "default-src 'none'" in policy and "unsafe" not in policy
    assert {"script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} <= set(policy.split("; "))
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text and " style=" not in page.text  # nothing inline: the policy would refuse it
    for asset, kind in (("inspector.js", "text/javascript"), ("inspector.css", "text/css")):
        response = client.get(f"/_understudy/inspector/{asset}", headers=BASIC)
        assert response.headers["content-type"].startswith(kind)
        assert response.headers["content-security-policy"] == POLICY
    assert client.get("/_understudy/inspector/other.js", headers=BASIC).status_code == 400
    assert "innerHTML" not in client.get("/_understudy/inspector/inspector.js", headers=BASIC).text


def test_an_entry_is_completed_with_its_response_timing_and_tokens(client):
    client.post("/v1/messages", json=message_body("Hello, Claude"), headers=HEADERS)
    (entry,) = entries(client)
    assert entry["completed"] and entry["route"] == "messages.create" and entry["door"] == "anthropic"
    assert entry["model"] == "claude-sonnet-4-5" and entry["scope"] == "default" and not entry["streamed"]
    assert entry["response"]["content"][0]["text"] == "Hello, Claude"
    assert (entry["input_tokens"], entry["output_tokens"]) == (3, 3) and entry["duration_ms"] > 0


def test_a_stream_s_entry_keeps_its_events_with_their_times(client):
    client.post("/v1/messages", json=message_body("one two three", stream=True), headers=HEADERS)
    (entry,) = entries(client)
    kinds = [item["event"]["type"] for item in entry["events"]]
    assert entry["streamed"] and kinds[0] == "message_start" and kinds[-1] == "message_stop"
    times = [item["at_ms"] for item in entry["events"]]
    assert times == sorted(times) and entry["first_event_ms"] == times[0] <= entry["duration_ms"]
    assert entry["output_tokens"] == 3 and "response" not in entry


def test_a_stream_s_events_are_kept_within_the_body_limit(tmp_path):
    settings = {"admin_key": ADMIN, "journal": True, "journal_max_body_bytes": 1500, "state_file": tmp_path / "s"}
    with create_app(settings).test_client() as client:
        client.post("/v1/messages", json=message_body(" ".join(["word"] * 200), stream=True), headers=HEADERS)
        (entry,) = entries(client)
    assert sum(len(str(item["event"])) for item in entry["events"]) < 2000 and entry["events_left_out"] > 0


@pytest.mark.parametrize(
    ("body", "version", "refused_by"),
    [
        (message_body(temperature=0.5), "2026-10-21", "version"),  # 2023-06-01 takes it
        (message_body(model="claude-opus-4-7", temperature=0.5), "2023-06-01", "model"),
        (message_body(max_tokens="many"), "2026-10-21", None),  # wrong in every version: not the version's rule
    ],
)
def test_an_entry_says_which_rule_refused_it(client, body, version, refused_by):
    response = client.post("/v1/messages", json=body, headers={**HEADERS, "anthropic-version": version})
    assert response.status_code == 400
    (entry,) = entries(client)
    assert entry["refused_by"] == refused_by and entry["response"]["error"]["type"] == "invalid_request_error"


def test_a_rate_limit_s_refusal_is_noted(tmp_path):
    settings = {"admin_key": ADMIN, "journal": True, "rate_limits": "rpm=1", "state_file": tmp_path / "s"}
    with create_app(settings).test_client() as client:
        statuses = [client.post("/v1/messages", json=message_body(), headers=HEADERS).status_code for _ in range(2)]
        assert statuses == [200, 429]
        assert [entry["refused_by"] for entry in entries(client)] == [None, "rate_limit"]


def test_a_body_holding_markup_is_kept_as_the_text_it_is(client):
    client.post("/v1/messages", json=message_body("<script>alert(1)</script>"), headers=HEADERS)
    (entry,) = entries(client)
    assert entry["body"]["messages"][0]["content"] == "<script>alert(1)</script>"


def test_the_newest_entries_come_first_when_asked(client):
    for text in ("first", "second", "third"):
        client.post("/v1/messages", json=message_body(text), headers=HEADERS)
    page = client.get("/_understudy/requests?newest=true&limit=2", headers=BASIC).json()
    assert [entry["body"]["messages"][0]["content"] for entry in page["data"]] == ["third", "second"]


def test_metrics_count_requests_tokens_streams_and_refusals(client):
    client.post("/v1/messages", json=message_body("Hello, Claude"), headers=HEADERS)
    client.post("/v1/messages", json=message_body("one two", stream=True), headers=HEADERS)
    client.post(
        "/v1/messages", json=message_body(temperature=0.5), headers={**HEADERS, "anthropic-version": "2026-10-21"}
    )
    client.post("/v1/messages", json=message_body(model="a-model-nobody-made"), headers=HEADERS)
    response = client.get("/metrics", headers=BASIC)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in response.text.splitlines() if line[0] != "#"
    }
    labels = 'backend="echo",door="anthropic",model="claude-sonnet-4-5-20250929",route="messages.create"'
    assert samples[f'understudy_requests_total{{{labels},status="200"}}'] == 2
    assert samples[f'understudy_requests_total{{{labels},status="400"}}'] == 1
    assert samples['understudy_input_tokens_total{model="claude-sonnet-4-5-20250929"}'] == 5
    assert samples['understudy_output_tokens_total{model="claude-sonnet-4-5-20250929"}'] == 5
    assert (
        samples['understudy_time_to_first_event_seconds_count{door="anthropic",model="claude-sonnet-4-5-20250929"}']
        == 1
    )
    assert samples['understudy_refusals_total{rule="version"}'] == 1
    assert samples["understudy_open_streams"] == 0
    assert any('model="other"' in name and 'status="404"' in name for name in samples)  # not a series per name
    assert samples['understudy_request_duration_seconds_count{door="anthropic",route="messages.create"}'] == 4


def test_a_worker_writes_its_counts_on_its_own_while_its_app_runs(tmp_path, monkeypatch):
    """Without a scrape: the writer the app's lifespan starts writes the counts added up; its end, what is left."""
    from app.api import METRICS_KEY
    from app.observing import metrics

    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 0.05)
    app = create_app({"api_keys": API_KEY, "admin_key": ADMIN, "metrics": True, "state_file": tmp_path / "s.sqlite3"})
    counted = app.app.extensions[METRICS_KEY]

    def written() -> float:  # what the registry holds, as written: a scrape would write the tallies first
        value = counted.registry.get_sample_value(
            "understudy_requests_total",
            {"door": "anthropic", "route": "messages.create", "model": "claude-sonnet-4-5-20250929", "status": "200",
             "backend": "echo"},
        )  # fmt: skip
        return value or 0.0

    with app.test_client() as client:  # the lifespan runs while the client is open
        client.post("/v1/messages", json=message_body("Hello, Claude"), headers=HEADERS)
        for _ in range(100):
            if written() == 1:
                break
            threading.Event().wait(0.05)
        assert written() == 1
        client.post("/v1/messages", json=message_body("Hello, Claude"), headers=HEADERS)
    assert written() == 2  # by the writer, or at the latest by the lifespan's end
