"""The benchmark's scenarios: throughput and latency (interleaved across targets), streams, memory.

Each returns plain data for run.py to print and save. Every loop is bounded
in count and in time.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from load import HOST, Answer, Connection, alternating, message_request, open_load, percentile, run_wrk
from servers import Server, open_sockets, rss_bytes, thread_count


@dataclass
class Settings:
    """How long and how hard each scenario runs (run.py has a full and a --quick set)."""

    rounds: int
    wrk_seconds: float
    warmup_seconds: float
    connections: int
    latency_seconds: float
    latency_clients: int
    latency_rate: float
    stream_pairs: int
    streams_per_worker: int
    memory_requests: int
    memory_chunk_seconds: float


# ---------------------------------------------------------------- throughput and latency


@dataclass
class TargetResult:
    """One target's measurements, one entry per round."""

    rates: list[float] = field(default_factory=list)
    cpu_per_request: list[float] = field(default_factory=list)  # seconds of server CPU per request
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    errors: int = 0

    def median(self, name: str) -> float:
        values: list[float] = getattr(self, name)
        return statistics.median(values) if values else float("nan")


def throughput_and_latency(
    wrk: str, servers: Sequence[Server], settings: Settings, progress: Callable[[str], None]
) -> dict[str, TargetResult]:
    """Rounds of A B C …: in each, every target's closed-loop throughput, then every target's open-load latency."""
    request = message_request()
    results = {server.name: TargetResult() for server in servers}
    for server in servers:
        run_wrk(wrk, server.port, request, connections=settings.connections, seconds=settings.warmup_seconds)
    for round_number in range(1, settings.rounds + 1):
        for server in servers:
            cpu_before = server.cpu_seconds()
            measured = run_wrk(
                wrk, server.port, request, connections=settings.connections, seconds=settings.wrk_seconds
            )
            cpu = server.cpu_seconds() - cpu_before
            result = results[server.name]
            result.rates.append(measured.rate)
            result.cpu_per_request.append(cpu / measured.requests if measured.requests else float("nan"))
            result.errors += measured.errors
            progress(f"round {round_number}: {server.name} {measured.rate:,.0f} req/s")
        for server in servers:
            time.sleep(0.5)  # let the last wrk connections close
            load = open_load(
                server.port,
                request,
                clients=settings.latency_clients,
                rate=settings.latency_rate,
                seconds=settings.latency_seconds,
            )
            result = results[server.name]
            result.p50s.append(percentile(load.latencies, 0.50))
            result.p99s.append(percentile(load.latencies, 0.99))
            result.errors += load.errors
            progress(f"round {round_number}: {server.name} p99 {result.p99s[-1] * 1000:.2f} ms")
    return results


# ---------------------------------------------------------------- streams


@dataclass
class StreamResult:
    """Time to first event against a whole answer's time, and how many streams the workers held at once."""

    response_p50: float
    first_event_p50: float
    response_p99: float
    first_event_p99: float
    held_per_worker: list[int]
    target_per_worker: int
    first_event_while_held_p99: float
    reply_while_held_p50: float
    threads_per_worker: list[int]
    errors: int

    @property
    def ratio(self) -> float:
        return self.first_event_p50 / self.response_p50


#: Some 6 MB of events: far more than socket buffers hold, so a stream whose client does
#: not read stays open on the server, as in tests/integration/test_streams.py.
LONG_TEXT = "stream " * 150_000


def streaming(server: Server, settings: Settings, progress: Callable[[str], None]) -> StreamResult:
    """Time to first event vs. a whole answer (one client, paced); then many streams held open at once."""
    responses, first_events, errors = asyncio.run(asyncio.wait_for(_paired(server.port, settings.stream_pairs), 300))
    progress(f"streams: first event p50 {statistics.median(first_events) * 1000:.2f} ms")
    held, held_first_events, reply_times, threads = _hold_streams(server, settings.streams_per_worker, progress)
    return StreamResult(
        response_p50=statistics.median(responses),
        first_event_p50=statistics.median(first_events),
        response_p99=percentile(responses, 0.99),
        first_event_p99=percentile(first_events, 0.99),
        held_per_worker=held,
        target_per_worker=settings.streams_per_worker,
        first_event_while_held_p99=percentile(held_first_events, 0.99),
        reply_while_held_p50=statistics.median(reply_times) if reply_times else float("nan"),
        threads_per_worker=threads,
        errors=errors,
    )


