"""The whole request path in-process: spec validation, auth, headers and the error shape.

Connexion's test client drives every middleware (the envelope, routing,
security, validation and the Flask bridge), so these tests see what a client
would, without a server process. Each runs twice (tests/conftest.py): with
app/internals.py's hooks and with UNDERSTUDY_INTERNALS off.
"""

import gc
import json
import time

import pytest

from app import create_app
from app.api import BACKEND_KEY
from app.spec import validators

from builders import API_KEY, HEADERS, message_body, weather_tool


def assert_error(response, status, error_type, message_part=""):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert message_part in body["error"]["message"], body["error"]["message"]
    assert body["request_id"] == response.headers["request-id"]
    assert body["request_id"].startswith("req_")
    return body["error"]["message"]


def test_create_message(client):
    response = client.post("/v1/messages", json=message_body("Hi"), headers=HEADERS)
    assert response.status_code == 200
    assert response.json()["content"] == [{"type": "text", "text": "Hi"}]
    assert response.headers["request-id"].startswith("req_")
    assert response.headers["content-type"] == "application/json"
    assert b"\n" not in response.content and b", " not in response.content  # compact, as the real API


def test_bearer_auth_and_new_version(client):
    headers = {"authorization": f"Bearer {API_KEY}", "anthropic-version": "2026-10-21"}
    assert client.post("/v1/messages", json=message_body(), headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, "x-api-key header is required"),
        ({"x-api-key": "wrong", "anthropic-version": "2023-06-01"}, "invalid x-api-key"),
        ({"x-api-key": "", "anthropic-version": "2023-06-01"}, "invalid x-api-key"),
        ({"authorization": "Bearer wrong", "anthropic-version": "2023-06-01"}, "invalid x-api-key"),
    ],
)
def test_authentication_errors(client, headers, message):
    response = client.post("/v1/messages", json=message_body(), headers=headers)
    assert_error(response, 401, "authentication_error", message)


def test_any_key_passes_when_none_are_configured(internals):
    with create_app({"internals": internals}).test_client() as open_client:
        headers = {"x-api-key": "anything", "anthropic-version": "2023-06-01"}
        assert open_client.post("/v1/messages", json=message_body(), headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"x-api-key": API_KEY}, "anthropic-version: header is required"),
        ({"x-api-key": API_KEY, "anthropic-version": "1999-01-01"}, "anthropic-version: Input should be"),
    ],
)
def test_version_header(client, headers, message):
    assert_error(
        client.post("/v1/messages", json=message_body(), headers=headers), 400, "invalid_request_error", message
    )


def test_beta_header_is_accepted(client):
    headers = {**HEADERS, "anthropic-beta": "fine-grained-tool-streaming-2025-05-14,other"}
    assert client.post("/v1/messages", json=message_body(), headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}, "model: Field required"),
        (message_body(max_tokens=-1), "max_tokens: Input should be greater than or equal to 0"),
        (message_body(max_tokens="10"), "max_tokens: Input should be a valid integer"),
        (message_body(temperature=2), "temperature: Input should be less than or equal to 1"),
        (message_body(messages=[]), "messages: List should have at least 1 item"),
        (message_body(messages=[{"role": "robot", "content": "x"}]), "messages.0.role: Input tag 'robot'"),
        (message_body(messages=[{"role": "system", "content": "x"}]), 'first message must use the "user" role'),
        (message_body(messages=[{"role": "user", "content": 42}]), "messages.0.content: Input should be a valid"),
        (message_body(surprise=True), "surprise: Extra inputs are not permitted"),
        (message_body(tool_choice={"type": "sometimes"}), "tool_choice"),
        (message_body(metadata={"user_id": "u", "extra": 1}), "metadata.extra: Extra inputs are not permitted"),
    ],
)
def test_validation_errors_name_the_field(client, body, message):
    assert_error(client.post("/v1/messages", json=body, headers=HEADERS), 400, "invalid_request_error", message)


def test_max_tokens_0_warms_the_cache_without_a_reply(client):
    # The SDK documents max_tokens 0 as populating the prompt cache without generating a response.
    response = client.post("/v1/messages", json=message_body(max_tokens=0), headers=HEADERS)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["content"] == [] and reply["stop_reason"] == "max_tokens" and reply["usage"]["output_tokens"] == 0


def test_rules_across_fields_are_400s(client):
    body = message_body(tool_choice={"type": "any"})
    assert_error(client.post("/v1/messages", json=body, headers=HEADERS), 400, "invalid_request_error", "tool_choice")


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b'{"model": ', "application/json", "Invalid JSON"),
        (b"\xff\xfe{}", "application/json", "not valid utf-8"),
        (b"", "application/json", "empty"),
        (b"[]", "application/json", "body: Input should be a valid dictionary"),
        (b'{"model": NaN}', "application/json", "NaN is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "nested too deeply"),
        (b"model=x", "text/plain", "Content-Type must be application/json"),
    ],
)
def test_malformed_bodies(client, content, content_type, message):
    headers = {**HEADERS, "content-type": content_type}
    response = client.post("/v1/messages", content=content, headers=headers)
    assert_error(response, 400, "invalid_request_error", message)


def test_unknown_fields_can_be_allowed(internals):
    with create_app({"allow_unknown_fields": True, "internals": internals}).test_client() as lenient:
        assert lenient.post("/v1/messages", json=message_body(surprise=1), headers=HEADERS).status_code == 200


