"""Memory soak at the size limits: `python bench/memory_soak.py` (`--minutes N`, default 3; `--quick` for a smoke).

Its one job: tell whether one worker's resident memory comes back after
minutes of the largest requests the server accepts. One Understudy worker
(gunicorn, the echo backend, 127.0.0.1 only; its state file and files in a
temporary directory, removed afterwards) goes through three phases, each for
an equal share of the run and each variant at least once:

1. **batch creates at the size limit**: POST /v1/messages/batches with a body
   just under UNDERSTUDY_MAX_BATCH_BYTES (256 MiB), `--batch-requests`
   requests (default 10,000) of one long text each; sent with a
   Content-Length and chunked in turn, each batch waited for until it ends,
   then deleted;
2. **uploads at the size limit**: POST /v1/files with a file of
   UNDERSTUDY_MAX_FILE_BYTES (500 MiB, the largest accepted), with a
   Content-Length and chunked in turn, each deleted afterwards;
3. **concurrent streams**: `--streams` clients (default 100), each sending
   `stream: true` messages one after another on its connection, every event
   read.

`--phases uploads,streams,batches` runs some of them, in another order;
`--repo DIR` measures another checkout (the code before a change). The
client never holds a body whole: the batch is generated a MiB at a time and
the file sent from one 1 MiB buffer (bench/uploads.py).

The worker's RSS (/proc/<pid>/status) is read after a warm-up (small
requests of each kind, one stream from each of the stream phase's clients,
a small read of the state store from each handler thread those made, since
each thread's SQLite connection is a one-time cost, and, unless `--cold`, one
round of the largest batches, whose first use grows a few allocator arenas
and SQLite's WAL index once): the start; every 50 ms during each phase: its peak, overall and
per variant; and after each phase: after a 2 s pause (settled), then again
after a few small requests of each kind and 2 s more (the end). It prints a
table of start, peak, settled and end per phase, with the end as a multiple
of the run's start and of the phase's own start (within 10%: at most
1.1×; memory given back below the start is no fault), and saves the figures
as JSON in bench/results/. Memory is measured, not asserted: the exit status is
0 whatever the figures (3 when the temporary directory's disk has too little
room to run).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.client
import itertools
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import batches
import load
import servers
import uploads

RESULTS = servers.BENCH / "results"
SAMPLE_EVERY = 0.05
SETTLE_SECONDS = 2.0
#: How far under the batch limit the create body stays: "just under", whatever the request count.
BATCH_MARGIN = 4096
#: Each batch request's answer is cut short: the phase is about the create body, not about big results.
BATCH_MAX_TOKENS = 16
BATCH_TIMEOUT = 600.0
POLL_SECONDS = 0.5
STREAM_TIMEOUT = 60.0
#: Some 500 words: a stream of about 140 events, 20 KB.
STREAM_TEXT = " ".join(["lorem ipsum dolor sit amet"] * 100)
#: A 256 MB batch and its WAL in the state file, a 500 MiB file, and room to spare.
DISK_NEEDED = 2 * 2**30
#: A phase gives its memory back when its end is at most 10% above the start (lower is no fault).
BOUND = 0.10
EXIT_CANNOT_RUN = 3
#: The phases, by their --phases names.
PHASES = {"batches": "batch creates", "uploads": "uploads", "streams": "concurrent streams"}
#: A phase's work: given the port and its deadline, it does its rounds and says what it did.
Work = Callable[[int, float], dict[str, Any]]


@dataclass
class PhaseResult:
    """One phase's RSS figures (bytes) and what it did."""

    name: str
    rss_start: int = 0
    rss_peak: int = 0
    rss_settled: int = 0
    rss_end: int = 0
    seconds: float = 0.0
    work: dict[str, Any] = field(default_factory=dict)
    worker_pids: list[int] = field(default_factory=list)
    rss_mib_by_second: list[tuple[float, float]] = field(default_factory=list)


