"""Instructions per request, counted by valgrind: a before/after comparison that this machine's noise cannot move.

    python bench/instructions.py                          # this checkout
    python bench/instructions.py --compare-with ../before  # and another (an earlier commit), side by side

Wall-clock numbers on a shared 2-core machine swing by tens of percent between minutes (bench/run.py
interleaves its rounds for that reason, and still reads 0.8× to 1.0× of the same code). Counting the CPU
instructions a request costs does not swing: each checkout builds its app (`create_app()`, the default
settings: the echo backend, every request validated) and sends it the README's request through its ASGI
interface, in-process, N times, under `valgrind --tool=callgrind`. Two runs, of many and of few requests,
are subtracted, so start-up and warm-up cancel out and what is left is the steady cost of one request:
the spec's validation, the middleware, the bridge into Flask (its handler thread included), the handler,
the echo backend. gunicorn's side of a request (HTTP parsing, its event loop) is not in it.

It installs valgrind when it is missing (Debian's package, as bench/tools.py installs wrk), and never fails
on the numbers. The counts stay within a fraction of a percent from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import load
from tools import ToolMissing, ensure_debian_tool

REPO = Path(__file__).resolve().parents[1]
#: The two runs whose difference is counted: enough requests that caches are warm before the first is done.
FEW, MANY = 100, 400
EXIT_TOOL_MISSING = 3


def main(argv: list[str] | None = None) -> int:
    options = _arguments(argv)
    try:
        valgrind = ensure_debian_tool("valgrind", install=not options.no_install)
    except ToolMissing as missing:
        print(f"bench: cannot run: {missing}", flush=True)
        return EXIT_TOOL_MISSING
    trees = {"this checkout": REPO}
    if options.compare_with is not None:
        trees[f"compared ({options.compare_with})"] = options.compare_with.resolve()
    counted = {name: per_request(valgrind, tree, options.few, options.many) for name, tree in trees.items()}
    print(f"instructions per request (the README's request, in-process; {options.many} minus {options.few} requests)")
    for name, count in counted.items():
        print(f"  {name:<40} {count:>12,.0f}")
    if options.compare_with is not None:
        this, other = counted.values()
        print(f"  this checkout / compared: {this / other:.3f}×")
    return 0


def per_request(valgrind: str, tree: Path, few: int, many: int) -> float:
    """The instructions one request costs in `tree`: the runs of `many` and `few` requests (side by side, one
    per core), subtracted."""
    with ThreadPoolExecutor(max_workers=2) as runs:
        many_count, few_count = runs.map(lambda requests: instructions(valgrind, tree, requests), (many, few))
    return (many_count - few_count) / (many - few)


def instructions(valgrind: str, tree: Path, requests: int) -> int:
    """The instructions a process of `tree` runs to build its app and answer `requests` requests."""
    with tempfile.TemporaryDirectory(prefix="understudy-instructions-") as scratch:
        command = [
            valgrind, "--tool=callgrind", f"--callgrind-out-file={scratch}/callgrind.out",
            sys.executable, __file__, "--drive", str(requests),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=tree, capture_output=True, text=True, timeout=1800, check=False)
    collected = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or collected is None:
        raise RuntimeError(f"{' '.join(command)} in {tree} failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    return int(collected.group(1))


def drive(requests: int) -> None:
    """In the checkout that is the working directory: build its app and send it `requests` requests."""
    sys.path.insert(0, str(Path.cwd()))
    from app import create_app  # the checkout's own, not necessarily this file's

    app = create_app()
    request = load.message_request()  # the README's request, as bench/run.py sends it
    body = request.body
    headers = [
        (name.encode(), value.encode()) for name, value in (*request.headers, ("content-length", str(len(body))))
    ]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method, "scheme": "http",
        "path": request.path, "raw_path": request.path.encode(), "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip

    async def one_request() -> None:
        answered = asyncio.Event()
        sent: list[dict[str, Any]] = []
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()  # a client that stays until its answer is whole
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered.set()

        await app(dict(scope), receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"the app answered {sent[0]['status']}: {sent[1:]}")

    async def all_requests() -> None:
        for _ in range(requests):
            await one_request()

    asyncio.run(all_requests())


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Count the CPU instructions one request costs (valgrind).")
    parser.add_argument("--compare-with", type=Path, help="also count another checkout of Understudy")
    parser.add_argument("--few", type=int, default=FEW, help=f"requests in the short run (default {FEW})")
    parser.add_argument("--many", type=int, default=MANY, help=f"requests in the long run (default {MANY})")
    parser.add_argument("--no-install", action="store_true", help="install nothing: a missing valgrind is exit code 3")
    parser.add_argument("--drive", type=int, help=argparse.SUPPRESS)  # the measured process's part
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = _arguments(None)
    if arguments.drive is not None:
        drive(arguments.drive)
    else:
        sys.exit(main())
