"""Message Batches, at scale: `python bench/batches.py` (or `--quick`, or `--requests N`).

One Understudy as shipped (gunicorn.conf.py's workers, one per core, the echo
backend, no UNDERSTUDY_* setting) and three measurements, reported and never
asserted:
- **messages alone**: an open load of POST /v1/messages (8 clients, 80 req/s
  in all) for a few seconds: answered per second, p50, p99;
- **a batch of 100,000 echo requests** (issue 12): the create body is built
  before the clock starts and sent whole; the batch is timed from the create
  request until a retrieve says `ended`, while the same message load runs
  (its answered rate, p50 and p99 over the batch's time). Goal: ≥ 2,000
  requests a second;
- **downloading its results** (100,000 JSON Lines): read as they stream, each
  line parsed, while every worker's RSS is sampled every 20 ms. Goal: no
  worker grows by 50 MB or more (the file is streamed from SQLite a page at a
  time, never built whole).
Only 127.0.0.1 traffic; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import sys
import threading
import time
from dataclasses import dataclass, field

import load
import servers

GOAL_REQUESTS_PER_SECOND = 2000
GOAL_RSS_GROWTH_MB = 50
HEADERS = {"x-api-key": load.API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
POLL_SECONDS = 0.25
TIMEOUT_SECONDS = 600


@dataclass
class MessageLoad:
    """An open load of POST /v1/messages on a thread of its own, from start() until stop()."""

    port: int
    clients: int = 8
    rate: float = 80.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> MessageLoad:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> MessageLoad:
        self._stopping.set()
        self._thread.join(30)
        self.seconds = time.perf_counter() - self.started
        return self

    async def _run(self) -> None:
        interval = self.clients / self.rate
        start = time.perf_counter() + 0.1
        await asyncio.gather(
            *(self._client(start + i * interval / self.clients, interval) for i in range(self.clients))
        )

    async def _client(self, start: float, interval: float) -> None:
        raw = load.message_request().raw()
        connection = await load.Connection.open(self.port)
        try:
            for n in range(10**7):
                if self._stopping.is_set():
                    return
                due = start + n * interval
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                began = min(due, time.perf_counter())  # a request held back by a late answer counts from its due time
                try:
                    answer = await asyncio.wait_for(connection.exchange(raw), timeout=10)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                    self.errors += 1
                    await connection.close()
                    connection = await load.Connection.open(self.port)
                    continue
                if answer.status == 200:
                    self.latencies.append(answer.done_at - began)
                else:
                    self.errors += 1
        finally:
            await connection.close()

    def summary(self) -> dict[str, float]:
        return {
            "answered_per_second": len(self.latencies) / self.seconds,
            "p50_ms": load.percentile(self.latencies, 0.5) * 1000,
            "p99_ms": load.percentile(self.latencies, 0.99) * 1000,
            "errors": self.errors,
        }


def batch_body(count: int) -> bytes:
    requests = [
        {"custom_id": f"request-{n}", "params": json.loads(load.message_request(f"Hello, Claude {n}").body)}
        for n in range(count)
    ]
    return json.dumps({"requests": requests}, separators=(",", ":")).encode()


def call(port: int, method: str, path: str, body: bytes | None = None) -> dict:
    connection = http.client.HTTPConnection(load.HOST, port, timeout=TIMEOUT_SECONDS)
    try:
        connection.request(method, path, body=body, headers=HEADERS)
        response = connection.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {answer}")
        return answer
    finally:
        connection.close()


def run_batch(port: int, body: bytes, count: int) -> dict[str, float]:
    started = time.perf_counter()
    batch = call(port, "POST", "/v1/messages/batches", body)
    created = time.perf_counter()
    deadline = started + TIMEOUT_SECONDS
    while batch["processing_status"] != "ended" and time.perf_counter() < deadline:
        time.sleep(POLL_SECONDS)
        batch = call(port, "GET", f"/v1/messages/batches/{batch['id']}")
    ended = time.perf_counter()
    if batch["request_counts"]["succeeded"] != count:
        raise RuntimeError(f"the batch did not succeed whole: {batch}")
    return {
        "id": batch["id"],
        "create_seconds": created - started,
        "seconds": ended - started,
        "requests_per_second": count / (ended - started),
    }


def download(server: servers.Server, batch_id: str, count: int) -> dict[str, float]:
    """Stream the results, parsing each line, sampling every worker's RSS meanwhile."""
    pids = server.worker_pids()
    before = {pid: servers.rss_bytes(pid) for pid in pids}
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in pids:
                peak[pid] = max(peak[pid], servers.rss_bytes(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    connection = http.client.HTTPConnection(load.HOST, server.port, timeout=TIMEOUT_SECONDS)
    lines = received = 0
    try:
        connection.request("GET", f"/v1/messages/batches/{batch_id}/results", headers=HEADERS)
        response = connection.getresponse()
        assert response.status == 200, response.status
        while line := response.readline():
            json.loads(line)  # a blank line would fail here, as it fails the SDK's decoder
            lines += 1
            received += len(line)
    finally:
        connection.close()
        done.set()
        sampler.join()
    if lines != count:
        raise RuntimeError(f"{lines} result lines for {count} requests")
    growth = {pid: (peak[pid] - before[pid]) / 2**20 for pid in pids}
    return {
        "megabytes": received / 2**20,
        "seconds": time.perf_counter() - started,
        "rss_before_mb": [before[pid] / 2**20 for pid in pids],
        "rss_growth_mb": list(growth.values()),
        "max_rss_growth_mb": max(growth.values()),
    }


def report(count: int, batch: dict, quiet: dict, busy: dict, results: dict) -> None:
    rate, growth = batch["requests_per_second"], results["max_rss_growth_mb"]
    rows = [
        ("batch: requests answered per second", f"{rate:,.0f}", ">= 2,000", rate >= GOAL_REQUESTS_PER_SECOND),
        (
            "  the create call / the whole batch (s)",
            f"{batch['create_seconds']:.2f} / {batch['seconds']:.1f}",
            "",
            None,
        ),
        ("messages alone: answered per second", f"{quiet['answered_per_second']:.1f}", "", None),
        ("  p50 / p99 (ms)", f"{quiet['p50_ms']:.2f} / {quiet['p99_ms']:.2f}", "", None),
        ("messages during the batch: answered per second", f"{busy['answered_per_second']:.1f}", "", None),
        ("  p50 / p99 (ms), errors", f"{busy['p50_ms']:.2f} / {busy['p99_ms']:.2f}, {busy['errors']}", "", None),
        ("results download: worst worker RSS growth (MB)", f"{growth:.1f}", "< 50", growth < GOAL_RSS_GROWTH_MB),
        ("  results (MB) in (s)", f"{results['megabytes']:.1f} in {results['seconds']:.1f}", "", None),
        ("  worker RSS before (MB)", ", ".join(f"{mb:.0f}" for mb in results["rss_before_mb"]), "", None),
    ]
    print(f"a batch of {count:,} echo requests, {servers.default_workers()} workers")
    print(f"{'scenario':<50}{'measured':>20}{'goal':>10}  met")
    for label, measured, goal, met in rows:
        print(f"{label:<50}{measured:>20}{goal:>10}  {'' if met is None else 'yes' if met else 'no'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5,000 requests")
    parser.add_argument("--requests", type=int, default=None, help="requests in the batch (default 100,000)")
    options = parser.parse_args(argv)
    count = options.requests or (5_000 if options.quick else 100_000)
    body = batch_body(count)
    server = servers.understudy()
    server.start()
    try:
        server.wait_until_healthy()
        alone = MessageLoad(server.port).start()
        time.sleep(2 if options.quick else 5)
        alone = alone.stop()
        during = MessageLoad(server.port).start()
        batch = run_batch(server.port, body, count)
        during = during.stop()
        results = download(server, batch["id"], count)
    finally:
        server.stop()
    report(count, batch, alone.summary(), during.summary(), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
