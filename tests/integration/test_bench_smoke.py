"""The benchmarks' smokes: `python bench/run.py --quick` prints its table; the other benchmarks, their cases.

They check that the benchmarks work, never how fast anything is: the goals
they report are not asserted (and the benchmark's load client copes with the
server closing an idle keep-alive connection). It installs nothing and leaves Prism and aimock out
(`--no-install --without-node`: no apt-get, no npm, no Node inside a test
run); when wrk is not installed (the benchmark exits with code 3), the test
is skipped, so the benchmark's tools can never turn the suite red.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from builders import HEADERS, message_body

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TOOL_MISSING = 3
#: The smoke takes about half a minute; a loaded machine may take several times that.
TIMEOUT = 300


def test_the_quick_benchmark_runs_and_prints_its_table() -> None:
    run = subprocess.run(
        # --compare-with this very checkout: a second Understudy in the same rounds, and the ratios to it
        [sys.executable, "bench/run.py", "--quick", "--no-install", "--without-node", "--compare-with", "."],
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
        "understudy, compared (asgi",
        "This checkout against",
    ):
        assert expected in run.stdout, output


def test_the_hostile_upstream_benchmark_runs_and_prints_each_case() -> None:
    cases = _cases_of("bench/hostile_upstream.py", "--seconds", "10")
    assert [case["case"] for case in cases] == ["huge-body", "endless-event"]
    assert all("rss_mb_peak" in case and "client" in case for case in cases)


def test_the_state_stores_benchmark_runs_both_stores_and_prints_the_ratio() -> None:
    run = subprocess.run(
        [sys.executable, "bench/state_stores.py", "--quick", "--no-install"],
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
    for expected in ("round 1/1: sqlite", "CPU µs/req", "p50 ms", "throughput redis / sqlite", "errors: 0"):
        assert expected in run.stdout, output
    table = [line.split() for line in run.stdout.splitlines() if line.startswith(("sqlite ", "redis "))]
    assert [row[0] for row in table] == ["sqlite", "redis"] and all(float(row[1]) > 0 for row in table), output
    # The Redis server kept its journal in Redis: an entry for every request answered (and none for health checks).
    kept = re.search(r"its journal has ([\d,]+) entries for ([\d,]+) requests", run.stdout)
    assert kept is not None, output
    entries, answered = (int(count.replace(",", "")) for count in kept.groups())
    assert entries >= answered > 0, output


def _cases_of(script: str, *arguments: str) -> list[dict[str, Any]]:
    """Run a benchmark that prints one JSON line per case (it must succeed); its cases."""
    run = subprocess.run(
        [sys.executable, script, *arguments], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def _bench_module(name: str) -> ModuleType:
    """One of bench/'s modules (they are scripts run from bench/, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_the_load_client_sends_again_on_a_kept_alive_connection_the_server_closed(server) -> None:
    """The benchmark's client, starved of CPU, may reuse a connection gunicorn just closed for its keep-alive."""
    load = _bench_module("load")
    body = json.dumps(message_body("again")).encode()
    request = load.Request("POST", "/v1/messages", body, (*HEADERS.items(), ("content-type", "application/json")))

    async def exchange_twice() -> list[int]:
        connection = await load.Connection.open(server.port)
        try:
            first = await connection.exchange(request.raw())
            # Sit idle until the server closes the connection (its keep-alive runs out), then use it again.
            assert await asyncio.wait_for(connection.reader.read(1), timeout=30) == b""
            second = await connection.exchange(request.raw())
        finally:
            await connection.close()
        return [first.status, second.status]

    assert asyncio.run(exchange_twice()) == [200, 200]


def test_the_uploads_benchmark_runs_and_prints_each_case() -> None:
    cases = _cases_of("bench/uploads.py", "--megabytes", "3", "--rounds", "1")
    expected = ["content-length", "download", "chunked", "content-length, internals off"]
    assert [case["case"] for case in cases] == expected
    assert all(case["statuses"] == [200] and "worker_rss_growth_mb_max" in case for case in cases)


def test_the_instruction_count_drives_the_app_with_the_readme_request() -> None:
    """bench/instructions.py's measured process, without valgrind: it builds this checkout's app and is
    answered 200 (it stops with the app's answer otherwise), so a count is never of error replies."""
    run = subprocess.run(
        [sys.executable, "bench/instructions.py", "--drive", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
