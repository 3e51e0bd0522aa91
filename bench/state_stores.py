"""The Redis state store against SQLite's, the journal on: `python bench/state_stores.py` (or `--quick`).

Two Understudy servers (`gunicorn wsgi:app`, echo, as many workers each, both up
for the whole run) that differ only in where their state lives: one in the SQLite
file gunicorn.conf.py gives its workers (UNDERSTUDY_STATE_URL unset), the other in
a redis-server of this run's own (UNDERSTUDY_STATE_URL=redis://127.0.0.1:PORT/0,
its append-only file fsynced every second, as the README tells operators to run
it). Both keep the journal (UNDERSTUDY_JOURNAL=true), so every request writes one
entry to its store: the only store call an echo request of the README's kind makes.

In interleaved rounds, in ABBA order (whatever drifts during a run falls on both alike):
- throughput, closed loop (wrk, 16 keep-alive connections on one thread), and the CPU time per request of the
  serving workers and, for Redis, of redis-server besides; the goal (issue 21) is on the median over the rounds
  of Redis / SQLite: at least 0.85;
- latency under an open load below saturation (16 clients, 160 requests a second in all): p50 and p99.
It reports and saves the numbers (bench/results/state-stores-*.json); it never fails on speed. Only
127.0.0.1 traffic; every loop bounded in count and time.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time

import servers
from load import message_request, open_load, percentile, run_wrk
from tools import ToolMissing, ensure_debian_tool, ensure_wrk

GOAL_RATIO = 0.85
CONNECTIONS = 16
LATENCY_CLIENTS = 16
LATENCY_RATE = 160
#: The key prefix of the Redis server's state (UNDERSTUDY_STATE_PREFIX's default).
PREFIX = "understudy"


def store_server(name: str, env: dict[str, str]) -> servers.ConfiguredServer:
    """Understudy as `gunicorn wsgi:app` runs it, echo with the journal on, its state where `env` says."""
    workers = servers.default_workers()
    return servers.ConfiguredServer(name, {"UNDERSTUDY_JOURNAL": "true", "WEB_CONCURRENCY": str(workers), **env})


def redis_binary(*, install: bool) -> str:
    """redis-server (or valkey-server), installing Debian's redis-server package when neither is there."""
    return shutil.which("valkey-server") or ensure_debian_tool("redis-server", install=install)


def measure(wrk: str, redis: servers.RedisServer, rounds: int, seconds: float, latency_seconds: float) -> dict:
    sqlite = store_server("sqlite", {})
    on_redis = store_server("redis", {"UNDERSTUDY_STATE_URL": redis.url})
    names = ("sqlite", "redis")
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu_us: dict[str, list[float]] = {name: [] for name in names}
    redis_cpu_us: list[float] = []
    latencies: dict[str, list[float]] = {name: [] for name in names}
    p50s: dict[str, list[float]] = {name: [] for name in names}
    errors = 0
    answered = 0  # by the Redis server: each should have written one journal entry
    request = message_request()
    try:
        servers.start_all([sqlite, on_redis])
        for server in (sqlite, on_redis):  # warm-up
            warm = run_wrk(wrk, server.port, request, connections=CONNECTIONS, seconds=1)
            errors += warm.errors
            answered += warm.requests if server is on_redis else 0
        for round_number in range(rounds):
            # ABBA order: whatever drifts during a run (other load, the journals filling) falls on both alike
            pair = (sqlite, on_redis) if round_number % 2 == 0 else (on_redis, sqlite)
            for server in pair:
                cpu_before, redis_before = server.cpu_seconds(), redis.cpu_seconds()
                result = run_wrk(wrk, server.port, request, connections=CONNECTIONS, seconds=seconds)
                served = max(1, result.requests)
                rates[server.name].append(result.rate)
                cpu_us[server.name].append((server.cpu_seconds() - cpu_before) / served * 1e6)
                if server is on_redis:
                    redis_cpu_us.append((redis.cpu_seconds() - redis_before) / served * 1e6)
                    answered += result.requests
                errors += result.errors
            for server in pair:
                time.sleep(0.5)  # let the last wrk connections close
                load = open_load(
                    server.port, request, clients=LATENCY_CLIENTS, rate=LATENCY_RATE, seconds=latency_seconds
                )
                latencies[server.name] += load.latencies
                p50s[server.name].append(percentile(load.latencies, 0.5))
                errors += load.errors
                answered += len(load.latencies) if server is on_redis else 0
            print(
                f"round {round_number + 1}/{rounds}: sqlite {rates['sqlite'][-1]:,.0f} req/s, redis "
                f"{rates['redis'][-1]:,.0f} req/s ({rates['redis'][-1] / rates['sqlite'][-1]:.2f}); p50 sqlite "
                f"{p50s['sqlite'][-1] * 1000:.2f} ms, redis {p50s['redis'][-1] * 1000:.2f} ms",
                flush=True,
            )
    finally:
        on_redis.stop()
        sqlite.stop()
    written = redis.command("GET", f"{PREFIX}:{{scope=default}}:journal:next")
    ratios = [on / off for on, off in zip(rates["redis"], rates["sqlite"], strict=True)]
    return {
        "workers": servers.default_workers(),
        "rounds": rounds,
        "rates": rates,
        "ratios": ratios,
        "ratio": statistics.median(ratios),
        "rps": {name: statistics.median(values) for name, values in rates.items()},
        "cpu_us": {name: statistics.median(values) for name, values in cpu_us.items()},
        "redis_server_cpu_us": statistics.median(redis_cpu_us),
        "p50_ms": {name: percentile(values, 0.5) * 1000 for name, values in latencies.items()},
        "p99_ms": {name: percentile(values, 0.99) * 1000 for name, values in latencies.items()},
        "errors": errors,
        # That the Redis server did keep its journal in Redis (an entry it cannot write is lost, not an error).
        "redis_answered": answered,
        "redis_journal_entries": int(written) if written.isdigit() else 0,
    }


def main(argv: list[str] | None = None) -> int:
    options = servers.round_options(argv, __doc__, default_rounds=6, needs="wrk, redis-server")
    rounds = options.rounds
    seconds, latency_seconds = (2.0, 2.0) if options.quick else (10.0, 10.0)
    try:
        wrk = ensure_wrk(install=not options.no_install)
        binary = redis_binary(install=not options.no_install)
    except ToolMissing as missing:
        print(f"bench: {missing}", file=sys.stderr)
        return 3
    redis = servers.RedisServer(binary)
    try:
        redis.start()
        result = measure(wrk, redis, rounds, seconds, latency_seconds)
    finally:
        redis.close()
    workers = result["workers"]
    print(f"\necho, journal on, {workers} workers each; {rounds} rounds, medians")
    print(f"{'store':<10}{'req/s':>10}{'CPU µs/req':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for name in ("sqlite", "redis"):
        print(
            f"{name:<10}{result['rps'][name]:>10.0f}{result['cpu_us'][name]:>12.0f}"
            f"{result['p50_ms'][name]:>10.2f}{result['p99_ms'][name]:>10.2f}"
        )
    print(
        f"(redis-server's own CPU: {result['redis_server_cpu_us']:.0f} µs/req besides the workers'; its journal "
        f"has {result['redis_journal_entries']:,} entries for {result['redis_answered']:,} requests answered)"
    )
    verdict = "met" if result["ratio"] >= GOAL_RATIO else "MISSED"
    print(
        f"throughput redis / sqlite (median of rounds): {result['ratio']:.2f} (goal >= {GOAL_RATIO}: {verdict}); "
        f"errors: {result['errors']}"
    )
    servers.save_results("state-stores", result, quick=options.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
