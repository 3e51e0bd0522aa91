"""Soak test: minutes of steady mixed traffic against gunicorn, then a check that nothing was lost or leaked.

    python bench/soak.py --minutes 5                 # 75 requests a second for five minutes
    python bench/soak.py --seconds 30 --rate 100     # shorter, faster
    python bench/soak.py --seconds 20 --json         # the figures as one JSON object (the CI test reads it)

It starts gunicorn exactly as gunicorn.conf.py configures it (one worker per
core, or WEB_CONCURRENCY) with the scripted backend and the journal on
(UNDERSTUDY_ADMIN_KEY set), on a free port of 127.0.0.1 — the only address it
ever sends to — and sends an open load: request n leaves at n / rate seconds,
whether or not earlier ones have finished. The mix, drawn from a seeded
random generator: whole messages, streams read to the end, streams the client
drops after a random number of events, token counts, model lists, a rule that
answers 429 every other time and a tool call. Every request carries its own
`x-soak-id` header.

After a warm-up (then a pause, so idle connections close) it reads each
worker's resident memory, threads and open file descriptors; again after the
run and the same pause. Then it reads the whole journal and checks that every
request sent is in it. It prints: requests sent and answered by status, 5xx,
lost journal entries, client-side failures, latency, per worker RSS, threads
and fds at start and end, and RSS every 30 s under load. Handler threads are
made on demand up to the pool's size, so their number follows the busiest
moment so far; each that has touched the journal or a sequence holds its
own SQLite connection (the database and its WAL file), so the descriptors
are counted apart: those on the state file, and the others (sockets, pipes,
files), which must not grow. The exit status is 1 if any request got a
5xx, failed on the client side, or is missing from the journal. Every loop is
bounded: the run sends exactly rate × duration requests, each with a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from app.launcher.server_process import ServerProcess  # noqa: E402

HOST = "127.0.0.1"
API_KEY = "soak-key"
ADMIN_KEY = "soak-admin-key"
REQUEST_TIMEOUT = 30.0
#: After the load stops: in-flight requests finish, then idle keep-alive connections close (gunicorn.conf.py: 2 s).
QUIET = 3.0
#: Seconds between two readings of the workers' memory during the run.
SAMPLE_EVERY = 30
#: The state file's name: the workers' descriptors on it are their SQLite connections.
STATE_FILE_NAME = "state.sqlite3"

SCRIPT = """
fallback: echo
defaults:
  stream: {chunk_tokens: 1, chunk_delay_ms: 10}
rules:
  - name: story
    match: {user_text: {contains: story}}
    reply:
      text: Once upon a time a server ran for hours, dropped nothing, leaked nothing, and wrote down every request.
  - name: busy
    match: {user_text: {contains: busy}}
    replies:
      - error: {status: 429, type: rate_limit_error, message: Slow down, headers: {retry-after: "1"}}
      - text: Not busy any more.
    when_exhausted: cycle
  - name: tool
    match: {tools: true}
    reply:
      content:
        - {type: text, text: Let me look that up.}
        - {type: tool_use, name: get_weather, input: {city: Paris}}
