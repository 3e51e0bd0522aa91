"""Load generators: wrk for closed-loop throughput, and a small asyncio client for everything timed.

Throughput is taken closed-loop with wrk (each connection sends its next
request as soon as the last answer arrives). Latency is taken under an OPEN
load below saturation: each client sends on a fixed schedule, so requests are
spread out in time, and a late answer is charged from when its request was
due — closed-loop latency at saturation would measure queueing, not the server.
Every loop here is bounded in count and time, and all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
API_KEY = "bench-key"


@dataclass(frozen=True)
class Request:
    """One HTTP request, as wrk and the asyncio client send it."""

    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    def raw(self) -> bytes:
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: {HOST}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        head += f"content-length: {len(self.body)}\r\n\r\n"
        return head.encode() + self.body

    def wrk_script(self) -> str:
        """A wrk Lua script that sends this request and prints a JSON summary line at the end."""
        lines = [f"wrk.method = {_lua_string(self.method)}", f"wrk.body = {_lua_string(self.body.decode())}"]
        lines += [f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}" for name, value in self.headers]
        lines.append(WRK_SUMMARY)
        return "\n".join(lines) + "\n"


def message_request(text: str = "Hello, Claude", *, stream: bool = False) -> Request:
    """POST /v1/messages with the README's example body (streamed when asked)."""
    body: dict = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": text}]}
    if stream:
        # A long text streamed as far as the API allows: a model with a window for it, the most output it gives.
        body |= {"stream": True, "model": "claude-opus-5-5", "max_tokens": 128_000}
    headers = (("content-type", "application/json"), ("x-api-key", API_KEY), ("anthropic-version", "2023-06-01"))
    return Request("POST", "/v1/messages", json.dumps(body, separators=(",", ":")).encode(), headers)


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for this text


