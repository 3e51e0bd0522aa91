"""Understudy's benchmark, in one command: `python bench/run.py` (or `--quick` for a short smoke).

It installs what it needs (wrk, Prism), starts three servers — Understudy
with its default gunicorn configuration, a bare-Flask echo on as many
gunicorn workers, and Prism's mock of openapi.yaml — and measures them
interleaved, round after round (A B C, A B C, …), reporting medians:
throughput (closed-loop, wrk), latency (open load below saturation), then
Understudy's streams and its workers' memory. It prints a table with the
ratios against the project's goals, and saves the numbers as JSON in
bench/results/. It never fails on speed: the goals are reported, not
asserted. See bench/README.md.

Exit codes: 0 when it ran (whatever the numbers), 3 when a tool is missing and
cannot be installed, 1 when Understudy, the baseline or a scenario failed. A
Prism that will not start on openapi.yaml is reported, and the run goes on
without it. `--without-prism` leaves Prism out (no Node, no npm), and
`--no-install` installs nothing (a missing tool is exit code 3): the test
suite's smoke runs `--quick --no-install --without-prism`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import scenarios
import servers
from scenarios import MemoryResult, Settings, StreamResult, TargetResult
from tools import ToolMissing, ensure_prism, ensure_wrk, pinned_prism_version

RESULTS = Path(__file__).resolve().parent / "results"
EXIT_TOOL_MISSING = 3

FULL = Settings(
    rounds=5, wrk_seconds=10, warmup_seconds=3, connections=16,
    latency_seconds=10, latency_clients=16, latency_rate=160,
    stream_pairs=200, streams_per_worker=100,
    memory_requests=100_000, memory_chunk_seconds=5,
)  # fmt: skip
QUICK = Settings(
    rounds=1, wrk_seconds=2, warmup_seconds=1, connections=16,
    latency_seconds=2, latency_clients=16, latency_rate=160,
    stream_pairs=20, streams_per_worker=10,
    memory_requests=2_000, memory_chunk_seconds=1,
)  # fmt: skip

#: The goals of issue 5, as (label, measured value, bound, is the bound a minimum).
GOAL_THROUGHPUT_VS_FLASK = 0.5
GOAL_THROUGHPUT_VS_PRISM = 1.5
GOAL_P99_VS_FLASK = 3.0
GOAL_FIRST_EVENT_VS_RESPONSE = 2.0
GOAL_STREAMS_PER_WORKER = 100
GOAL_RSS_CHANGE = 0.10
#: The name of the other checkout's target, with --compare-with.
COMPARED = "compared"


def main(argv: list[str] | None = None) -> int:
    options = _arguments(argv)
    settings = QUICK if options.quick else FULL
    if options.rounds:
        settings.rounds = options.rounds
    try:
        wrk = ensure_wrk(install=not options.no_install)
        prism_bin = ensure_prism(install=not options.no_install) if not options.without_prism else None
    except ToolMissing as missing:
        print(f"bench: cannot run: {missing}", flush=True)
        return EXIT_TOOL_MISSING
    machine = _machine()
    print(f"bench: {machine['cpus']} × {machine['cpu']}; {'quick smoke' if options.quick else 'full run'}", flush=True)

    understudy = servers.understudy()
    targets = [understudy]
    prism_absent = "left out (--without-prism)" if prism_bin is None else None
    try:
        servers.start_all([understudy])
        workers = len(understudy.worker_pids())
        targets.append(servers.flask_baseline(workers))
        if options.compare_with is not None:
            targets.append(servers.understudy(options.compare_with, name=COMPARED))
        servers.start_all(targets[1:])
        if prism_bin is not None:
            prism_absent = _start_prism(prism_bin, targets)
        started = time.monotonic()
        results = scenarios.throughput_and_latency(wrk, targets, settings, _progress)
        for other in targets[1:]:
            other.stop()  # the rest measures Understudy alone
        memory = scenarios.memory(wrk, understudy, settings, _progress)
        streams = scenarios.streaming(understudy, settings, _progress)
        elapsed = time.monotonic() - started
    except (RuntimeError, OSError, TimeoutError) as error:
        print(f"bench: failed: {error}", flush=True)
        return 1
    finally:
        for target in targets:
            target.stop()

    report = _report(machine, workers, settings, results, streams, memory, elapsed, prism_absent)
    if options.compare_with is not None:
        report += "\n" + _comparison(results["understudy"], results[COMPARED], options.compare_with)
    print(report)
    saved = _save(options.quick, machine, workers, settings, results, streams, memory)
    print(f"\nnumbers saved in {saved.relative_to(Path.cwd()) if saved.is_relative_to(Path.cwd()) else saved}")
    return 0


def _start_prism(prism_bin: Path, targets: list[servers.Server]) -> str | None:
    """Start Prism on openapi.yaml and add it to `targets`; if it will not start, why (and go on without it)."""
    prism = servers.prism(prism_bin)
    try:
        servers.start_all([prism])
    except RuntimeError as refused:
        prism.stop()
        print(f"bench: Prism did not start on openapi.yaml; going on without it.\n{refused}", flush=True)
        last_line = str(refused).splitlines()[-1] if str(refused).strip() else "no output"
        return f"did not start on openapi.yaml: {last_line}"
    targets.append(prism)
    return None


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark Understudy against bare Flask and Prism.")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about half a minute)")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved measurements (default: 5, 1 with --quick)")
    parser.add_argument(
        "--without-prism", action="store_true", help="measure Understudy and bare Flask only (no Node, no npm)"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="install nothing: a missing tool stops the run with exit code 3"
    )
    parser.add_argument(
        "--compare-with",
        type=lambda path: Path(path).resolve(),
        metavar="TREE",
        help="another checkout of Understudy (an earlier commit, say), measured in the same interleaved rounds",
    )
    return parser.parse_args(argv)


def _progress(message: str) -> None:
    print(f"  … {message}", flush=True)


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "prism": pinned_prism_version()}


# ---------------------------------------------------------------- the report


def _report(
    machine: dict[str, Any],
    workers: int,
    settings: Settings,
    results: dict[str, TargetResult],
    streams: StreamResult,
    memory: MemoryResult,
    elapsed: float,
    prism_absent: str | None,
) -> str:
    labels = {
        "understudy": f"understudy (asgi, {workers} workers)",
        "flask": f"bare Flask (gthread, {workers} workers)",
        "prism": f"prism {machine['prism']} mock",
        COMPARED: f"understudy, compared (asgi, {workers} w.)",
    }
    lines = [
        "",
        f"Machine: {machine['cpus']} × {machine['cpu']}; Python {machine['python']}; took {elapsed:.0f} s",
        f"Throughput: wrk, {settings.connections} connections, closed loop, {settings.rounds} × "
        f"{settings.wrk_seconds:g} s. Latency: open load, {settings.latency_clients} clients, "
        f"{settings.latency_rate:g} req/s in all, {settings.rounds} × {settings.latency_seconds:g} s. "
        "Medians of the rounds.",
        "",
        f"{'target':<34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU µs/req':>12}{'errors':>8}",
    ]
    for name, result in results.items():
        lines.append(
            f"{labels.get(name, name):<34}{result.median('rates'):>9,.0f}{result.median('p50s') * 1e3:>9.2f}"
            f"{result.median('p99s') * 1e3:>9.2f}{result.median('cpu_per_request') * 1e6:>12.0f}{result.errors:>8}"
        )
    if prism_absent:
        lines.append(f"{labels['prism']:<34}{prism_absent}")
    us, flask = results["understudy"], results["flask"]
    prism = results.get("prism", TargetResult())
    changes = [memory.change(pid) for pid in memory.rss]
    goals = [
        ("throughput vs bare Flask", us.median("rates") / flask.median("rates"), GOAL_THROUGHPUT_VS_FLASK, True, "×"),
        ("throughput vs Prism", us.median("rates") / prism.median("rates"), GOAL_THROUGHPUT_VS_PRISM, True, "×"),
        ("p99 vs bare Flask p99", us.median("p99s") / flask.median("p99s"), GOAL_P99_VS_FLASK, False, "×"),
        ("stream: first event / whole reply", streams.ratio, GOAL_FIRST_EVENT_VS_RESPONSE, False, "×"),
    ]
    lines += ["", f"{'goal':<36}{'measured':>14}{'bound':>10}{'met':>6}"]
    for label, value, bound, minimum, unit in goals:
        if math.isnan(value):
            lines.append(f"{label:<36}{'n/a':>14}")
            continue
        met = value >= bound if minimum else value <= bound
        sign = "≥" if minimum else "≤"
        lines.append(f"{label:<36}{value:>13.2f}{unit}{sign + f' {bound:g}' + unit:>10}{_yes(met):>6}")
    fewest = min(streams.held_per_worker)
    lines.append(
        f"{'open streams per worker (fewest)':<36}{fewest:>14}{'≥ ' + str(streams.target_per_worker):>10}"
        f"{_yes(fewest >= streams.target_per_worker):>6}"
    )
    worst = max(changes, key=abs)
    lines.append(
        f"{'worker RSS change (largest)':<36}{worst:>+13.1%} {'≤ ±10%':>9}{_yes(abs(worst) <= GOAL_RSS_CHANGE):>6}"
    )
    if streams.target_per_worker < GOAL_STREAMS_PER_WORKER:
        lines.append(f"  (a quick run holds {streams.target_per_worker} streams per worker; the goal is 100)")
    lines += _stream_lines(streams) + _memory_lines(memory)
    return "\n".join(lines)


def _comparison(this: TargetResult, compared: TargetResult, tree: Path) -> str:
    """This checkout's medians as multiples of the compared checkout's, measured in the same rounds."""
    measures = (("req/s", "rates"), ("p50", "p50s"), ("p99", "p99s"), ("CPU per request", "cpu_per_request"))
    ratios = [f"{label} {this.median(name) / compared.median(name):.2f}×" for label, name in measures]
    return f"This checkout against {tree} ({COMPARED!r} above), same rounds: {', '.join(ratios)}."


def _stream_lines(streams: StreamResult) -> list[str]:
    return [
        "",
        f"Streams: whole reply p50 {streams.response_p50 * 1e3:.2f} ms (p99 {streams.response_p99 * 1e3:.2f}); "
        f"streamed first event p50 {streams.first_event_p50 * 1e3:.2f} ms (p99 {streams.first_event_p99 * 1e3:.2f}).",
        f"Held open at once: {sum(streams.held_per_worker)} streams, per worker {streams.held_per_worker}; "
        f"threads per worker {streams.threads_per_worker}; first event p99 while opening them "
        f"{streams.first_event_while_held_p99 * 1e3:.1f} ms; a whole reply meanwhile p50 "
        f"{streams.reply_while_held_p50 * 1e3:.2f} ms; errors {streams.errors}.",
    ]


def _memory_lines(memory: MemoryResult) -> list[str]:
    lines = ["", f"Memory over {memory.requests:,} requests (after a warm-up; errors {memory.errors}):"]
    for pid, samples in memory.rss.items():
        trail = " → ".join(f"{sample / 2**20:.1f}" for sample in samples)
        lines.append(f"  worker {pid}: {trail} MiB ({memory.change(pid):+.1%})")
    return lines


def _yes(met: bool) -> str:
    return "yes" if met else "NO"


def _save(
    quick: bool,
    machine: dict[str, Any],
    workers: int,
    settings: Settings,
    results: dict[str, TargetResult],
    streams: StreamResult,
    memory: MemoryResult,
) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}{'-quick' if quick else ''}.json"
    numbers = {
        "machine": machine,
        "workers": workers,
        "settings": asdict(settings),
        "targets": {name: asdict(result) for name, result in results.items()},
        "streams": asdict(streams),
        "memory": {**asdict(memory), "rss": {str(pid): samples for pid, samples in memory.rss.items()}},
    }
    path.write_text(json.dumps(numbers, indent=2) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