"""

#: (kind, share of the traffic)
MIX = [
    ("message", 0.30),
    ("stream", 0.25),
    ("dropped-stream", 0.15),
    ("busy", 0.10),
    ("tool", 0.05),
    ("count-tokens", 0.10),
    ("models", 0.05),
]
TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}


@dataclass
class Results:
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    client_errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    dropped: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    ids: list[str] = field(default_factory=list)
    timeline: list[tuple[int, dict[int, int]]] = field(default_factory=list)


def request_for(kind: str, soak_id: str) -> tuple[bytes, bool]:
    """The request bytes for one kind of call, and whether it streams."""
    if kind == "models":
        path, body = "/v1/models?limit=5", None
    else:
        text = {"busy": "are you busy?", "stream": "tell me a story", "dropped-stream": "tell me a story"}.get(
            kind, f"hello number {soak_id}"
        )
        body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": text}]}
        if kind != "count-tokens":
            body["max_tokens"] = 200
        if kind == "tool":
            body["tools"] = [TOOL]
        if kind in ("stream", "dropped-stream"):
            body["stream"] = True
        path = "/v1/messages/count_tokens" if kind == "count-tokens" else "/v1/messages"
    payload = b"" if body is None else json.dumps(body).encode()
    head = [
        f"{'GET' if body is None else 'POST'} {path} HTTP/1.1",
        f"Host: {HOST}",
        f"x-api-key: {API_KEY}",
        "anthropic-version: 2023-06-01",
        f"x-soak-id: {soak_id}",
    ]
    if body is not None:
        head += ["content-type: application/json", f"content-length: {len(payload)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload, kind in ("stream", "dropped-stream")


async def one_request(port: int, kind: str, soak_id: str, drop_after: int, results: Results) -> None:
    data, streamed = request_for(kind, soak_id)
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(data)
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        results.statuses[f"{status}{' stream' if streamed and status == 200 else ''}"] += 1
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            events = 0
            ended = False
            while not ended:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    break
                chunk = await reader.readexactly(size + 2)
                events += chunk.count(b"event: ")
                ended = b"event: message_stop" in chunk
                if kind == "dropped-stream" and events >= drop_after:
                    writer.transport.abort()  # gone mid-stream, without a goodbye
                    results.dropped += 1
                    return
            if status == 200 and not ended:
                results.client_errors["stream ended without message_stop"] += 1
        if not streamed:
            results.latencies.append(time.monotonic() - started)
    finally:
        writer.close()


async def guarded(port: int, kind: str, soak_id: str, drop_after: int, results: Results) -> None:
    results.in_flight += 1
    results.peak_in_flight = max(results.peak_in_flight, results.in_flight)
    try:
        await asyncio.wait_for(one_request(port, kind, soak_id, drop_after, results), REQUEST_TIMEOUT)
    except Exception as error:  # every failure is counted, none stops the run
        results.client_errors[type(error).__name__] += 1
    finally:
        results.in_flight -= 1


async def send_load(
    server: ServerProcess, rate: float, seconds: float, results: Results, rng: random.Random, first: int = 0
) -> None:
    """Open load: request n leaves at n / rate seconds; then wait for all of them to finish."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    kinds, weights = zip(*MIX, strict=True)
    tasks = []
    port = server.port
    for n in range(int(rate * seconds)):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if n % int(rate * SAMPLE_EVERY) == 0:  # memory under load, for the timeline
            rss = {pid: figures["rss_kib"] for pid, figures in worker_resources(server).items()}
            results.timeline.append((round(loop.time() - start), rss))
        kind = rng.choices(kinds, weights)[0]
        soak_id = f"soak-{first + n}"
        results.sent += 1
        results.kinds[kind] += 1
        results.ids.append(soak_id)
        tasks.append(asyncio.create_task(guarded(port, kind, soak_id, rng.randint(1, 12), results)))
    await asyncio.gather(*tasks)


def worker_resources(server: ServerProcess) -> dict[int, dict[str, int]]:
    """Per worker: resident memory (KiB), threads and open file descriptors."""
    measured = {}
    for pid in server.worker_pids():
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
        targets = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):  # closed while listed
                targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        sqlite = sum(STATE_FILE_NAME in target for target in targets)
        measured[pid] = {
            "rss_kib": int(status["VmRSS"].split()[0]),
            "threads": int(status["Threads"]),
            "fds": len(targets),
            "sqlite_fds": sqlite,
            "other_fds": len(targets) - sqlite,
        }
    return measured


