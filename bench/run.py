"""Understudy's benchmark, in one command: `python bench/run.py` (or `--quick` for a short smoke).

It installs what it needs (wrk, Prism, aimock), starts four servers —
Understudy with its default gunicorn configuration, a bare-Flask echo on as
many gunicorn workers, Prism's mock of openapi.yaml and aimock with a fixture
that answers the README's request as Understudy's echo does — and measures
them interleaved, round after round (A B C D, A B C D, …), reporting medians:
throughput (closed-loop, wrk) with its p99 at saturation and CPU per request,
latency (open load below saturation), time to a stream's first event
(Understudy and aimock, alternated), then Understudy's streams held open and
its workers' memory. It prints a table with the ratios against the project's
goals (issue 22's), and saves the numbers as JSON in bench/results/. It
never fails on speed: the goals are reported, not asserted. See
bench/README.md.

Exit codes: 0 when it ran (whatever the numbers), 3 when a tool is missing and
cannot be installed, 1 when Understudy, the baseline or a scenario failed. A
Prism or aimock that will not start is reported, and the run goes on without
it. `--without-prism` and `--without-aimock` leave one out, `--without-node`
both (no Node, no npm), and `--no-install` installs nothing (a missing tool is
exit code 3): the test suite's smoke runs `--quick --no-install --without-node`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import scenarios
import servers
from scenarios import MemoryResult, Settings, StreamResult, TargetResult
from tools import ToolMissing, ensure_aimock, ensure_prism, ensure_wrk, pinned_aimock_version, pinned_prism_version

RESULTS = Path(__file__).resolve().parent / "results"
EXIT_TOOL_MISSING = 3

FULL = Settings(
    rounds=5, wrk_seconds=10, warmup_seconds=3, connections=16,
    latency_seconds=10, latency_clients=16, latency_rate=160,
    stream_pairs=200, first_event_count=100, streams_per_worker=1_000,
    memory_requests=100_000, memory_chunk_seconds=5,
)  # fmt: skip
QUICK = Settings(
    rounds=1, wrk_seconds=2, warmup_seconds=1, connections=16,
    latency_seconds=2, latency_clients=16, latency_rate=160,
    stream_pairs=20, first_event_count=20, streams_per_worker=10,
    memory_requests=2_000, memory_chunk_seconds=1,
)  # fmt: skip

#: The goals of issue 22 (and those of issue 5 it leaves standing).
GOAL_THROUGHPUT_VS_FLASK = 1.0
GOAL_THROUGHPUT_VS_AIMOCK = 0.6
GOAL_THROUGHPUT_VS_PRISM = 1.5
GOAL_LATENCY_VS_AIMOCK = 1.5  # open load: p50 and p99 each
GOAL_FIRST_EVENT_VS_AIMOCK = 1.5
GOAL_SATURATION_P99_VS_FLASK = 1.5
GOAL_CPU_PER_REQUEST = 300e-6  # seconds
GOAL_FIRST_EVENT_VS_RESPONSE = 2.0
GOAL_STREAMS_PER_WORKER = 1_000
GOAL_RSS_CHANGE = 0.05
GOAL_MEMORY_REQUESTS = 1_000_000
#: The name of the other checkout's target, with --compare-with.
COMPARED = "compared"
#: The targets that stream, whose time to first event is measured (Understudy's and aimock's echo).
STREAMING = ("understudy", "aimock", COMPARED)


def main(argv: list[str] | None = None) -> int:
    options = _arguments(argv)
    settings = QUICK if options.quick else FULL
    if options.rounds:
        settings.rounds = options.rounds
    if options.streams_per_worker:
        settings.streams_per_worker = options.streams_per_worker
    if options.memory_requests:
        settings.memory_requests = options.memory_requests
    without_prism = options.without_prism or options.without_node
    without_aimock = options.without_aimock or options.without_node
    try:
        wrk = ensure_wrk(install=not options.no_install)
        prism_bin = ensure_prism(install=not options.no_install) if not without_prism else None
        aimock_bin = ensure_aimock(install=not options.no_install) if not without_aimock else None
    except ToolMissing as missing:
        print(f"bench: cannot run: {missing}", flush=True)
        return EXIT_TOOL_MISSING
    machine = _machine()
    print(f"bench: {machine['cpus']} × {machine['cpu']}; {'quick smoke' if options.quick else 'full run'}", flush=True)
    machine["open_files"] = _raise_open_files_limit()

    understudy = servers.understudy()
    targets = [understudy]
    absent = {
        "prism": "left out (--without-prism or --without-node)" if prism_bin is None else None,
        "aimock": "left out (--without-aimock or --without-node)" if aimock_bin is None else None,
    }
    try:
        servers.start_all([understudy])
        workers = len(understudy.worker_pids())
        targets.append(servers.flask_baseline(workers))
        if options.compare_with is not None:
            targets.append(servers.understudy(options.compare_with, name=COMPARED))
        servers.start_all(targets[1:])
        if prism_bin is not None:
            absent["prism"] = _start_optional(servers.prism(prism_bin), "on openapi.yaml", targets)
        if aimock_bin is not None:
            absent["aimock"] = _start_optional(servers.aimock(aimock_bin), "with bench/aimock-fixtures.json", targets)
        started = time.monotonic()
        results = scenarios.throughput_and_latency(wrk, targets, settings, _progress, streaming=STREAMING)
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

    report = _report(machine, workers, settings, results, streams, memory, elapsed, absent)
    if options.compare_with is not None:
        report += "\n" + _comparison(results["understudy"], results[COMPARED], options.compare_with)
    print(report)
    saved = _save(options.quick, machine, workers, settings, results, streams, memory)
    print(f"\nnumbers saved in {saved.relative_to(Path.cwd()) if saved.is_relative_to(Path.cwd()) else saved}")
    return 0


def _start_optional(server: servers.Server, how: str, targets: list[servers.Server]) -> str | None:
    """Start Prism or aimock and add it to `targets`; if it will not start, why (and go on without it)."""
    try:
        servers.start_all([server])
    except RuntimeError as refused:
        server.stop()
        print(f"bench: {server.name} did not start {how}; going on without it.\n{refused}", flush=True)
        last_line = str(refused).splitlines()[-1] if str(refused).strip() else "no output"
        return f"did not start {how}: {last_line}"
    targets.append(server)
    return None


def _raise_open_files_limit() -> dict[str, int]:
    """Raise this process's limit on open files (RLIMIT_NOFILE) to its hard limit, and say so: the streams
    held open take a descriptor each on the client's side. The servers started after this inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"bench: open files limit (RLIMIT_NOFILE) raised from {soft:,} to its hard limit, {hard:,}", flush=True)
    return {"before": soft, "raised_to": hard}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark Understudy against bare Flask, Prism and aimock.")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about half a minute)")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved measurements (default: 5, 1 with --quick)")
    parser.add_argument("--without-prism", action="store_true", help="leave Prism out")
    parser.add_argument("--without-aimock", action="store_true", help="leave aimock out")
    parser.add_argument(
        "--without-node", action="store_true", help="leave Prism and aimock out: no Node, no npm (the test's smoke)"
    )
    parser.add_argument(
        "--streams-per-worker",
        type=int,
        metavar="N",
        help="streams to hold open per worker (default: 1,000, the goal; 10 with --quick)",
    )
    parser.add_argument(
        "--memory-requests",
        type=int,
        metavar="N",
        help="requests over which workers' RSS is followed (default: 100,000, 2,000 with --quick; "
        "the goal is stated over 1,000,000)",
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
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "prism": pinned_prism_version(),
        "aimock": pinned_aimock_version(),
    }


