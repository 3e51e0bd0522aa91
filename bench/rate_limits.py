"""Rate limits: what the limiter costs, and how exactly it admits: `python bench/rate_limits.py` (or `--quick`).

Two measurements, reported and never asserted (issue 21):
- **added latency**: Understudy as shipped (echo, the default SQLite state, one worker per core) without limits
  and with limits it never reaches (`UNDERSTUDY_RATE_LIMITS=rpm=…,itpm=…,otpm=…`: every request is admitted,
  taken from three buckets and corrected at its end), and the same on Redis (UNDERSTUDY_STATE_URL), under the
  open load of the proxy figure (16 clients, 160 requests a second in all), interleaved round by round in ABBA
  order; p50 and p99 of each. Goal: the limiter adds at most 0.2 ms to p50.
- **admitted requests**: two hosts (two gunicorn masters) of two workers each on one Redis, one API key limited
  to `--rpm` (default 600) requests a minute, offered twice that for `--seconds` (default 60) by 8 clients, 4 per
  host. The bucket is drained first (requests until one is refused), so what the run admits is what the bucket
  refills: rate × the time from the drain to the last request sent, plus what was left at the drain (under one
  request). Goal: admitted within 2% of that. (From a full bucket, twice the RPM for 60 s is exactly the
  bucket's capacity plus a minute's refill: every request would be admitted, and nothing measured.)

A redis-server is started on a loopback port of its own (Debian's package is installed when missing, as wrk is
by bench/tools.py). Only 127.0.0.1 traffic; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time

import load
import servers
from tools import ToolMissing, ensure_debian_tool

GOAL_ADDED_P50_MS = 0.2
GOAL_ADMITTED_ERROR = 0.02
#: Limits the latency run never reaches: the limiter does all its work, and nothing is refused.
UNREACHED = "rpm=100000000,itpm=1000000000000,otpm=100000000000"


def added_latency(redis: servers.RedisServer, rounds: int, seconds: float) -> dict[str, float]:
    """p50 and p99 (ms) of each configuration under the proxy figure's open load, interleaved round by round."""
    on_redis = {"UNDERSTUDY_STATE_URL": redis.url, "UNDERSTUDY_STATE_PREFIX": f"bench-{secrets.token_hex(4)}"}
    targets = [
        servers.ConfiguredServer("off", {}),
        servers.ConfiguredServer("on", {"UNDERSTUDY_RATE_LIMITS": UNREACHED}),
        servers.ConfiguredServer("off-redis", on_redis),
        servers.ConfiguredServer("on-redis", {**on_redis, "UNDERSTUDY_RATE_LIMITS": UNREACHED}),
    ]
    samples: dict[str, list[float]] = {target.name: [] for target in targets}
    errors = dict.fromkeys(samples, 0)
    request = load.message_request()
    try:
        servers.start_all(targets)
        for target in targets:  # warm-up
            load.open_load(target.port, request, clients=16, rate=160, seconds=1)
        for round_number in range(rounds):
            order = targets if round_number % 2 == 0 else targets[::-1]  # ABBA: drift falls on all alike
            for target in order:
                result = load.open_load(target.port, request, clients=16, rate=160, seconds=seconds)
                samples[target.name] += result.latencies
                errors[target.name] += result.errors
    finally:
        for target in targets:
            target.stop()
    figures: dict[str, float] = {}
    for name, values in samples.items():
        figures[f"{name}_p50_ms"] = load.percentile(values, 0.5) * 1000
        figures[f"{name}_p99_ms"] = load.percentile(values, 0.99) * 1000
        figures[f"{name}_errors"] = errors[name]
    figures["added_p50_ms"] = figures["on_p50_ms"] - figures["off_p50_ms"]
    figures["added_p50_redis_ms"] = figures["on-redis_p50_ms"] - figures["off-redis_p50_ms"]
    return figures


async def _offer(port: int, raw: bytes, *, start: float, interval: float, until: float, tally: dict) -> None:
    """Send on a fixed schedule until `until`, counting each status and the last time a request was sent."""
    connection = await load.Connection.open(port)
    try:
        due = start
        while due < until:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            answer = await asyncio.wait_for(connection.exchange(raw), timeout=10)
            tally[answer.status] = tally.get(answer.status, 0) + 1
            tally["last_sent"] = max(tally.get("last_sent", 0.0), due)
            due += interval
    finally:
        await connection.close()


async def _drain(port: int, raw: bytes) -> float:
    """Send until a request is refused (bounded): the bucket is then empty; when that was (perf_counter)."""
    connection = await load.Connection.open(port)
    try:
        for _ in range(1_000_000):
            answer = await connection.exchange(raw)
            if answer.status == 429:
                return answer.done_at
        raise RuntimeError("the bucket never emptied")
    finally:
        await connection.close()