async def _paired(port: int, pairs: int) -> tuple[list[float], list[float], int]:
    """Alternate a whole and a streamed echo of the same text on one connection, 10 ms apart."""
    streamed = message_request(stream=True).raw()

    def whole(raw: bytes, answer: Answer) -> bool:
        return raw is not streamed or b"event: message_stop" in answer.body

    return await alternating(port, message_request().raw(), streamed, pairs=pairs, whole=whole)


def _hold_streams(
    server: Server, per_worker: int, progress: Callable[[str], None]
) -> tuple[list[int], list[float], list[float], list[int]]:
    """Open streams, each read to its first event and then left unread, until every worker holds `per_worker`."""
    time.sleep(2.5)  # idle keep-alive connections from earlier scenarios close (gunicorn's keepalive is 2 s)
    workers = server.worker_pids()
    baseline = {pid: open_sockets(pid) for pid in workers}
    raw = message_request(LONG_TEXT, stream=True).raw()
    streams: list[socket.socket] = []
    first_events: list[float] = []
    cap, deadline = 3 * per_worker * len(workers), time.monotonic() + 300
    held = [0] * len(workers)
    try:
        while min(held) < per_worker and len(streams) < cap and time.monotonic() < deadline:
            sock, first_event = _open_stream(server.port, raw)
            streams.append(sock)
            first_events.append(first_event)
            if len(streams) % 10 == 0 or len(streams) >= per_worker * len(workers):
                held = [open_sockets(pid) - baseline[pid] for pid in workers]
        held = [open_sockets(pid) - baseline[pid] for pid in workers]
        progress(f"streams: {len(streams)} open, per worker {held}")
        reply_times = asyncio.run(asyncio.wait_for(_replies(server.port, 20), 60))
        threads = [thread_count(pid) for pid in workers]
    finally:
        for sock in streams:
            _drop(sock)
    return held, first_events, reply_times, threads


def _open_stream(port: int, raw: bytes) -> tuple[socket.socket, float]:
    """A stream read up to its first event; the socket is left open and unread (small receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(30)
    sock.connect((HOST, port))
    sent = time.perf_counter()
    sock.sendall(raw)
    received = b""
    while b"event: message_start" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("the server closed a stream before its first event")
        received += chunk
    if not received.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"a stream was refused: {received[:200]!r}")
    return sock, time.perf_counter() - sent


def _drop(sock: socket.socket) -> None:
    """Close abruptly (RST), as a client that is killed does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _replies(port: int, count: int) -> list[float]:
    """Times of whole answers on a fresh connection, while the streams are held."""
    raw = message_request().raw()
    connection = await Connection.open(port)
    times = []
    try:
        for _ in range(count):
            sent = time.perf_counter()
            answer = await connection.exchange(raw)
            if answer.status == 200:
                times.append(answer.done_at - sent)
            await asyncio.sleep(0.01)
    finally:
        await connection.close()
    return times


# ---------------------------------------------------------------- memory


@dataclass
class MemoryResult:
    """Each worker's RSS (bytes) after a warm-up and after every chunk of requests."""

    requests: int
    checkpoints: list[int]  # requests served at each sample
    rss: dict[int, list[int]]  # worker pid -> RSS at each checkpoint
    errors: int

    def change(self, pid: int) -> float:
        """The relative change of one worker's RSS from the first sample to the last."""
        samples = self.rss[pid]
        return (samples[-1] - samples[0]) / samples[0]


def memory(wrk: str, server: Server, settings: Settings, progress: Callable[[str], None]) -> MemoryResult:
    """Worker RSS before and after `settings.memory_requests` echo requests, sampled along the way."""
    request = message_request()
    run_wrk(wrk, server.port, request, connections=settings.connections, seconds=settings.warmup_seconds)
    workers = server.worker_pids()
    checkpoints = [0]
    rss = {pid: [rss_bytes(pid)] for pid in workers}
    served = errors = 0
    deadline = time.monotonic() + max(600.0, settings.memory_requests / 100)
    while served < settings.memory_requests and time.monotonic() < deadline:
        measured = run_wrk(
            wrk, server.port, request, connections=settings.connections, seconds=settings.memory_chunk_seconds
        )
        served += measured.requests
        errors += measured.errors
        checkpoints.append(served)
        for pid in workers:
            rss[pid].append(rss_bytes(pid))
        progress(f"memory: {served:,} requests, RSS {[round(rss[pid][-1] / 2**20, 1) for pid in workers]} MiB")
    return MemoryResult(served, checkpoints, rss, errors)