def journal_ids(server: ServerProcess) -> tuple[set[str], int]:
    """The x-soak-id of every journal entry, and the number of entries."""
    ids: set[str] = set()
    after, count = 0, 0
    for _ in range(100_000):  # bounded: pages of 1000
        request = urllib.request.Request(
            f"{server.base_url}/_understudy/requests?after={after}&limit=1000",
            headers={"x-understudy-admin-key": ADMIN_KEY},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            page = json.loads(response.read())
        if not page["data"]:
            break
        count += len(page["data"])
        ids.update(entry["headers"].get("x-soak-id", "") for entry in page["data"])
        after = page["last_id"]
    return ids, count


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def soak(seconds: float, rate: float, warmup: float, seed: int) -> dict[str, Any]:
    workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))  # as gunicorn.conf.py
    with tempfile.TemporaryDirectory(prefix="understudy-soak-") as folder:
        (Path(folder) / "script.yaml").write_text(SCRIPT)
        env = {
            "UNDERSTUDY_BACKEND": "scripted",
            "UNDERSTUDY_SCRIPT": str(Path(folder) / "script.yaml"),
            "UNDERSTUDY_STATE_FILE": str(Path(folder) / STATE_FILE_NAME),
            "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY,
            "UNDERSTUDY_API_KEYS": API_KEY,
        }
        rng = random.Random(seed)
        with ServerProcess(env, workers=workers) as server:
            booted = worker_resources(server)
            warm = Results()
            asyncio.run(send_load(server, rate, warmup, warm, rng))
            time.sleep(QUIET)
            start = worker_resources(server)
            results = Results()
            began = time.monotonic()
            asyncio.run(send_load(server, rate, seconds, results, rng, first=warm.sent))
            took = time.monotonic() - began
            time.sleep(QUIET)
            end = worker_resources(server)
            journaled, entries = journal_ids(server)
        log = server.output
    sent = warm.ids + results.ids
    lost = [soak_id for soak_id in sent if soak_id not in journaled]
    five_xx = sum(count for status, count in (warm.statuses + results.statuses).items() if status.startswith("5"))
    return {
        "rate": rate,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "workers": workers,
        "sent": results.sent,
        "sent_with_warmup": len(sent),
        "achieved_rate": round(results.sent / took, 1),
        "duration_seconds": round(took, 1),
        "statuses": dict(sorted(results.statuses.items())),
        "kinds": dict(sorted(results.kinds.items())),
        "dropped_mid_stream": results.dropped,
        "five_xx": five_xx,
        "client_errors": dict(warm.client_errors + results.client_errors),
        "journal_entries": entries,
        "lost_journal_entries": len(lost),
        "lost_examples": lost[:10],
        "peak_in_flight": results.peak_in_flight,
        "peak_in_flight_warmup": warm.peak_in_flight,
        "latency_ms": {
            "p50": round(1000 * percentile(results.latencies, 0.5), 1),
            "p99": round(1000 * percentile(results.latencies, 0.99), 1),
            "max": round(1000 * max(results.latencies, default=0), 1),
        },
        "workers_at_boot": booted,
        "workers_at_start": start,
        "workers_at_end": end,
        "rss_kib_during_run": results.timeline,
        "same_workers": sorted(start) == sorted(end),
        "tracebacks_in_log": log.count("Traceback"),
    }


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"soak: {figures['sent']} requests in {figures['duration_seconds']} s "
        f"({figures['achieved_rate']}/s asked {figures['rate']}/s) on {figures['workers']} workers, "
        f"after {figures['sent_with_warmup'] - figures['sent']} warm-up requests",
        f"  answers: {figures['statuses']}",
        f"  mix: {figures['kinds']}; streams dropped by the client mid-way: {figures['dropped_mid_stream']}",
        f"  5xx: {figures['five_xx']}   client-side failures: {figures['client_errors'] or 0}   "
        f"lost journal entries: {figures['lost_journal_entries']} of {figures['sent_with_warmup']} "
        f"({figures['journal_entries']} entries)",
        f"  latency of whole replies: p50 {figures['latency_ms']['p50']} ms, p99 {figures['latency_ms']['p99']} ms, "
        f"max {figures['latency_ms']['max']} ms; peak in flight {figures['peak_in_flight']}",
        f"  tracebacks in the server's log: {figures['tracebacks_in_log']}; "
        f"same worker pids: {figures['same_workers']}",
        "  per worker, at boot → after warm-up → at end:",
    ]
    for pid, at_start in figures["workers_at_start"].items():
        boot = figures["workers_at_boot"].get(pid, {})
        end = figures["workers_at_end"].get(pid, {})
        for name in ("rss_kib", "threads", "fds", "sqlite_fds", "other_fds"):
            unit = " KiB" if name == "rss_kib" else ""
            change = ""
            if name in end and at_start[name]:
                change = f" ({100 * (end[name] - at_start[name]) / at_start[name]:+.1f}%)"
            values = (boot.get(name, "?"), at_start[name], end.get(name, "?"))
            lines.append(f"    {pid} {name:10} " + " → ".join(f"{value}{unit}" for value in values) + change)
    lines.append("  RSS (KiB) under load, by seconds into the run: ")
    lines += [
        f"    {at:4} s  " + "  ".join(f"{pid}: {rss}" for pid, rss in sorted(rss.items()))
        for at, rss in figures["rss_kib_during_run"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="length of the run, after the warm-up (default 5)")
    length.add_argument("--seconds", type=float, help="length of the run in seconds")
    parser.add_argument("--rate", type=float, default=75.0, help="requests per second (default 75)")
    parser.add_argument(
        "--warmup", type=float, default=None, help="warm-up seconds (default 60; 10 for runs under 3 min, 5 under 1)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the request mix (default 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 5)
    warmup = args.warmup if args.warmup is not None else (60.0 if seconds >= 180 else 10.0 if seconds >= 60 else 5.0)
    figures = soak(seconds, args.rate, warmup, args.seed)
    print(json.dumps(figures) if args.json else report(figures))
    failed = figures["five_xx"] or figures["lost_journal_entries"] or figures["client_errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