def test_body_over_the_limit_is_413(internals):
    with create_app({"max_body_bytes": 1000, "internals": internals}).test_client() as small:
        response = small.post("/v1/messages", json=message_body("x" * 2000), headers=HEADERS)
        assert_error(response, 413, "request_too_large")


def test_unknown_route_and_method(client):
    assert_error(client.get("/v1/nothing", headers=HEADERS), 404, "not_found_error")
    assert_error(client.get("/v1/messages", headers=HEADERS), 405, "invalid_request_error")


def test_unknown_query_parameters_are_accepted(client):
    response = client.post("/v1/messages?beta=true", json=message_body(), headers=HEADERS)
    assert response.status_code == 200


def test_count_tokens(client):
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "Hello, world"}],
        "tools": [weather_tool()],
    }
    response = client.post("/v1/messages/count_tokens", json=body, headers=HEADERS)
    assert response.status_code == 200
    assert response.json()["input_tokens"] > 3


def test_models(client):
    page = client.get("/v1/models?limit=2", headers=HEADERS).json()
    assert len(page["data"]) == 2 and page["has_more"]
    model = client.get(f"/v1/models/{page['first_id']}", headers=HEADERS).json()
    assert model == page["data"][0]
    assert_error(client.get("/v1/models/claude-nope", headers=HEADERS), 404, "not_found_error")
    assert_error(client.get("/v1/models?limit=0", headers=HEADERS), 400, "invalid_request_error", "limit")
    assert_error(client.get("/v1/models?limit=1001", headers=HEADERS), 400, "invalid_request_error", "limit")


def test_health_needs_no_key(client):
    response = client.get("/health")
    # echo keeps Message Batches in the state store, so its health says whether the store can write
    assert response.status_code == 200 and response.json() == {"status": "ok", "backend": "echo", "store": "ok"}


def test_stream_is_server_sent_events(client):
    response = client.post("/v1/messages", json=message_body("Hello there", stream=True), headers=HEADERS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [frame for frame in response.text.split("\n\n") if frame]
    names = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        name = event_line.removeprefix("event: ")
        assert json.loads(data_line.removeprefix("data: "))["type"] == name
        names.append(name)
    assert names[0] == "message_start" and names[-1] == "message_stop"


def test_swagger_ui_is_served(client):
    assert client.get("/v1/ui/").status_code == 200


def test_the_backend_lets_go_of_its_connections_when_the_app_stops(internals):
    # No journal: the handlers' backend is then the proxy itself, not the proxy seen through the journal's eyes.
    settings = {"backend": "proxy", "upstream_url": "http://127.0.0.1:9", "internals": internals, "journal": False}
    app = create_app(settings)
    backend = app.app.extensions[BACKEND_KEY]
    closed = []
    backend.close = lambda: closed.append(backend.upstream.pool.close())  # the proxy's own close, seen to run
    with app.test_client():
        assert closed == []
    assert closed == [None]


def test_a_large_body_is_parsed_with_the_garbage_collector_paused_and_then_running_again(monkeypatch):
    seen: list[bool] = []

    class Decoder:
        def decode(self, text: str) -> dict:
            seen.append(gc.isenabled())
            return {}

    monkeypatch.setattr(validators, "_DECODER", Decoder())
    large = '{"x": "' + "a" * validators.GC_PAUSE_CHARACTERS + '"}'
    assert validators.parse_json(large) == {} and validators.parse_json("{}") == {}
    assert seen == [False, True] and gc.isenabled()


@pytest.mark.parametrize("custom_id", ["a\n", "ok\r\n", "\nok", "a b"])
def test_a_custom_id_is_matched_whole(client, custom_id):
    requests = [{"custom_id": custom_id, "params": message_body()}]
    response = client.post("/v1/messages/batches", json={"requests": requests}, headers=HEADERS)
    assert_error(response, 400, "invalid_request_error", "requests.0.custom_id: String should match pattern")


def ended_batch(client) -> str:
    requests = [{"custom_id": "only", "params": message_body()}]
    batch_id = client.post("/v1/messages/batches", json={"requests": requests}, headers=HEADERS).json()["id"]
    for _ in range(200):
        if client.get(f"/v1/messages/batches/{batch_id}", headers=HEADERS).json()["processing_status"] == "ended":
            return batch_id
        time.sleep(0.05)
    raise AssertionError("the batch did not end")


@pytest.mark.parametrize(
    ("host", "base"),
    [
        ("testserver", "http://testserver"),  # the name the connection came in on
        ("localhost:9000", "http://localhost:9000"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("attacker.example", "http://testserver:80"),  # a foreign name is never echoed
        ("localhost:9000/evil", "http://testserver:80"),
        ("local host", "http://testserver:80"),
        ("", "http://testserver:80"),
    ],
)
def test_results_url_names_this_server_never_a_foreign_host(client, host, base):
    batch_id = ended_batch(client)
    batch = client.get(f"/v1/messages/batches/{batch_id}", headers={**HEADERS, "host": host}).json()
    assert batch["results_url"] == f"{base}/v1/messages/batches/{batch_id}/results"


def test_results_url_is_the_configured_public_url(internals):
    app = create_app({"api_keys": API_KEY, "internals": internals, "public_url": "https://understudy.example/"})
    with app.test_client() as configured:
        batch_id = ended_batch(configured)
        batch = configured.get(f"/v1/messages/batches/{batch_id}", headers={**HEADERS, "host": "other"}).json()
    assert batch["results_url"] == f"https://understudy.example/v1/messages/batches/{batch_id}/results"
