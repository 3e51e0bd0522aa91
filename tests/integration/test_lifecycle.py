"""A server's life under gunicorn: graceful shutdown on SIGTERM, and a worker killed mid-request.

Graceful shutdown (gunicorn.conf.py's graceful_timeout): on SIGTERM the
listener closes at once, so new connections are refused, while every request
already accepted — a slow stream, a slow whole reply — runs to its end; a
stream that outlives graceful_timeout is cut off when it runs out.

A worker killed with SIGKILL is replaced by gunicorn, and what the workers
share — sequence positions and the journal, in the SQLite state file —
survives it: the next requests carry on the sequence where it was.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import runpy
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.launcher.server_process import ServerProcess

from builders import API_KEY, REPO_ROOT, message_body

HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}

SCRIPT = """
rules:
  - name: slow-stream
    match: {user_text: slow stream}
    reply: {text: "one two three four five six seven eight nine ten"}
    stream: {first_token_ms: 0, chunk_tokens: 1, chunk_delay_ms: 250}
  - name: slow-reply
    match: {user_text: slow reply}
    reply:
      text: late but whole
      fault: {kind: stall, seconds: 2}
  - name: sequence
    replies:
      - {text: first}
      - {text: second}
      - {text: third}
      - {text: fourth}
    when_exhausted: fail
"""


def scripted(folder: Path, **env: str) -> dict[str, str]:
    (folder / "script.yaml").write_text(SCRIPT)
    return {
        "UNDERSTUDY_BACKEND": "scripted",
        "UNDERSTUDY_SCRIPT": str(folder / "script.yaml"),
        "UNDERSTUDY_STATE_FILE": str(folder / "state.sqlite3"),
        "UNDERSTUDY_ADMIN_KEY": "admin",
        **env,
    }


class Stream:
    """A streamed request on its own socket, read in a thread: its events, and whether it ended whole."""

    def __init__(self, server: ServerProcess, text: str = "slow stream") -> None:
        self.events: list[str] = []
        self.started = threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        payload = json.dumps(message_body(text, stream=True)).encode()
        head = "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
        self.sock.sendall(
            f"POST /v1/messages HTTP/1.1\r\nHost: x\r\n{head}content-length: {len(payload)}\r\n\r\n".encode() + payload
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.started.wait(10), "the stream did not start"

    def _read(self) -> None:
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        try:
            for line in response:
                if line.startswith(b"event: "):
                    self.events.append(line[len(b"event: ") :].strip().decode())
                    self.started.set()
        except (OSError, http.client.HTTPException):
            pass  # the connection was cut
        finally:
            self.started.set()
            self.sock.close()

    def finish(self, timeout: float = 30) -> list[str]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stream never ended"
        return self.events


def send(server: ServerProcess, text: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", "/v1/messages", body=json.dumps(message_body(text)), headers=HEADERS)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def booted(server: ServerProcess, workers: int) -> ServerProcess:
    """Wait until every worker listens: a worker still booting when SIGTERM comes ignores it (a gunicorn
    race: it still has the master's signal handlers), and the master then waits out graceful_timeout."""
    deadline = time.monotonic() + 20
    while server.output.count("ASGI server listening") < workers:
        assert time.monotonic() < deadline, server.output
        time.sleep(0.05)
    return server


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_graceful_timeout_is_set_and_explained():
    settings = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))
    assert settings["graceful_timeout"] == 30 and settings["keepalive"] == 2
    text = (REPO_ROOT / "gunicorn.conf.py").read_text()
    assert "On SIGTERM" in text and "graceful_timeout = 30" in text


def test_the_port_is_held_from_the_start_and_let_go_at_the_end():
    """A ServerProcess binds its port when it is made, and gunicorn inherits the socket: no other process (a test
    running beside this one, a client's own port) can take the port before the server listens on it, and once the
    server has stopped nothing holds it open."""
    server = ServerProcess()
    with socket.socket() as rival, pytest.raises(OSError) as taken:
        rival.bind(("127.0.0.1", server.port))
    assert taken.value.errno == errno.EADDRINUSE
    with server:
        assert send(server, "hello")[0] == 200
    assert refuses_connections(server.port)


def test_sigterm_lets_accepted_requests_finish_and_refuses_new_connections(tmp_path):
    server = booted(ServerProcess(scripted(tmp_path), workers=2).start(), 2)
    try:
        streams = [Stream(server) for _ in range(3)]  # ten events of content, a quarter second apart
        slow: list[tuple[int, dict]] = []
        replying = threading.Thread(target=lambda: slow.append(send(server, "slow reply")))
        replying.start()
        time.sleep(0.3)  # the slow reply is accepted, and stalling

        terminated = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        deadline = terminated + 2
        while not refuses_connections(server.port):
            assert time.monotonic() < deadline, "new connections are still accepted two seconds after SIGTERM"
            time.sleep(0.05)
        refused_after = time.monotonic() - terminated

        for stream in streams:
            events = stream.finish()
            assert events[0] == "message_start" and events[-1] == "message_stop", events
            assert events.count("content_block_delta") == 10
        replying.join(30)
        assert slow == [(200, slow[0][1])] and slow[0][1]["content"][0]["text"] == "late but whole"
        assert server.process.wait(20) == 0
        stopped_after = time.monotonic() - terminated
    finally:
        server.stop()
    assert refused_after < min(2, streams_duration()), "the listener closed only after the streams ended"
    assert stopped_after < 10, f"the server took {stopped_after:.1f} s to stop, not the streams' two or three"
    assert "Traceback" not in server.output


def streams_duration() -> float:
    return 10 * 0.25


def test_a_stream_that_outlives_the_graceful_timeout_is_cut_off(tmp_path):
    server = booted(ServerProcess(scripted(tmp_path), workers=1, extra_args=["--graceful-timeout", "1"]).start(), 1)
    try:
        stream = Stream(server)
        terminated = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        events = stream.finish()
        server.process.wait(20)
        stopped_after = time.monotonic() - terminated
    finally:
        server.stop()
    assert "message_stop" not in events, "the stream was not cut off"
    assert stopped_after < streams_duration() + 1


@pytest.fixture
def crashable(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(scripted(tmp_path), workers=1) as server:
        yield server


def journal(server: ServerProcess) -> list[dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/_understudy/requests?limit=1000", headers={"x-understudy-admin-key": "admin"})
    entries = json.loads(connection.getresponse().read())["data"]
    connection.close()
    return entries


def test_a_worker_killed_mid_request_is_replaced_and_shared_state_survives(crashable):
    server = crashable
    assert [send(server, "go")[1]["content"][0]["text"] for _ in range(2)] == ["first", "second"]
    (worker,) = server.worker_pids()

    stream = Stream(server)  # in flight on the one worker
    os.kill(worker, signal.SIGKILL)
    events = stream.finish()
    assert "message_stop" not in events  # the client saw its connection cut

    deadline = time.monotonic() + 20
    while server.worker_pids() in ([], [worker]) or not server._healthy():
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.1)
    (replacement,) = server.worker_pids()
    assert replacement != worker

    assert [send(server, "go")[1]["content"][0]["text"] for _ in range(2)] == ["third", "fourth"]
    status, error = send(server, "go")
    assert status == 400 and "has used all 4 of its replies" in error["error"]["message"], error
    entries = journal(server)
    assert [entry["rule"] for entry in entries] == ["sequence", "sequence", "slow-stream", *["sequence"] * 3]
    assert [entry["status"] for entry in entries] == [200, 200, 200, 200, 200, 400]
