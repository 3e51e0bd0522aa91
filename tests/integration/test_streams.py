"""Open and dropped streams under gunicorn: a worker holds 100+ streams, and dropped clients leave nothing behind.

The server here runs one worker with a pool of only four handler threads, so
any stream that held a thread while its client read — or kept one after its
client left — would exhaust the pool within a few streams.
"""

from __future__ import annotations

import json
import socket
import struct
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.launcher.server_process import ServerProcess

from builders import API_KEY, message_body

THREADS = 4
#: A reply of some 6 MB of events: far more than socket buffers hold, so a client
#: that stops reading leaves the server mid-stream.
LONG_TEXT = "stream " * 150_000


@pytest.fixture(scope="module")
def server():
    with ServerProcess({"UNDERSTUDY_THREADS": str(THREADS)}, workers=1) as running:
        yield running


def worker_threads(server: ServerProcess) -> int:
    (pid,) = server.worker_pids()
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def request_bytes(body: dict) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"x-api-key: {API_KEY}\r\nanthropic-version: 2023-06-01\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def open_stream(server: ServerProcess, text: str = LONG_TEXT) -> socket.socket:
    """Start a stream and read until its first event arrives; the socket stays open, unread."""
    return start_stream(server, text)[0]


def start_stream(server: ServerProcess, text: str) -> tuple[socket.socket, bytes]:
    """Start a stream and read until its first event arrives: the socket, and what it has read so far."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    # A model with a window for the long text and a reply as long as the API allows (128,000 tokens).
    sock.sendall(request_bytes(message_body(text, model="claude-opus-5-5", stream=True, max_tokens=128_000)))
    received = b""
    while b"event: message_start" not in received:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the stream before its first event"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return sock, received


def drop(sock: socket.socket) -> None:
    """Close abruptly (RST), as a client that crashes or is killed does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_whole_stream(server: ServerProcess, text: str) -> str:
    # A short stream may come whole in the reads up to its first event (on a busy machine, say).
    sock, received = start_stream(server, text)
    while not received.endswith(b"0\r\n\r\n"):  # the last chunk of a chunked response
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    sock.close()
    return received.decode()


def quick_message(server: ServerProcess) -> dict:
    request = urllib.request.Request(
        f"{server.base_url}/v1/messages",
        data=json.dumps(message_body("still here?")).encode(),
        headers={"content-type": "application/json", "x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.load(response)


def test_one_worker_holds_over_100_open_streams(server):
    streams = [open_stream(server) for _ in range(110)]  # each got its first event while the others stayed open
    try:
        assert quick_message(server)["content"][0]["text"] == "still here?"
        assert worker_threads(server) <= 16
    finally:
        for sock in streams:
            drop(sock)


def test_dropped_streams_leave_the_worker_serving(server):
    with ThreadPoolExecutor(max_workers=50) as clients:
        for sock in clients.map(lambda _: open_stream(server), range(50)):
            drop(sock)
    assert quick_message(server)["content"][0]["text"] == "still here?"
    with ThreadPoolExecutor(max_workers=20) as clients:
        replies = list(clients.map(lambda n: read_whole_stream(server, f"complete stream {n}"), range(20)))
    assert all("event: message_stop" in reply for reply in replies)
    assert worker_threads(server) <= 16