class RssSampler:
    """The worker's RSS, read every 50 ms on a thread of its own while the `with` block runs, with the time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.timeline: list[tuple[float, int]] = [(time.monotonic(), servers.rss_bytes(pid))]
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def peak(self, began: float = 0.0, ended: float = float("inf")) -> int:
        """The highest RSS read between two times (monotonic clock): by default, the whole time."""
        return max((rss for at, rss in self.timeline if began <= at <= ended), default=0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                self.timeline.append((time.monotonic(), servers.rss_bytes(self.pid)))
            except OSError:  # the worker is gone (killed, restarted): reported from the pids after the phase
                return
            self._done.wait(SAMPLE_EVERY)


# ---------------------------------------------------------------- batch creates


def batch_item_head(n: int) -> bytes:
    # Fixed width, so every item has the same length and the body's length is known before it is made.
    return b'{"custom_id":"r-%07d","params":' % n


def batch_params(text: str) -> bytes:
    message = {"role": "user", "content": text}
    params = {"model": "claude-sonnet-4-5", "max_tokens": BATCH_MAX_TOKENS, "messages": [message]}
    return json.dumps(params, separators=(",", ":")).encode()


def batch_body_size(requests: int, params_size: int) -> int:
    """The create body's length: `{"requests":[` items separated by commas `]}`."""
    item = len(batch_item_head(0)) + params_size + 1
    return len(b'{"requests":[') + requests * item + (requests - 1) + len(b"]}")


