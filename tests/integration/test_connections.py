"""Connections under gunicorn: silent and slow clients are let go, and a reload loses no request.

A new connection has UNDERSTUDY_HEADER_TIMEOUT seconds to send its first
request's headers: one that sends nothing is closed, one part-way through
its headers gets a 408 and is closed; after its first request, gunicorn's
keep-alive timer bounds the wait for the next. A reload (SIGHUP) or a stop
(SIGTERM) drains each old worker first: it stops accepting and answers every
request with `Connection: close` for as long as an idle connection may live,
so a client that sends its next request just as the worker stops still gets
its answer. Only a worker killed outright (SIGKILL) loses what it was doing.
"""

from __future__ import annotations

import collections
import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from app.launcher.server_process import ServerProcess

from builders import API_KEY, message_body

HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
BODY = json.dumps(message_body("hello")).encode()


@pytest.fixture(scope="module")
def impatient() -> Iterator[ServerProcess]:
    """Two workers that give a new connection one second for its headers."""
    with ServerProcess({"UNDERSTUDY_HEADER_TIMEOUT": "1"}, workers=2) as running:
        yield running


def _closed_by_server(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before closing `sock`, or None if it is still open at `deadline`."""
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


def _served(server: ServerProcess) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("POST", "/v1/messages", BODY, HEADERS)
        return connection.getresponse().status == 200
    finally:
        connection.close()


def test_connections_that_send_nothing_are_closed_and_others_are_served_meanwhile(impatient):
    silent = [socket.create_connection(("127.0.0.1", impatient.port)) for _ in range(60)]
    try:
        assert _served(impatient)
        deadline = time.monotonic() + 15
        answers = [_closed_by_server(sock, deadline) for sock in silent]
    finally:
        for sock in silent:
            sock.close()
    assert answers == [b""] * len(silent)  # each closed, with nothing said: it had asked nothing
    assert _served(impatient)


def test_headers_sent_a_byte_at_a_time_get_a_408_and_the_connection_closes(impatient):
    head = b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: " + API_KEY.encode()
    with socket.create_connection(("127.0.0.1", impatient.port)) as sock:
        sent = 0
        deadline = time.monotonic() + 15
        sock.settimeout(0.3)
        answer = b""
        while time.monotonic() < deadline and sent < len(head):
            sock.sendall(head[sent : sent + 1])
            sent += 1
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        answer += _closed_by_server(sock, deadline) or b""
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", answer[:300]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["type"] == "error" and body["error"]["type"] == "timeout_error"
    assert b"connection: close" in rest.lower()


def test_reloads_lose_no_request_of_keep_alive_clients():
    """Eight clients on kept-alive connections while the server reloads three times: every request answered."""
    failures: collections.Counter[str] = collections.Counter()
    answered = [0] * 8
    stop = threading.Event()

    def client(number: int) -> None:
        connection: http.client.HTTPConnection | None = None
        while not stop.is_set():
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                connection.request("POST", "/v1/messages", BODY, HEADERS)
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    answered[number] += 1
                else:
                    failures[f"status {response.status}"] += 1
                if response.getheader("connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                failures[type(error).__name__] += 1
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()

    # An idle kept-alive connection is closed after `keepalive` seconds, drain or not, and a client that sends
    # just then loses its request: that race is HTTP/1.1's own. A long keep-alive keeps it out of this test,
    # where a client thread on a loaded machine may wait a second or two for the CPU between two requests.
    with ServerProcess({"UNDERSTUDY_JOURNAL": "0"}, workers=2, extra_args=["--keep-alive", "10"]) as server:
        clients = [threading.Thread(target=client, args=(number,)) for number in range(8)]
        for thread in clients:
            thread.start()
        try:
            for _ in range(3):
                time.sleep(3)
                before = set(server.worker_pids())
                server.process.send_signal(signal.SIGHUP)
                _wait_for_new_workers(server, before)
            time.sleep(1)
        finally:
            stop.set()
            for thread in clients:
                thread.join()
    assert not failures, dict(failures)
    assert all(answered), answered


def _wait_for_new_workers(server: ServerProcess, before: set[int]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = set(server.worker_pids())
        if len(now) == 2 and not now & before:
            return
        time.sleep(0.1)
    raise AssertionError(f"the workers were not replaced: {before} -> {server.worker_pids()}")