#: wrk's own latency histogram (what `wrk --latency` prints) gives the p99 at saturation, in microseconds.
WRK_SUMMARY = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_SUMMARY {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    errors: int  # socket errors, timeouts and non-2xx/3xx answers
    p50: float = float("nan")  # seconds, from wrk's latency histogram: at saturation, so mostly queueing
    p99: float = float("nan")

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(wrk: str, port: int, request: Request, *, connections: int, seconds: float) -> WrkResult:
    """Closed-loop load for `seconds`: `connections` keep-alive connections on one wrk thread."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(request.wrk_script())
    try:
        command = [
            wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", script.name, f"http://{HOST}:{port}{request.path}",
        ]  # fmt: skip
        # One thread: wrk shares the machine's cores with the servers it measures, and one thread
        # drives tens of thousands of requests a second, far beyond what any target here serves.
        output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        Path(script.name).unlink()
    summary = json.loads(next(line for line in output.splitlines() if line.startswith("WRK_SUMMARY "))[12:])
    errors = sum(summary[kind] for kind in ("connect", "read", "write", "status", "timeout"))
    p50, p99 = summary["p50_us"] / 1e6, summary["p99_us"] / 1e6
    return WrkResult(summary["requests"], summary["duration_us"] / 1e6, errors, p50, p99)


@dataclass
class Answer:
    """One response as the client saw it, with timings from time.perf_counter()."""

    status: int
    first_data_at: float  # when the first body bytes arrived
    done_at: float
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads its whole answer.

    Like an HTTP client's pool, it sends a request again, once, on a new connection when a kept-alive one
    turns out closed before any of the answer arrived: the server closes a connection that sits idle for its
    keep-alive (gunicorn.conf.py: 2 s), and a client starved of CPU on a loaded machine can sit that long
    between two requests. A fresh connection that closes, or one cut mid-answer, is an error as ever.
    """

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.port = port
        self.reader = reader
        self.writer = writer
        self.answered = 0  # answers read on this connection so far

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(port, *await _connect(port))

    async def exchange(self, raw: bytes) -> Answer:
        try:
            answer = await self._exchange(raw)
        except _ClosedWhileIdle:
            await self.close()
            self.reader, self.writer = await _connect(self.port)
            answer = await self._exchange(raw)
        self.answered += 1
        return answer

    async def _exchange(self, raw: bytes) -> Answer:
        self.writer.write(raw)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError) as closed:
            if self.answered and not getattr(closed, "partial", b""):
                raise _ClosedWhileIdle from closed
            raise
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = (line.partition(":") for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return await self._chunked(status)
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        now = time.perf_counter()
        return Answer(status, now, now, body)

    async def _chunked(self, status: int) -> Answer:
        parts: list[bytes] = []
        first_data_at = 0.0
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return Answer(status, first_data_at, time.perf_counter(), b"".join(parts))
            if not parts:
                first_data_at = time.perf_counter()
            parts.append(chunk[:-2])

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class _ClosedWhileIdle(Exception):
    """A kept-alive connection was found closed before any of the answer to a request sent on it arrived."""


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


@dataclass
class OpenLoadResult:
    """Latencies (seconds) of the answers that came back under an open load, and what went wrong."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0  # answers that failed or were not 2xx, and requests never sent (see `unsent`)
    unsent: int = 0  # requests still waiting to be sent OVERRUN seconds after the load's end: a server far
    # below the offered rate (Prism) would otherwise hold the run for minutes


async def _client(port: int, raw: bytes, *, start: float, interval: float, count: int, result: OpenLoadResult) -> None:
    connection = await Connection.open(port)
    busy_until = 0.0
    try:
        for n in range(count):
            due = start + n * interval
            if time.perf_counter() > start + count * interval + OVERRUN:
                result.unsent += count - n
                result.errors += count - n
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            sent = time.perf_counter()
            # A request held back by the previous, late answer is charged from when it was due
            # (no coordinated omission); one sent on time is charged from when it left.
            began = due if busy_until > due else sent
            try:
                answer = await asyncio.wait_for(connection.exchange(raw), timeout=10)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                result.errors += 1
                await connection.close()
                connection = await Connection.open(port)
                continue
            busy_until = answer.done_at
            if 200 <= answer.status < 300:
                result.latencies.append(answer.done_at - began)
            else:
                result.errors += 1
    finally:
        await connection.close()


#: How long past its last request's due time an open load goes on sending what it could not send in time.
OVERRUN = 20.0


def open_load(port: int, request: Request, *, clients: int, rate: float, seconds: float) -> OpenLoadResult:
    """`clients` connections sending `rate` requests a second in all, evenly staggered, for `seconds`."""
    interval = clients / rate  # each client's gap between requests
    count = max(1, int(seconds / interval))
    result = OpenLoadResult()

    async def run() -> None:
        start = time.perf_counter() + 0.2  # time for every client to connect first
        await asyncio.gather(
            *(
                _client(port, request.raw(), start=start + i * interval / clients, interval=interval, count=count,
                        result=result)
                for i in range(clients)
            )
        )  # fmt: skip

    asyncio.run(asyncio.wait_for(run(), timeout=seconds + OVERRUN + 60))
    return result


async def alternating(
    port: int, first: bytes, second: bytes, *, pairs: int, whole: Callable[[bytes, Answer], bool]
) -> tuple[list[float], list[float], int]:
    """Send `first` and `second` in turn on one connection, 10 ms apart, `pairs` times after five to warm up: the
    time to each one's first body bytes, and how many answers were not 200 or not `whole`."""
    times: tuple[list[float], list[float]] = ([], [])
    errors = 0
    connection = await Connection.open(port)
    try:
        for n in range(pairs + 5):
            for raw, measured in ((first, times[0]), (second, times[1])):
                await asyncio.sleep(0.01)
                sent = time.perf_counter()
                answer = await connection.exchange(raw)
                if answer.status != 200 or not whole(raw, answer):
                    errors += 1
                elif n >= 5:
                    measured.append(answer.first_data_at - sent)
    finally:
        await connection.close()
    return times[0], times[1], errors


async def first_events(
    ports: dict[str, int], raw: bytes, *, count: int, whole: Callable[[Answer], bool]
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Send the same streamed request to each target in turn, one keep-alive connection each, 10 ms apart,
    `count` times after five to warm up (the order rotated each time, so none always goes first): each
    target's times to the first body bytes (its first event), and how many answers were not 200 or not `whole`."""
    times: dict[str, list[float]] = {name: [] for name in ports}
    errors = dict.fromkeys(ports, 0)
    connections = {name: await Connection.open(port) for name, port in ports.items()}
    names = list(ports)
    try:
        for n in range(count + 5):
            for name in names[n % len(names) :] + names[: n % len(names)]:
                await asyncio.sleep(0.01)
                sent = time.perf_counter()
                try:
                    answer = await asyncio.wait_for(connections[name].exchange(raw), timeout=10)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                    errors[name] += 1
                    await connections[name].close()
                    connections[name] = await Connection.open(ports[name])
                    continue
                if answer.status != 200 or not whole(answer):
                    errors[name] += 1
                elif n >= 5:
                    times[name].append(answer.first_data_at - sent)
    finally:
        for connection in connections.values():
            await connection.close()
    return times, errors


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile of `values` (nearest rank); NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]