# ---------------------------------------------------------------- the report


def _report(
    machine: dict[str, Any],
    workers: int,
    settings: Settings,
    results: dict[str, TargetResult],
    streams: StreamResult,
    memory: MemoryResult,
    elapsed: float,
    absent: dict[str, str | None],
) -> str:
    labels = {
        "understudy": f"understudy (asgi, {workers} workers)",
        "flask": f"bare Flask (gthread, {workers} workers)",
        "prism": f"prism {machine['prism']} mock",
        "aimock": f"aimock {machine['aimock']} (1 Node process)",
        COMPARED: f"understudy, compared (asgi, {workers} w.)",
    }
    lines = [
        "",
        f"Machine: {machine['cpus']} × {machine['cpu']}; Python {machine['python']}; took {elapsed:.0f} s",
        f"Throughput, p99 at saturation and CPU: wrk, {settings.connections} connections, closed loop, "
        f"{settings.rounds} × {settings.wrk_seconds:g} s. p50 / p99: open load, {settings.latency_clients} clients, "
        f"{settings.latency_rate:g} req/s in all, {settings.rounds} × {settings.latency_seconds:g} s. First event: "
        f"a streamed echo to each streaming target in turn, {settings.rounds} × {settings.first_event_count}. "
        "Medians of the rounds.",
        "",
        f"{'target':<36}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'sat. p99':>10}{'1st ev. ms':>11}"
        f"{'CPU µs/req':>11}{'errors':>7}",
    ]
    for name, result in results.items():
        lines.append(
            f"{labels.get(name, name):<36}{result.median('rates'):>8,.0f}{_ms(result.median('p50s')):>9}"
            f"{_ms(result.median('p99s')):>9}{_ms(result.median('saturation_p99s')):>10}{_ms(result.median('first_events')):>11}"
            f"{result.median('cpu_per_request') * 1e6:>11.0f}{result.errors:>7}"
        )
    for name, why in absent.items():
        if why:
            lines.append(f"{labels[name]:<36}{why}")
    us, flask = results["understudy"], results["flask"]
    prism, aimock = results.get("prism", TargetResult()), results.get("aimock", TargetResult())

    def ratio(measure: str, other: TargetResult) -> float:
        return us.median(measure) / other.median(measure)

    goals = [
        ("throughput vs bare Flask", ratio("rates", flask), GOAL_THROUGHPUT_VS_FLASK, True),
        ("throughput vs aimock", ratio("rates", aimock), GOAL_THROUGHPUT_VS_AIMOCK, True),
        ("throughput vs Prism", ratio("rates", prism), GOAL_THROUGHPUT_VS_PRISM, True),
        ("p50 vs aimock p50 (open load)", ratio("p50s", aimock), GOAL_LATENCY_VS_AIMOCK, False),
        ("p99 vs aimock p99 (open load)", ratio("p99s", aimock), GOAL_LATENCY_VS_AIMOCK, False),
        ("first event vs aimock's", ratio("first_events", aimock), GOAL_FIRST_EVENT_VS_AIMOCK, False),
        ("p99 vs bare Flask p99, at saturation", ratio("saturation_p99s", flask), GOAL_SATURATION_P99_VS_FLASK, False),
        ("stream: first event / whole reply", streams.ratio, GOAL_FIRST_EVENT_VS_RESPONSE, False),
    ]
    lines += ["", f"{'goal':<42}{'measured':>12}{'bound':>12}{'met':>6}"]
    for label, value, bound, minimum in goals:
        lines.append(_goal_line(label, value, f"{value:.2f}×", bound, f"{bound:g}×", minimum))
    cpu = us.median("cpu_per_request")
    lines.append(_goal_line("CPU per request (µs)", cpu, f"{cpu * 1e6:.0f}", GOAL_CPU_PER_REQUEST, "300", False))
    fewest = min(streams.held_per_worker)
    lines.append(_goal_line("open streams per worker (fewest)", fewest, f"{fewest:,}", GOAL_STREAMS_PER_WORKER,
                            f"{GOAL_STREAMS_PER_WORKER:,}", True))  # fmt: skip
    per_stream = streams.bytes_per_stream / 1024
    stated = "n/a" if math.isnan(per_stream) else f"{per_stream:,.0f} KiB"
    lines.append(f"{'memory per open stream (RSS growth / held)':<42}{stated:>12}{'stated':>12}")
    worst = max((memory.change(pid) for pid in memory.rss), key=abs)
    lines.append(
        f"{'worker RSS change (largest)':<42}{worst:>+12.1%}{'within ±5%':>12}{_yes(abs(worst) <= GOAL_RSS_CHANGE):>6}"
    )
    if streams.target_per_worker < GOAL_STREAMS_PER_WORKER:
        lines.append(
            f"  (this run aimed at {streams.target_per_worker:,} streams per worker; the goal is "
            f"{GOAL_STREAMS_PER_WORKER:,}: --streams-per-worker {GOAL_STREAMS_PER_WORKER})"
        )
    if memory.requests < GOAL_MEMORY_REQUESTS:
        lines.append(
            f"  (RSS followed over {memory.requests:,} requests; the goal is stated over {GOAL_MEMORY_REQUESTS:,}: "
            f"--memory-requests {GOAL_MEMORY_REQUESTS})"
        )
    lines += _stream_lines(streams, machine["open_files"]) + _memory_lines(memory)
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    """Seconds as milliseconds, or a dash for what was not measured."""
    return "—" if math.isnan(seconds) else f"{seconds * 1e3:.2f}"


