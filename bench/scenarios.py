"""The benchmark's scenarios: throughput, latency and first events (interleaved across targets), streams, memory.

Each returns plain data for run.py to print and save. Every loop is bounded
in count and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import statistics
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from load import (
    HOST,
    Answer,
    Connection,
    alternating,
    first_events,
    message_request,
    open_load,
    percentile,
    run_wrk,
)
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
    first_event_count: int  # streamed requests to each streaming target per round, for its time to first event
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
    saturation_p99s: list[float] = field(default_factory=list)  # wrk's p99 during the closed-loop run
    first_events: list[float] = field(default_factory=list)  # the round's median time to a stream's first event
    errors: int = 0

    def median(self, name: str) -> float:
        values: list[float] = getattr(self, name)
        return statistics.median(values) if values else float("nan")


def throughput_and_latency(
    wrk: str,
    servers: Sequence[Server],
    settings: Settings,
    progress: Callable[[str], None],
    streaming: Sequence[str] = (),
) -> dict[str, TargetResult]:
    """Rounds of A B C …: in each, every target's closed-loop throughput, then the open-load latency of every target
    that load does not saturate, then the time to first event of the targets named in `streaming`, their requests
    alternated."""
    request = message_request()
    streamers = {server.name: server.port for server in servers if server.name in streaming}
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
            result.saturation_p99s.append(measured.p99)
            result.cpu_per_request.append(cpu / measured.requests if measured.requests else float("nan"))
            result.errors += measured.errors
            progress(f"round {round_number}: {server.name} {measured.rate:,.0f} req/s")
        for server in servers:
            if results[server.name].rates[-1] < settings.latency_rate:
                # Below saturation or not at all: an open load a target cannot keep up with only queues, and the
                # queue outlives the phase (Prism's took a core for some 70 s a round, from the targets after it).
                progress(
                    f"round {round_number}: {server.name} left out of the open load: {settings.latency_rate:g} req/s "
                    "saturates it"
                )
                continue
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
        if streamers:
            times, errors = asyncio.run(asyncio.wait_for(_first_events(streamers, settings.first_event_count), 300))
            for name, measured_times in times.items():
                results[name].first_events.append(statistics.median(measured_times) if measured_times else math.nan)
                results[name].errors += errors[name]
            medians = ", ".join(f"{name} {results[name].first_events[-1] * 1000:.2f}" for name in times)
            progress(f"round {round_number}: first event {medians} ms")
    return results


async def _first_events(ports: dict[str, int], count: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    """The same streamed echo of the README's text to each target in turn: the times to its first event."""
    return await first_events(
        ports,
        message_request(stream=True).raw(),
        count=count,
        whole=lambda answer: b"event: message_stop" in answer.body,
    )


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
    opened: int  # streams the client opened and holds (each read to its first event)
    stopped: str  # why the opening stopped: "reached", or what bounded it
    seconds_to_open: float
    rss_before: list[int]  # each worker's RSS (bytes) before the streams were opened
    rss_held: list[int]  # and while they were all held
    first_event_while_held_p99: float
    reply_while_held_p50: float
    replies_while_held: int  # whole replies answered while the streams were held
    replies_tried: int
    threads_per_worker: list[int]
    errors: int

    @property
    def ratio(self) -> float:
        return self.first_event_p50 / self.response_p50

    @property
    def bytes_per_stream(self) -> float:
        """The workers' RSS growth while holding the streams, divided by the streams they held."""
        held = sum(self.held_per_worker)
        return (sum(self.rss_held) - sum(self.rss_before)) / held if held > 0 else math.nan


#: The held streams' text: some 1.6 MB of events (a 420 KB request), far more than the socket buffers hold, so
#: a stream whose client does not read stays open on the server, as in tests/integration/test_streams.py. Their
#: client announces Ethernet's segment size (MSS 1460, where loopback's is 64 KiB), as a client across a network
#: does: the kernel then grows the server's send buffer to some 0.3-1 MB a stream rather than to 4 MB, and this
#: text, a third of the 6 MB of events it took without, keeps the server waiting at a third of the cost to open.
HELD_TEXT = "stream " * 60_000
CLIENT_MSS = 1460
#: How long one stream may take to open (to its first event), and how many may fail in a row, before the
#: opening stops and the streams held so far are what is reported.
OPEN_TIMEOUT = 10.0
FAILURES_IN_A_ROW = 3
#: Whole replies timed while the streams are held, each within a bound.
REPLIES_WHILE_HELD = 20
REPLY_TIMEOUT = 10.0


def streaming(server: Server, settings: Settings, progress: Callable[[str], None]) -> StreamResult:
    """Time to first event vs. a whole answer (one client, paced); then many streams held open at once."""
    responses, first_events, errors = asyncio.run(asyncio.wait_for(_paired(server.port, settings.stream_pairs), 300))
    progress(f"streams: first event p50 {statistics.median(first_events) * 1000:.2f} ms")
    held = _hold_streams(server, settings.streams_per_worker, progress)
    return StreamResult(
        response_p50=statistics.median(responses),
        first_event_p50=statistics.median(first_events),
        response_p99=percentile(responses, 0.99),
        first_event_p99=percentile(first_events, 0.99),
        held_per_worker=held.per_worker,
        target_per_worker=settings.streams_per_worker,
        opened=held.opened,
        stopped=held.stopped,
        seconds_to_open=held.seconds_to_open,
        rss_before=held.rss_before,
        rss_held=held.rss_held,
        first_event_while_held_p99=percentile(held.first_events, 0.99),
        reply_while_held_p50=statistics.median(held.reply_times) if held.reply_times else math.nan,
        replies_while_held=len(held.reply_times),
        replies_tried=REPLIES_WHILE_HELD,
        threads_per_worker=held.threads,
        errors=errors,
    )


