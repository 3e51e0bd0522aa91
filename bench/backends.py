"""The backends' own costs: `python bench/backends.py` (or `--quick`).

Two measurements, each against a baseline taken in the same run, interleaved
round by round (medians reported), never asserted:
- **scripted rules** (issue 3): the scripted backend with a 200-rule script
  whose only matching rule is the last — every request must rule out the other
  199 — against the echo backend, closed-loop throughput with wrk, and the
  server's CPU time per request. The journal is off for this run, so what
  differs is rule matching. One worker each, so that how wrk's 16 connections
  are shared among workers cannot differ between the two (app/http/worker.py shares
  them out, but not always evenly). Goal: it costs < 5% of echo's throughput.
- **proxy overhead** (issue 4): the proxy backend in front of an echo
  Understudy, against calling that upstream directly; latency under an open
  load below saturation (16 clients, 160 req/s in all), non-streaming, and a
  streamed reply's time to first event. Goals: added p50 ≤ 2 ms and p99 ≤ 10 ms;
  first event within 5 ms of direct (issue 4); and, as ratios to the direct
  request's own figures in the same run, added p50 ≤ 0.5× the direct p50 and
  added p99 ≤ 1.0× the direct p99 (issue 22).
`--only rules` or `--only proxy` runs one of the two.
Only 127.0.0.1 traffic; every loop bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import load
import servers
import yaml
from tools import ToolMissing, ensure_wrk

RULES = 200
GOAL_RULE_COST = 0.05
GOAL_ADDED_P50_MS = 2.0
GOAL_ADDED_P99_MS = 10.0
GOAL_FIRST_EVENT_MS = 5.0
#: Issue 22: what the proxy adds, as a multiple of the direct request's own p50 and p99.
GOAL_ADDED_P50_RATIO = 0.5
GOAL_ADDED_P99_RATIO = 1.0


def rule_script(folder: Path) -> Path:
    """200 rules; each of the first 199 fails on its last condition, so all are evaluated in full."""
    rules = [
        {
            "name": f"rule-{n}",
            "match": {"model": {"regex": "^claude-"}, "stream": False, "user_text": {"contains": f"topic {n}"}},
            "reply": {"text": f"answer {n}"},
        }
        for n in range(RULES - 1)
    ]
    rules.append({"name": "last", "match": {"model": {"regex": "^claude-"}}, "reply": {"text": "Hello, Claude"}})
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


def scripted_rules(wrk: str, rounds: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        one_worker = {"WEB_CONCURRENCY": "1"}
        echo = servers.ConfiguredServer("echo", one_worker)
        scripted = servers.ConfiguredServer(
            "scripted",
            {
                **one_worker,
                "UNDERSTUDY_BACKEND": "scripted",
                "UNDERSTUDY_SCRIPT": str(rule_script(Path(folder))),
                "UNDERSTUDY_JOURNAL": "false",
            },
        )
        rates: dict[str, list[float]] = {"echo": [], "scripted": []}
        cpu: dict[str, list[float]] = {"echo": [], "scripted": []}
        try:
            servers.start_all([echo, scripted])
            request = load.message_request()
            for server in (echo, scripted):  # warm-up
                load.run_wrk(wrk, server.port, request, connections=16, seconds=1)
            for round_number in range(rounds):
                # ABBA order: whatever drifts during a run (other load, clocks) falls on both alike
                for server in (echo, scripted) if round_number % 2 == 0 else (scripted, echo):
                    cpu_before = server.cpu_seconds()
                    result = load.run_wrk(wrk, server.port, request, connections=16, seconds=seconds)
                    rates[server.name].append(result.rate)
                    cpu[server.name].append((server.cpu_seconds() - cpu_before) / result.requests)
        finally:
            echo.stop()
            scripted.stop()
    echo_rate, scripted_rate = statistics.median(rates["echo"]), statistics.median(rates["scripted"])
    return {
        "echo_rps": echo_rate, "scripted_rps": scripted_rate, "cost": 1 - scripted_rate / echo_rate,
        **{f"{name}_cpu_us": statistics.median(seconds) * 1e6 for name, seconds in cpu.items()},
    }  # fmt: skip


async def _first_events(port: int, raw: bytes, count: int) -> list[float]:
    times = []
    connection = await load.Connection.open(port)
    try:
        for _ in range(count):
            sent = time.perf_counter()
            answer = await connection.exchange(raw)
            times.append(answer.first_data_at - sent)
            await asyncio.sleep(0.01)
    finally:
        await connection.close()
    return times


def proxy_overhead(rounds: int, seconds: float, streams: int) -> dict[str, float]:
    upstream = servers.ConfiguredServer("upstream", {})
    upstream.start()
    upstream.wait_until_healthy()
    proxy = servers.ConfiguredServer(
        "proxy", {"UNDERSTUDY_BACKEND": "proxy", "UNDERSTUDY_UPSTREAM_URL": f"http://127.0.0.1:{upstream.port}"}
    )
    samples: dict[str, list[float]] = {"direct": [], "proxy": []}
    first: dict[str, list[float]] = {"direct": [], "proxy": []}
    try:
        proxy.start()
        proxy.wait_until_healthy()
        request, streamed = load.message_request(), load.message_request("Hello, Claude", stream=True)
        for round_number in range(rounds):
            pair = (("direct", upstream), ("proxy", proxy))
            for name, server in pair if round_number % 2 == 0 else pair[::-1]:  # ABBA, as above
                result = load.open_load(server.port, request, clients=16, rate=160, seconds=seconds)
                samples[name] += result.latencies
                first[name] += asyncio.run(_first_events(server.port, streamed.raw(), streams))
    finally:
        proxy.stop()
        upstream.stop()
    p50 = {name: load.percentile(values, 0.5) * 1000 for name, values in samples.items()}
    p99 = {name: load.percentile(values, 0.99) * 1000 for name, values in samples.items()}
    ttfe = {name: statistics.median(values) * 1000 for name, values in first.items()}
    return {
        "direct_p50_ms": p50["direct"], "proxy_p50_ms": p50["proxy"], "added_p50_ms": p50["proxy"] - p50["direct"],
        "direct_p99_ms": p99["direct"], "proxy_p99_ms": p99["proxy"], "added_p99_ms": p99["proxy"] - p99["direct"],
        "direct_first_event_ms": ttfe["direct"], "proxy_first_event_ms": ttfe["proxy"],
        "added_first_event_ms": ttfe["proxy"] - ttfe["direct"],
        "added_p50_ratio": (p50["proxy"] - p50["direct"]) / p50["direct"],
        "added_p99_ratio": (p99["proxy"] - p99["direct"]) / p99["direct"],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", choices=("rules", "proxy"), help="run one of the two measurements")
    options = parser.parse_args(argv)
    rounds, seconds = (1, 2.0) if options.quick else (6, 10.0)
    try:
        wrk = ensure_wrk()
    except ToolMissing as missing:
        print(f"bench: {missing}", file=sys.stderr)
        return 3
    print(f"{'scenario':<34}{'measured':>14}{'goal':>12}  met")
    if options.only != "proxy":
        _print_rules(scripted_rules(wrk, rounds, seconds))
    if options.only != "rules":
        _print_proxy(proxy_overhead(rounds, seconds, streams=20 if options.quick else 100))
    return 0


def _print_rules(rules: dict[str, float]) -> None:
    print(f"{'echo, 1 worker (req/s)':<34}{rules['echo_rps']:>14.0f}")
    print(f"{'scripted, 200 rules (req/s)':<34}{rules['scripted_rps']:>14.0f}")
    print(f"{'CPU per request, echo (µs)':<34}{rules['echo_cpu_us']:>14.0f}")
    print(f"{'CPU per request, scripted (µs)':<34}{rules['scripted_cpu_us']:>14.0f}")
    met = "yes" if rules["cost"] < GOAL_RULE_COST else "no"
    print(f"{'rule matching cost':<34}{rules['cost']:>13.1%}{'< 5%':>12}  {met}")


def _print_proxy(proxy: dict[str, float]) -> None:
    for label, key, goal, unit in (
        ("proxy added p50 (ms)", "added_p50_ms", GOAL_ADDED_P50_MS, ""),
        ("proxy added p99 (ms)", "added_p99_ms", GOAL_ADDED_P99_MS, ""),
        ("proxy added first event (ms)", "added_first_event_ms", GOAL_FIRST_EVENT_MS, ""),
        ("proxy added p50 / direct p50", "added_p50_ratio", GOAL_ADDED_P50_RATIO, "×"),
        ("proxy added p99 / direct p99", "added_p99_ratio", GOAL_ADDED_P99_RATIO, "×"),
    ):
        met = "yes" if proxy[key] <= goal else "no"
        print(f"{label:<34}{proxy[key]:>13.2f}{unit or ' '}{'<= ' + f'{goal:g}' + unit:>12}  {met}")
    print(
        f"(direct p50 {proxy['direct_p50_ms']:.2f} ms, p99 {proxy['direct_p99_ms']:.2f} ms, first event "
        f"{proxy['direct_first_event_ms']:.2f} ms; proxy p50 {proxy['proxy_p50_ms']:.2f} ms, p99 "
        f"{proxy['proxy_p99_ms']:.2f} ms, first event {proxy['proxy_first_event_ms']:.2f} ms)"
    )


if __name__ == "__main__":
    sys.exit(main())
