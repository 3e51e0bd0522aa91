"""Security properties of a running server: secrets stay secret, the admin routes stay shut, scripts stay data.

- keys, right or wrong, never reach the server's log (access log and debug
  level included) or the journal, in the database file or over the admin API;
- the admin routes are 404 unless an admin key is set, and 401 without it;
- a script cannot run code or pull in another file, at start-up or on reload;
- responses name no server version;
- request ids are unique across workers.

(That keys are compared in constant time is tests/unit/test_auth.py.)
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from app.launcher.server_process import ServerProcess

from builders import API_KEY, message_body

SECRET = "sk-ant-understudy-" + secrets.token_hex(12)
WRONG = "sk-ant-guessed-" + secrets.token_hex(12)
ADMIN = "admin-" + secrets.token_hex(12)
WRONG_ADMIN = "admin-guessed-" + secrets.token_hex(12)


def request(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    payload = None if body is None else json.dumps(body).encode()
    connection.request(method, path, body=payload, headers={"content-type": "application/json", **(headers or {})})
    response = connection.getresponse()
    answer = response.status, response.msg, response.read()
    connection.close()
    return answer


@pytest.fixture(scope="module")
def journaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """A scripted server with the journal on, a distinctive key, the access log and debug logging."""
    folder = tmp_path_factory.mktemp("secrets")
    (folder / "script.yaml").write_text(
        "fallback: echo\nrules:\n  - name: refuse\n    match: {user_text: refuse}\n"
        "    reply: {error: {status: 429, type: rate_limit_error, message: Slow down}}\n"
    )
    env = {
        "UNDERSTUDY_BACKEND": "scripted",
        "UNDERSTUDY_SCRIPT": str(folder / "script.yaml"),
        "UNDERSTUDY_STATE_FILE": str(folder / "state.sqlite3"),
        "UNDERSTUDY_API_KEYS": f"{SECRET},another-{SECRET}",
        "UNDERSTUDY_ADMIN_KEY": ADMIN,
    }
    server = ServerProcess(env, workers=2, extra_args=["--access-logfile", "-", "--log-level", "debug"])
    with server:
        yield server, folder


def test_keys_never_reach_the_log_or_the_journal(journaled):
    server, folder = journaled
    version = {"anthropic-version": "2023-06-01"}
    for key in (SECRET, WRONG):
        for auth in ({"x-api-key": key}, {"authorization": f"Bearer {key}"}):
            headers = {**auth, **version}
            request(server.port, "POST", "/v1/messages", message_body("hello"), headers)
            request(server.port, "POST", "/v1/messages", message_body("refuse"), headers)
            request(server.port, "POST", "/v1/messages", message_body("hello", stream=True), headers)
            request(server.port, "POST", "/v1/messages", {"model": "m"}, headers)
            request(server.port, "POST", "/v1/messages/count_tokens", message_body("hello"), headers)
            request(server.port, "GET", "/v1/models/claude-nothing", None, headers)
            request(server.port, "GET", "/v1/models?limit=2", None, headers)
    with anthropic.Anthropic(base_url=server.base_url, api_key=SECRET, max_retries=0) as sdk:
        sdk.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "sdk"}])
    for admin in (ADMIN, WRONG_ADMIN):
        request(server.port, "GET", "/_understudy/requests", None, {"x-understudy-admin-key": admin})

    status, _, journal = request(
        server.port, "GET", "/_understudy/requests?limit=1000", None, {"x-understudy-admin-key": ADMIN}
    )
    entries = json.loads(journal)["data"]
    assert status == 200 and len(entries) == 2 * 2 * 7 + 1
    assert {entry["headers"].get("x-api-key", entry["headers"].get("authorization")) for entry in entries} == {
        "[masked]"
    }
    assert {entry["status"] for entry in entries} >= {200, 400, 401, 404, 429}
    time.sleep(0.5)  # for the log to be read
    stored = b"".join(path.read_bytes() for path in folder.glob("state.sqlite3*"))
    for secret in (SECRET, WRONG, ADMIN, WRONG_ADMIN):
        assert secret not in server.output, f"a key in the server's log: {secret}"
        assert secret.encode() not in journal and secret.encode() not in stored, f"a key in the journal: {secret}"
    assert "POST /v1/messages" in server.output  # the access log was on


def test_admin_routes_are_404_without_an_admin_key(server):
    for method, path in (
        ("GET", "/_understudy/requests"),
        ("DELETE", "/_understudy/requests"),
        ("POST", "/_understudy/reset"),
    ):
        status, headers, body = request(server.port, method, path, None, {"x-understudy-admin-key": "anything"})
        error = json.loads(body)
        assert status == 404 and error["error"]["type"] == "not_found_error", body
        assert error["request_id"] == headers["request-id"]


@pytest.mark.parametrize("headers", [{}, {"x-understudy-admin-key": WRONG_ADMIN}, {"x-api-key": SECRET}])
def test_admin_routes_need_the_admin_key(journaled, headers):
    server, _ = journaled
    for method, path in (
        ("GET", "/_understudy/requests"),
        ("DELETE", "/_understudy/requests"),
        ("POST", "/_understudy/reset"),
    ):
        status, _, body = request(server.port, method, path, None, headers)
        assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error", body


# --------------------------------------------------------------------------------------------- scripts


GOOD_SCRIPT = "- name: good\n  reply: {text: still the good script}\n"


def hostile_scripts(marker: Path) -> list[str]:
    """Scripts that would run a command that creates `marker`, or read another file, if YAML tags were honoured."""
    return [
        f"- reply: !!python/object/apply:os.system ['touch {marker}']\n",
        f"- reply: {{text: !!python/object/apply:subprocess.check_output [[touch, '{marker}']]}}\n",
        f"- reply: !!python/object/new:os.system ['touch {marker}']\n",
        "- reply: !include /etc/hostname\n",
        "- reply: {text: !include /etc/hostname}\n",
    ]


@pytest.mark.parametrize("index", range(5))
def test_a_hostile_script_stops_start_up_and_runs_nothing(tmp_path, index):
    marker = tmp_path / "marker"
    script = tmp_path / "script.yaml"
    script.write_text(hostile_scripts(marker)[index])
    server = ServerProcess({"UNDERSTUDY_BACKEND": "scripted", "UNDERSTUDY_SCRIPT": str(script)})
    with pytest.raises(RuntimeError, match="did not start"):
        server.start()
    assert f"{script}:1:" in server.output
    assert not marker.exists()


def test_a_hostile_edit_is_refused_on_reload_and_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    script = tmp_path / "script.yaml"
    script.write_text(GOOD_SCRIPT)
    env = {"UNDERSTUDY_BACKEND": "scripted", "UNDERSTUDY_SCRIPT": str(script)}
    with ServerProcess(env) as server:
        headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
        hostile_edits = hostile_scripts(marker)[::2]  # code by apply, by new, and an include
        for hostile in hostile_edits:
            script.write_text(hostile)
            time.sleep(1.5)  # the file is watched once a second
            status, _, body = request(server.port, "POST", "/v1/messages", message_body(), headers)
            assert status == 200 and json.loads(body)["content"][0]["text"] == "still the good script"
    assert not marker.exists()
    assert server.output.count("the previous script keeps serving") >= len(hostile_edits)


# ------------------------------------------------------------------------------------------- responses


def test_no_response_names_a_server_version(server):
    key = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    answers = [
        request(server.port, "POST", "/v1/messages", message_body(), key),
        request(server.port, "POST", "/v1/messages", message_body(stream=True), key),
        request(server.port, "POST", "/v1/messages", {}, key),
        request(server.port, "POST", "/v1/messages", message_body(), {}),
        request(server.port, "GET", "/nowhere", None, key),
        request(server.port, "DELETE", "/v1/messages", None, key),
        request(server.port, "GET", "/health"),
        request(server.port, "GET", "/v1/ui/"),
        request(server.port, "POST", "/v1/messages", None, {**key, "content-length": str(10**9)}),
    ]
    for status, headers, _ in answers:
        assert headers.get_all("server") == ["understudy"], (status, headers.get_all("server"))
        for name, value in headers.items():
            assert not re.search(
                r"gunicorn|uvicorn|python|werkzeug|starlette|\d+\.\d+\.\d+", f"{name}: {value}", re.I
            ), (
                status,
                name,
                value,
            )


def test_request_ids_are_unique_across_workers(server):
    assert len(server.worker_pids()) >= 2
    ids: list[str] = []
    lock = threading.Lock()

    def send(count: int) -> None:
        for index in range(count):
            body = message_body(f"request {index}") if index % 3 else {"model": "m"}
            _, headers, _ = request(
                server.port, "POST", "/v1/messages", body, {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
            )
            with lock:
                ids.append(headers["request-id"])

    threads = [threading.Thread(target=send, args=(50,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(ids) == 400 and len(set(ids)) == 400
    assert all(re.fullmatch(r"req_01[0-9A-Za-z]{22}", request_id) for request_id in ids)
    # Which worker accepts each connection is the kernel's choice (one may take them all on a busy
    # machine); ids are random (backends/wire.py), not counted per worker, so they cannot collide either way.