async def _paired(port: int, pairs: int) -> tuple[list[float], list[float], int]:
    """Alternate a whole and a streamed echo of the same text on one connection, 10 ms apart."""
    streamed = message_request(stream=True).raw()

    def whole(raw: bytes, answer: Answer) -> bool:
        return raw is not streamed or b"event: message_stop" in answer.body

    return await alternating(port, message_request().raw(), streamed, pairs=pairs, whole=whole)


@dataclass
class _Held:
    """What holding streams open found."""

    per_worker: list[int]
    opened: int
    stopped: str
    seconds_to_open: float
    rss_before: list[int]
    rss_held: list[int]
    first_events: list[float]
    reply_times: list[float]
    threads: list[int]


def _hold_streams(server: Server, per_worker: int, progress: Callable[[str], None]) -> _Held:
    """Open streams, each read to its first event and then left unread, until every worker holds `per_worker`.

    Bounded: a stream that does not reach its first event within OPEN_TIMEOUT is dropped, and the opening
    stops after FAILURES_IN_A_ROW such failures, at a deadline, or at twice the streams asked for (a worker
    the connections pass by); what the workers held by then is what is reported."""
    time.sleep(2.5)  # idle keep-alive connections from earlier scenarios close (gunicorn's keepalive is 2 s)
    workers = server.worker_pids()
    baseline = {pid: open_sockets(pid) for pid in workers}
    rss_before = [rss_bytes(pid) for pid in workers]
    raw = message_request(HELD_TEXT, stream=True).raw()
    streams: list[socket.socket] = []
    first_events: list[float] = []
    target = per_worker * len(workers)
    cap, began = 2 * target, time.monotonic()
    deadline = began + 60 + 0.15 * target  # some 0.05 s a stream opens in, on 2 cores, while the server keeps up
    held = [0] * len(workers)
    stopped, failures = "reached", 0
    try:
        while min(held) < per_worker:
            if len(streams) >= cap:
                stopped = f"{cap} streams opened"
                break
            if time.monotonic() > deadline:
                stopped = f"deadline ({deadline - began:.0f} s)"
                break
            try:
                sock, first_event = _open_stream(server.port, raw)
            except (OSError, RuntimeError) as error:
                failures += 1
                if failures >= FAILURES_IN_A_ROW:
                    stopped = f"{failures} streams in a row not opened: {error}"
                    break
                continue
            failures = 0
            streams.append(sock)
            first_events.append(first_event)
            if len(streams) % 10 == 0 or len(streams) >= target:
                held = [open_sockets(pid) - baseline[pid] for pid in workers]
            if len(streams) % 200 == 0:
                progress(f"streams: {len(streams)} open, per worker {held}")
        seconds_to_open = time.monotonic() - began
        # Past the keep-alive (2 s): a stream the server finished writing, its connection then idle, is
        # closed by now and not counted as held.
        time.sleep(2.5)
        held = [open_sockets(pid) - baseline[pid] for pid in workers]
        rss_held = [rss_bytes(pid) for pid in workers]
        progress(f"streams: {len(streams)} open in {seconds_to_open:.0f} s, per worker {held} ({stopped})")
        reply_times = asyncio.run(_replies(server.port, REPLIES_WHILE_HELD))
        threads = [thread_count(pid) for pid in workers]
    finally:
        for sock in streams:
            _drop(sock)
    return _Held(held, len(streams), stopped, seconds_to_open, rss_before, rss_held, first_events, reply_times, threads)


def _open_stream(port: int, raw: bytes) -> tuple[socket.socket, float]:
    """A stream read up to its first event; the socket is left open and unread (small receive buffer)."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, CLIENT_MSS)
        sock.settimeout(OPEN_TIMEOUT)
        sock.connect((HOST, port))
        deadline = time.monotonic() + OPEN_TIMEOUT
        sent = time.perf_counter()
        sock.sendall(raw)
        received = b""
        while b"event: message_start" not in received:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("the server closed a stream before its first event")
            received += chunk
        if not received.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"a stream was refused: {received[:200]!r}")
    except BaseException:
        _drop(sock)
        raise
    return sock, time.perf_counter() - sent


def _drop(sock: socket.socket) -> None:
    """Close abruptly (RST), as a client that is killed does."""
    with contextlib.suppress(OSError):  # never connected
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _replies(port: int, count: int) -> list[float]:
    """Times of whole answers, each on a fresh connection, while the streams are held (a reply that does not
    come within REPLY_TIMEOUT, or is not 200, is left out: the count of times says how many were served)."""
    raw = message_request().raw()
    times = []
    for _ in range(count):
        try:
            connection = await asyncio.wait_for(Connection.open(port), REPLY_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            continue
        try:
            sent = time.perf_counter()
            answer = await asyncio.wait_for(connection.exchange(raw), REPLY_TIMEOUT)
            if answer.status == 200:
                times.append(answer.done_at - sent)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            await connection.close()
        await asyncio.sleep(0.01)
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