def _goal_line(label: str, value: float, shown: str, bound: float, bound_shown: str, minimum: bool) -> str:
    if math.isnan(value):
        return f"{label:<42}{'n/a':>12}"
    met = value >= bound if minimum else value <= bound
    return f"{label:<42}{shown:>12}{('≥ ' if minimum else '≤ ') + bound_shown:>12}{_yes(met):>6}"


def _comparison(this: TargetResult, compared: TargetResult, tree: Path) -> str:
    """This checkout's medians as multiples of the compared checkout's, measured in the same rounds."""
    measures = (
        ("req/s", "rates"), ("p50", "p50s"), ("p99", "p99s"), ("p99 at saturation", "saturation_p99s"),
        ("first event", "first_events"), ("CPU per request", "cpu_per_request"),
    )  # fmt: skip
    ratios = [f"{label} {this.median(name) / compared.median(name):.2f}×" for label, name in measures]
    return f"This checkout against {tree} ({COMPARED!r} above), same rounds: {', '.join(ratios)}."


def _stream_lines(streams: StreamResult, open_files: dict[str, int]) -> list[str]:
    pairs = list(zip(streams.rss_before, streams.rss_held, strict=True))
    rss = ", ".join(f"{before / 2**20:.0f} → {held / 2**20:.0f}" for before, held in pairs)
    growth = ", ".join(f"{(held - before) / 2**20:+.0f}" for before, held in pairs)
    return [
        "",
        f"Streams: whole reply p50 {streams.response_p50 * 1e3:.2f} ms (p99 {streams.response_p99 * 1e3:.2f}); "
        f"streamed first event p50 {streams.first_event_p50 * 1e3:.2f} ms (p99 {streams.first_event_p99 * 1e3:.2f}).",
        f"Held open at once: {sum(streams.held_per_worker):,} streams (aimed at {streams.target_per_worker:,} per "
        f"worker; the client opened {streams.opened:,} in {streams.seconds_to_open:.0f} s, stopped: "
        f"{streams.stopped}), per worker {streams.held_per_worker}; client's open files limit "
        f"{open_files['raised_to']:,}.",
        f"  workers' RSS {rss} MiB ({growth} MiB); threads per worker {streams.threads_per_worker}; "
        f"first event p99 while opening them {streams.first_event_while_held_p99 * 1e3:.1f} ms.",
        f"  Meanwhile {streams.replies_while_held} of {streams.replies_tried} whole replies answered (fresh "
        f"connections), p50 {streams.reply_while_held_p50 * 1e3:.2f} ms; errors before {streams.errors}.",
    ]


def _memory_lines(memory: MemoryResult) -> list[str]:
    lines = ["", f"Memory over {memory.requests:,} requests (after a warm-up; errors {memory.errors}):"]
    for pid, samples in memory.rss.items():
        shown = samples if len(samples) <= 12 else samples[:: math.ceil(len(samples) / 12)] + samples[-1:]
        trail = " → ".join(f"{sample / 2**20:.1f}" for sample in shown)
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
        "streams": {**asdict(streams), "bytes_per_stream": streams.bytes_per_stream},
        "memory": {**asdict(memory), "rss": {str(pid): samples for pid, samples in memory.rss.items()}},
    }
    path.write_text(json.dumps(numbers, indent=2) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