def admitted(redis: servers.RedisServer, rpm: int, seconds: float, clients: int = 8) -> dict[str, float]:
    """Two hosts of two workers on one Redis, one key offered twice its RPM: admitted against the arithmetic."""
    env = {
        "UNDERSTUDY_STATE_URL": redis.url,
        "UNDERSTUDY_STATE_PREFIX": f"bench-{secrets.token_hex(4)}",
        "UNDERSTUDY_RATE_LIMITS": f"rpm={rpm}",
        "WEB_CONCURRENCY": "2",
    }
    hosts = [servers.ConfiguredServer("host-1", env), servers.ConfiguredServer("host-2", env)]
    raw = load.message_request().raw()
    tally: dict = {}
    try:
        servers.start_all(hosts)

        async def run() -> float:
            drained = await _drain(hosts[0].port, raw)
            offered_rate = 2 * rpm / 60
            interval = clients / offered_rate
            start = time.perf_counter() + 0.2
            await asyncio.gather(
                *(
                    _offer(hosts[i % 2].port, raw, start=start + i * interval / clients, interval=interval,
                           until=start + seconds, tally=tally)
                    for i in range(clients)
                )
            )  # fmt: skip
            return drained

        drained = asyncio.run(asyncio.wait_for(run(), timeout=seconds + 120))
    finally:
        for host in hosts:
            host.stop()
    refill_seconds = tally["last_sent"] - drained
    expected = rpm / 60 * refill_seconds
    got = tally.get(200, 0)
    return {
        "rpm": rpm,
        "offered": sum(count for status, count in tally.items() if isinstance(status, int)),
        "admitted": got,
        "refused": tally.get(429, 0),
        "other": sum(count for status, count in tally.items() if isinstance(status, int) and status not in (200, 429)),
        "refill_seconds": refill_seconds,
        "expected": expected,
        "error": (got - expected) / expected,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the latency run (default 6; 1 with --quick)")
    parser.add_argument("--rpm", type=int, default=600, help="the limit of the accuracy run (default 600)")
    parser.add_argument("--seconds", type=float, help="length of the accuracy run (default 60; 10 with --quick)")
    parser.add_argument("--only", choices=("latency", "accuracy"), help="one of the two measurements")
    options = parser.parse_args(argv)
    rounds = options.rounds or (1 if options.quick else 6)
    latency_seconds = 2.0 if options.quick else 10.0
    seconds = options.seconds or (10.0 if options.quick else 60.0)
    try:
        binary = ensure_debian_tool("redis-server")
    except ToolMissing as missing:
        print(f"bench: {missing}", file=sys.stderr)
        return 3
    redis = servers.RedisServer(binary)
    redis.start()
    latency: dict[str, float] = {}
    accuracy: dict[str, float] = {}
    try:
        if options.only != "accuracy":
            latency = added_latency(redis, rounds, latency_seconds)
        if options.only != "latency":
            accuracy = admitted(redis, options.rpm, seconds)
    finally:
        redis.close()
    print(f"{'scenario':<44}{'measured':>12}{'goal':>10}  met")
    if latency:
        print_latency(latency)
    if accuracy:
        print_accuracy(accuracy)
    servers.save_results("rate_limits", {"latency": latency, "accuracy": accuracy})
    return 0


def print_latency(latency: dict[str, float]) -> None:
    for name in ("off", "on", "off-redis", "on-redis"):
        p50, p99, errors = (latency[f"{name}_{figure}"] for figure in ("p50_ms", "p99_ms", "errors"))
        label = f"p50 / p99, limits {name} (ms)"
        print(f"{label:<44}{p50:>6.2f} / {p99:.2f}" + (f"  ({errors:.0f} errors)" if errors else ""))
    for label, key in (("added p50, SQLite (ms)", "added_p50_ms"), ("added p50, Redis (ms)", "added_p50_redis_ms")):
        met = "yes" if latency[key] <= GOAL_ADDED_P50_MS else "no"
        print(f"{label:<44}{latency[key]:>12.3f}{'<= 0.2':>10}  {met}")


def print_accuracy(accuracy: dict[str, float]) -> None:
    met = "yes" if abs(accuracy["error"]) <= GOAL_ADMITTED_ERROR else "no"
    expected = f"  expected: rpm/60 x {accuracy['refill_seconds']:.1f} s"
    print(
        f"{'admitted, 2 hosts x 2 workers, 2x the RPM':<44}{accuracy['admitted']:>12.0f}{'':>10}\n"
        f"{expected:<44}{accuracy['expected']:>12.1f}\n"
        f"{'  difference':<44}{accuracy['error']:>11.2%}{'<= 2%':>10}  {met}\n"
        f"  ({accuracy['offered']:.0f} offered, {accuracy['refused']:.0f} refused, {accuracy['other']:.0f} other)"
    )


if __name__ == "__main__":
    sys.exit(main())
