"""Running the server as operators do: gunicorn's config, bad settings, the WSGI callable, raw HTTP."""

from __future__ import annotations

import http.client
import json
import select
import signal
import socket
import time

import pytest

from app.launcher.server_process import ServerProcess

from builders import API_KEY, message_body, start_up


def test_the_state_file_the_master_made_goes_when_it_stops_after_a_reload(tmp_path):
    """gunicorn reads its config file again on SIGHUP: the master must still know the state file it made."""
    with ServerProcess({"TMPDIR": str(tmp_path)}) as server:
        assert [path.name for path in tmp_path.iterdir() if path.suffix == ".sqlite3"] != []
        before = set(server.worker_pids())
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not set(server.worker_pids()).isdisjoint(before):
            time.sleep(0.1)
        assert set(server.worker_pids()).isdisjoint(before), "the workers were not replaced"
    assert list(tmp_path.iterdir()) == []


def raw_request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response, payload


def test_bad_configuration_stops_start_up_with_one_line():
    result = start_up({"UNDERSTUDY_MAX_BODY_BYTES": "lots"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "understudy: configuration error: UNDERSTUDY_MAX_BODY_BYTES: must be a positive whole number (got 'lots')"
    )


def test_a_script_that_will_not_load_stops_start_up_and_leaves_no_state_file(tmp_path):
    script = tmp_path / "bad.yaml"
    script.write_text("- reply: {txt: typo}\n")
    environment = {"UNDERSTUDY_BACKEND": "scripted", "UNDERSTUDY_SCRIPT": str(script), "TMPDIR": str(tmp_path)}
    result = start_up(environment)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("understudy: configuration error: UNDERSTUDY_BACKEND")
    assert [path.name for path in tmp_path.iterdir()] == ["bad.yaml"]  # the master's state file went with it


def test_plain_wsgi_callable_under_a_wsgi_only_worker():
    with ServerProcess(target="wsgi:application", extra_args=["--worker-class", "sync"]) as server:
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json"}
        response, payload = raw_request(
            server.port, "POST", "/v1/messages", json.dumps(message_body("wsgi")).encode(), headers
        )
        assert response.status == 200 and json.loads(payload)["content"][0]["text"] == "wsgi"
        response, payload = raw_request(server.port, "POST", "/v1/messages", b"{}", headers)
        assert response.status == 400 and json.loads(payload)["error"]["message"] == "model: Field required"


@pytest.mark.parametrize(
    ("auth", "version"),
    [({"x-api-key": API_KEY}, "2023-06-01"), ({"authorization": f"Bearer {API_KEY}"}, "2026-10-21")],
)
def test_both_sdk_generations_headers(server, auth, version):
    headers = {**auth, "anthropic-version": version, "content-type": "application/json"}
    response, payload = raw_request(
        server.port, "POST", "/v1/messages?beta=true", json.dumps(message_body()).encode(), headers
    )
    assert response.status == 200, payload
    assert response.getheader("request-id").startswith("req_")
    assert "gunicorn" not in (response.getheader("server") or "")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error_type"),
    [
        ("GET", "/nowhere", None, 404, "not_found_error"),
        ("DELETE", "/v1/messages", None, 405, "invalid_request_error"),
        ("POST", "/v1/messages", b"{not json", 400, "invalid_request_error"),
        ("POST", "/v1/messages", b"\xc3\x28", 400, "invalid_request_error"),
    ],
)
def test_errors_from_below_the_handlers_are_api_shaped(server, method, path, body, status, error_type):
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    response, payload = raw_request(server.port, method, path, body, headers)
    error = json.loads(payload)
    assert response.status == status and response.getheader("content-type") == "application/json"
    assert error["type"] == "error" and error["error"]["type"] == error_type
    assert error["request_id"] == response.getheader("request-id")


def test_chunked_body_over_the_limit_is_refused_as_it_arrives(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    sock.sendall(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
        + f"x-api-key: {API_KEY}\r\nanthropic-version: 2023-06-01\r\n\r\n".encode()
    )
    chunk = b"x" * (64 * 1024)
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    while not select.select([sock], [], [], 0)[0]:  # send until the server answers
        try:
            sock.sendall(framed)
        except BrokenPipeError:
            break  # it answered and closed while this chunk was on its way
        sent += len(chunk)
        assert sent < 100 * 1024 * 1024, "the server read 100 MB without refusing it"
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"type":"request_too_large"' in answer


def raw_exchange(port: int, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own, read until the server closes it: status, headers, every byte after."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {name.lower(): value for name, value in parsed.items()}, rest


KEY_HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
#: Paths and what HEAD answers there: GET's status (a route of GET), a 405 (of POST), a 404 (of none).
HEAD_PATHS = ["/health", "/v1/models", "/v1/models/claude-opus-5-5", "/openapi.json", "/v1/messages", "/", "/nowhere"]


@pytest.mark.parametrize("path", HEAD_PATHS)
def test_head_is_get_without_the_body(server, path):
    logged = len(server.lines)
    got, got_headers, got_body = raw_exchange(server.port, "GET", path, KEY_HEADERS)
    status, headers, body = raw_exchange(server.port, "HEAD", path, KEY_HEADERS)
    assert body == b"", f"HEAD {path} sent a body: {body[:200]!r}"
    assert status == (405 if path == "/v1/messages" else got)
    if status == got:
        assert headers["content-type"] == got_headers["content-type"]
        assert headers["content-length"] == got_headers["content-length"] == str(len(got_body))
    assert "no-body response" not in "".join(server.lines[logged:])


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/messages", "POST, OPTIONS"),
        ("/v1/messages/count_tokens", "POST, OPTIONS"),
        ("/v1/models", "GET, HEAD, OPTIONS"),
        ("/v1/models/claude-opus-5-5", "GET, HEAD, OPTIONS"),
        ("/health", "GET, HEAD, OPTIONS"),
    ],
)
def test_options_names_the_methods_of_a_route(server, path, allow):
    for headers in ({}, KEY_HEADERS):  # no key needed to ask
        status, answered, body = raw_exchange(server.port, "OPTIONS", path, headers)
        assert (status, answered["allow"], body) == (204, allow, b"")
        assert "content-length" not in answered and answered["request-id"].startswith("req_")


def test_options_on_a_path_that_is_not_there_is_a_404(server):
    status, _, body = raw_exchange(server.port, "OPTIONS", "/nowhere", KEY_HEADERS)
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error"