def batch_params_at_limit(limit: int, requests: int) -> bytes:
    """One request's params, its text long enough that `requests` of them make a body just under `limit`."""
    empty = len(batch_params(""))
    room = (limit - BATCH_MARGIN - batch_body_size(requests, empty)) // requests
    if room < 1:
        raise SystemExit(f"memory_soak: {requests:,} requests do not fit in {limit:,} bytes")
    # ASCII words, so the text's JSON is as long as the text; some 5 bytes a token, far below any prompt limit.
    return batch_params(("lorem ipsum dolor sit amet " * (room // 27 + 1))[:room])


def batch_pieces(requests: int, params: bytes) -> Iterator[bytes]:
    """The create body, a MiB or so at a time, so that the client holds one piece of it, never the whole."""
    piece = bytearray(b'{"requests":[')
    for n in range(requests):
        if n:
            piece += b","
        piece += batch_item_head(n) + params + b"}"
        if len(piece) >= 2**20:
            yield bytes(piece)
            piece.clear()
    yield bytes(piece + b"]}")


def create_batch(port: int, requests: int, params: bytes, *, chunked: bool) -> tuple[int, Any, float]:
    """One create call, the body streamed; its status, its answer and the seconds it took."""
    headers = dict(batches.HEADERS)
    if not chunked:  # without a Content-Length, http.client sends an iterable body chunked
        headers["content-length"] = str(batch_body_size(requests, len(params)))
    connection = http.client.HTTPConnection(load.HOST, port, timeout=BATCH_TIMEOUT)
    started = time.monotonic()
    try:
        connection.request("POST", "/v1/messages/batches", body=batch_pieces(requests, params), headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null"), time.monotonic() - started
    finally:
        connection.close()


def wait_and_delete(port: int, batch_id: str) -> dict[str, Any]:
    """Poll a batch until it ends (bounded), then delete it, so that the state file does not keep it."""
    path = f"/v1/messages/batches/{batch_id}"
    deadline = time.monotonic() + BATCH_TIMEOUT
    batch = batches.call(port, "GET", path)
    while batch["processing_status"] != "ended" and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        batch = batches.call(port, "GET", path)
    if batch["processing_status"] == "ended":
        batches.call(port, "DELETE", path)
    return batch["request_counts"]


def batch_phase(port: int, deadline: float, requests: int, limit: int) -> dict[str, Any]:
    params = batch_params_at_limit(limit, requests)
    size = batch_body_size(requests, len(params))
    rounds: list[dict[str, Any]] = []
    for chunked in variants(deadline):
        began = time.monotonic()
        status, answer, seconds = create_batch(port, requests, params, chunked=chunked)
        outcome: dict[str, Any] = {"chunked": chunked, "status": status, "create_seconds": round(seconds, 2)}
        outcome["windows"] = {"create": (began, began + seconds)}
        if status == 200:
            started = time.monotonic()
            outcome["request_counts"] = wait_and_delete(port, answer["id"])
            outcome["processing_seconds"] = round(time.monotonic() - started, 1)
            outcome["windows"]["until ended"] = (started, time.monotonic())
        else:
            outcome["answer"] = answer
        rounds.append(outcome)
    summary = (
        f"{len(rounds)} batches of {requests:,} requests, {size:,} bytes (limit {limit:,}): {sent(rounds)}; "
        f"create {span(r['create_seconds'] for r in rounds)} s, until ended "
        f"{span(r['processing_seconds'] for r in rounds if 'processing_seconds' in r)} s"
    )
    return {"summary": summary, "body_bytes": size, "limit_bytes": limit, "rounds": rounds}


def variants(deadline: float) -> Iterator[bool]:
    """Content-Length, chunked, and again, until the deadline: each variant at least once."""
    for n in itertools.count():
        if n >= 2 and time.monotonic() >= deadline:
            return
        yield n % 2 == 1


# ---------------------------------------------------------------- uploads


def upload_phase(port: int, deadline: float, limit: int) -> dict[str, Any]:
    megabytes = limit // 2**20  # the file limit itself: the largest file accepted
    rounds = []
    for chunked in variants(deadline):
        began = time.monotonic()
        status, seconds, answer = uploads.upload(port, megabytes, chunked=chunked)
        window = {"upload": (began, began + seconds)}
        uploads.delete(port, answer)
        rounds.append({"chunked": chunked, "status": status, "seconds": round(seconds, 1), "windows": window})
    summary = (
        f"{len(rounds)} uploads of {megabytes * 2**20:,} bytes (limit {limit:,}): {sent(rounds)}; "
        f"{span(r['seconds'] for r in rounds)} s each"
    )
    return {"summary": summary, "file_bytes": megabytes * 2**20, "limit_bytes": limit, "rounds": rounds}


def sent(rounds: list[dict[str, Any]]) -> str:
    """How many rounds, how many of each variant, and their statuses."""
    chunked = sum(r["chunked"] for r in rounds)
    statuses = sorted({r["status"] for r in rounds})
    return f"{len(rounds) - chunked} with a Content-Length and {chunked} chunked, statuses {statuses}"


def span(values: Iterable[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "n/a"
    return f"{ordered[0]:g}" if ordered[0] == ordered[-1] else f"{ordered[0]:g}–{ordered[-1]:g}"


# ---------------------------------------------------------------- streams


@dataclass
class StreamTally:
    streams: int = 0
    events: int = 0
    unfinished: int = 0  # a 200 stream without message_stop, or another status
    errors: int = 0  # the connection failed or timed out
    durations: list[float] = field(default_factory=list)


async def stream_client(port: int, raw: bytes, deadline: float, tally: StreamTally) -> None:
    """Streams one after another on one connection until the deadline (at least one), every event read."""
    connection = await load.Connection.open(port)
    try:
        for n in itertools.count():
            if n and time.monotonic() >= deadline:
                return
            started = time.perf_counter()
            try:
                answer = await asyncio.wait_for(connection.exchange(raw), STREAM_TIMEOUT)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                tally.errors += 1
                await connection.close()
                connection = await load.Connection.open(port)
                continue
            tally.streams += 1
            tally.events += answer.body.count(b"event: ")
            tally.unfinished += answer.status != 200 or b"event: message_stop" not in answer.body
            tally.durations.append(answer.done_at - started)
    finally:
        await connection.close()


def stream_phase(port: int, deadline: float, clients: int) -> dict[str, Any]:
    tally = StreamTally()
    raw = load.message_request(STREAM_TEXT, stream=True).raw()

    async def run() -> None:
        await asyncio.gather(*(stream_client(port, raw, deadline, tally) for _ in range(clients)))

    asyncio.run(run())
    p50, p99 = (load.percentile(tally.durations, share) * 1e3 for share in (0.5, 0.99))
    return {
        "summary": f"{tally.streams:,} streams by {clients} clients, {tally.events:,} events; "
        f"unfinished {tally.unfinished}, errors {tally.errors}; a stream's time p50 {p50:.0f} ms, p99 {p99:.0f} ms",
        "clients": clients,
        "streams": tally.streams,
        "events": tally.events,
        "unfinished": tally.unfinished,
        "errors": tally.errors,
        "stream_p50_ms": round(p50, 1),
        "stream_p99_ms": round(p99, 1),
    }


# ---------------------------------------------------------------- the run


def small_requests(port: int) -> None:
    """A few small requests of each kind: the warm-up, and what a worker does after a phase before its end is read."""
    batch = batches.call(port, "POST", "/v1/messages/batches", batches.batch_body(3))
    wait_and_delete(port, batch["id"])
    for chunked in (False, True):
        uploads.delete(port, uploads.upload(port, 1, chunked=chunked)[2])
    stream_phase(port, time.monotonic(), clients=10)


def run_phase(server: Any, name: str, start: int, seconds: float, work: Work) -> PhaseResult:
    """One phase: its work under the peak sampler, then the settled and the end readings."""
    (worker,) = server.worker_pids()
    print(f"memory_soak: {name} for {seconds:.0f} s", flush=True)
    result = PhaseResult(name, rss_start=start)
    began = time.monotonic()
    with RssSampler(worker) as sampler:
        result.work = work(server.port, began + seconds)
    result.seconds = round(time.monotonic() - began, 1)
    result.rss_peak = sampler.peak()
    result.work["peaks_mib"] = peaks_by_variant(result.work.get("rounds", []), sampler)
    result.rss_mib_by_second = [(round(at - began, 2), round(rss / 2**20, 1)) for at, rss in sampler.timeline]
    # A worker replaced mid-phase (killed on its timeout, say) would read as a fresh one: the pids tell.
    result.worker_pids = [worker, *server.worker_pids()]
    time.sleep(SETTLE_SECONDS)
    result.rss_settled = servers.rss_bytes(server.worker_pids()[0])
    small_requests(server.port)
    time.sleep(SETTLE_SECONDS)
    result.rss_end = servers.rss_bytes(server.worker_pids()[0])
    return result


def peaks_by_variant(rounds: list[dict[str, Any]], sampler: RssSampler) -> dict[str, float]:
    """Each round's peak RSS (MiB) in each of its parts (create, until ended), and the highest per variant and part."""
    highest: dict[str, float] = {}
    for outcome in rounds:
        variant = "chunked" if outcome["chunked"] else "Content-Length"
        outcome["rss_peak_mib"] = {}
        for part, (began, ended) in outcome.pop("windows").items():
            peak = round(sampler.peak(began, ended) / 2**20, 1)
            outcome["rss_peak_mib"][part] = peak
            highest[f"{variant} {part}"] = max(peak, highest.get(f"{variant} {part}", 0.0))
    return highest


def server_env(directory: Path, max_batch_bytes: int, max_file_bytes: int) -> dict[str, str]:
    # Every setting the figures depend on is set here, so a developer's shell cannot change them.
    return {
        "UNDERSTUDY_BACKEND": "echo",
        "UNDERSTUDY_API_KEYS": f"{load.API_KEY},{uploads.KEY}",
        "UNDERSTUDY_STATE_FILE": str(directory / "state.sqlite3"),
        "UNDERSTUDY_FILES_DIR": str(directory / "files"),
        "UNDERSTUDY_MAX_BATCH_BYTES": str(max_batch_bytes),
        "UNDERSTUDY_MAX_FILE_BYTES": str(max_file_bytes),
        "UNDERSTUDY_JOURNAL": "false",
    }


def soak(options: argparse.Namespace, directory: Path) -> tuple[int, list[PhaseResult], str]:
    """The warm-up and the phases; the RSS at the start, each phase's figures and the server's log."""
    from app.launcher.server_process import ServerProcess  # the --repo checkout's: it serves its own tree
    from app.settings import Settings

    limits = Settings()  # the shipped defaults: the limits the phases go up to
    phase_seconds = 60 * options.minutes / len(options.phases)
    work: dict[str, Work] = {
        "batches": lambda port, end: batch_phase(port, end, options.batch_requests, limits.max_batch_bytes),
        "uploads": lambda port, end: upload_phase(port, end, limits.max_file_bytes),
        "streams": lambda port, end: stream_phase(port, end, options.streams),
    }
    env = server_env(directory, limits.max_batch_bytes, limits.max_file_bytes)
    with ServerProcess(env, workers=1) as server:
        for _ in range(3):  # imports, caches, the processor thread and the handler threads' first uses
            small_requests(server.port)
        # One stream from each of the stream phase's clients: buffers and threads for that many at once are
        # a one-time cost, like the imports, not something the phase leaves behind.
        stream_phase(server.port, time.monotonic(), options.streams)
        # Each handler thread that reads the state store opens its own SQLite connection, some 200 KB, once; the
        # pool hands requests to its idle threads in turn, so as many small reads as threads reach them all.
        for _ in range(2 * options.streams):
            batches.call(server.port, "GET", "/v1/messages/batches?limit=1")
        if not options.cold:
            # One round of the largest batches: what the first one grows once (an allocator arena for each thread
            # that handled it, SQLite's WAL index) is no more left behind by a phase than the imports are.
            work["batches"](server.port, time.monotonic())
        time.sleep(SETTLE_SECONDS)
        start = servers.rss_bytes(server.worker_pids()[0])
        results: list[PhaseResult] = []
        for name in options.phases:
            previous = results[-1].rss_end if results else start
            results.append(run_phase(server, PHASES[name], previous, phase_seconds, work[name]))
            results[-1].work["disk_bytes"] = disk_used(directory)
    return start, results, server.output


def disk_used(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def report(start: int, results: list[PhaseResult]) -> str:
    mib = 2**20
    lines = [
        f"one worker's RSS (MiB); after the warm-up: {start / mib:.1f}",
        f"{'phase':<20}{'start':>8}{'peak':>8}{'settled':>9}{'end':>8}"
        f"{'end/run start':>15}{'≤1.1':>6}{'end/phase start':>17}{'≤1.1':>6}",
    ]
    for phase in results:
        of_run, of_phase = phase.rss_end / start, phase.rss_end / phase.rss_start
        lines.append(
            f"{phase.name:<20}{phase.rss_start / mib:>8.1f}{phase.rss_peak / mib:>8.1f}"
            f"{phase.rss_settled / mib:>9.1f}{phase.rss_end / mib:>8.1f}"
            f"{of_run:>14.2f}×{within(of_run):>6}{of_phase:>16.2f}×{within(of_phase):>6}"
        )
    lines.append(
        "start: the end of the phase before (the first: after the warm-up); settled: 2 s after the phase; "
        "end: after a few small requests of each kind and 2 s more"
    )
    for phase in results:
        restarted = len(set(phase.worker_pids)) > 1
        lines.append(
            f"  {phase.name} ({phase.seconds} s{', WORKER REPLACED' if restarted else ''}): {phase.work['summary']}"
        )
        if phase.work["peaks_mib"]:
            peaks = "; ".join(f"{part} {peak:,.0f}" for part, peak in phase.work["peaks_mib"].items())
            lines.append(f"    highest peak (MiB) by variant: {peaks}")
    return "\n".join(lines)


def within(ratio: float) -> str:
    return "yes" if ratio <= 1 + BOUND else "NO"


def save(options: argparse.Namespace, start: int, results: list[PhaseResult], log: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-memory-soak{'-quick' if options.quick else ''}.json"
    numbers = {
        "settings": {**vars(options), "repo": str(options.repo.resolve())},
        "rss_start": start,
        "phases": [asdict(phase) for phase in results],
        "server_log_tracebacks": log.count("Traceback"),
        "server_log_worker_timeouts": log.count("WORKER TIMEOUT"),
    }
    path.write_text(json.dumps(numbers, indent=2) + "\n")
    return path


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the phases together (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke: each phase's variants once (at the limits still), streams 5 s"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="no round of the largest batches in the warm-up (their first-use cost shows)",
    )
    parser.add_argument("--batch-requests", type=int, default=10_000, help="requests per batch (default 10,000)")
    parser.add_argument("--streams", type=int, default=100, help="concurrent streaming clients (default 100)")
    parser.add_argument(
        "--repo", type=Path, default=servers.REPO, help="the checkout whose server is measured (default this one)"
    )
    parser.add_argument(
        "--phases",
        type=lambda text: text.split(","),
        default=list(PHASES),
        help="which phases, in which order (default batches,uploads,streams)",
    )
    options = parser.parse_args(argv)
    if unknown := set(options.phases) - set(PHASES):
        parser.error(f"unknown phases {sorted(unknown)}: choose among {', '.join(PHASES)}")
    if options.quick:
        options.minutes = len(options.phases) / 12  # 5 s a phase: batches and uploads still do one of each variant
    return options


def main(argv: list[str] | None = None) -> int:
    options = arguments(argv)
    sys.path.insert(0, str(options.repo.resolve()))  # before bench/, whose backends.py is not the package
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < DISK_NEEDED:
        print(f"memory_soak: cannot run: {free / 2**30:.1f} GiB free in {tempfile.gettempdir()}, 2 GiB needed")
        return EXIT_CANNOT_RUN
    with tempfile.TemporaryDirectory(prefix="understudy-memory-soak-") as directory:
        start, results, log = soak(options, Path(directory))
    print(f"server: {options.repo.resolve()}")
    print(report(start, results))
    print(f"server log: {log.count('Traceback')} tracebacks, {log.count('WORKER TIMEOUT')} worker timeouts")
    print(f"numbers saved in {save(options, start, results, log)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
