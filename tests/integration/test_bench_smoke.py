"""The benchmarks' smokes: `python bench/run.py --quick` prints its table, bench/hostile_upstream.py its cases.

It checks that the benchmark works, never how fast anything is: the goals it
reports are not asserted. When wrk or Prism is missing and cannot be
installed (the benchmark exits with code 3), the test is skipped, so the
benchmark's tools can never turn the suite red.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TOOL_MISSING = 3
#: Installing wrk and Prism on a fresh machine comes first; the smoke itself takes about half a minute.
TIMEOUT = 600


def test_the_quick_benchmark_runs_and_prints_its_table() -> None:
    run = subprocess.run(
        [sys.executable, "bench/run.py", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = run.stdout + run.stderr
    if run.returncode == TOOL_MISSING:
        pytest.skip(f"the benchmark's tools are not available: {output.strip().splitlines()[-1]}")
    assert run.returncode == 0, output
    for expected in (
        "req/s",
        "p50 ms",
        "p99 ms",
        "understudy (asgi",
        "bare Flask (gthread",
        "throughput vs bare Flask",
        "p99 vs bare Flask p99",
        "stream: first event / whole reply",
        "open streams per worker",
        "worker RSS change",
    ):
        assert expected in run.stdout, output


def test_the_hostile_upstream_benchmark_runs_and_prints_each_case() -> None:
    run = subprocess.run(
        [sys.executable, "bench/hostile_upstream.py", "--seconds", "10"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    cases = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [case["case"] for case in cases] == ["huge-body", "endless-event"]
    assert all("rss_mb_peak" in case and "client" in case for case in cases)
