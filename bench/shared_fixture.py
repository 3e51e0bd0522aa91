"""What sharing one server saves a test suite: `python bench/shared_fixture.py` (or `--quick`).

A small project of ten tests, each one SDK call (the script's first-call 529,
which the SDK retries) and a look at its own journal, run as a user runs it
(`python -m pytest`, the installed plugin): once with a server per test (the
`understudy` fixture), once with one server for the session, each test in a
scope of its own (`understudy_shared`); in one process and in two (xdist).
It prints the wall time of each whole run; it never fails on speed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RETRY_ON_529 = Path(__file__).resolve().parents[1] / "examples" / "retry_on_529.yaml"
INI = f"[pytest]\nunderstudy_script = {RETRY_ON_529}\nfilterwarnings = error\n"
TESTS = """\
import anthropic
import pytest

SCRIPT = {script!r}


@pytest.fixture
def server({fixture}):
    return {server}


@pytest.mark.parametrize("n", range(10))
def test_small(server, n):
    with anthropic.Anthropic(
        base_url=server.base_url, api_key=server.api_key, default_headers=server.headers, max_retries=2
    ) as client:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=[{{"role": "user", "content": "hi"}}])
    assert [entry["status"] for entry in server.journal()] == [529, 200]
"""
FIXTURES = {
    "a server per test (understudy)": ("understudy", "understudy(SCRIPT)"),
    "one shared server (understudy_shared)": ("understudy_shared", "understudy_shared"),
}


def run(project: Path, workers: str) -> float:
    """One whole pytest run of the project; its wall time in seconds."""
    began = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers],
        cwd=project,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="in one process only")
    arguments = parser.parse_args()
    print("10 tests, each one SDK call (a 529 retried) and its journal read; wall time of the whole pytest run:")
    for workers in ("0",) if arguments.quick else ("0", "2"):
        for name, (fixture, server) in FIXTURES.items():
            with tempfile.TemporaryDirectory(prefix="understudy-shared-bench-") as folder:
                project = Path(folder)
                (project / "pytest.ini").write_text(INI, encoding="utf-8")
                tests = TESTS.format(script=str(RETRY_ON_529), fixture=fixture, server=server)
                (project / "test_ten.py").write_text(tests, encoding="utf-8")
                print(f"  -n {workers}, {name}: {run(project, workers):.1f} s", flush=True)


if __name__ == "__main__":
    main()
