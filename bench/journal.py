"""The journal's size and speed with retention on: `python bench/journal.py` (or `--quick`).

Two measurements, printed and never asserted, with the default limits
(UNDERSTUDY_JOURNAL_MAX_MB, _MAX_ENTRIES, _MAX_BODY_BYTES):

- **the store alone**: `add_entry` 1,000,000 times (100,000 with --quick),
  from two processes as gunicorn's two workers on two cores would, each entry
  what an SDK's request makes (some 800 bytes: the Python SDK's headers, a
  short message, its own request id). It prints the insert rate and the CPU
  time per insert in each tenth
  of the run (retention starts deleting in the second tenth, at 100,000
  entries), the state file's and the WAL's size at the end, and the largest
  WAL seen.
- **through HTTP**: a scripted server (two workers, echo fallback, journal
  on) sent 20,000 small requests (2,000 with --quick), then 300 with bodies
  of 1.04 MB (30): the files' sizes after each; then one page of
  `GET /_understudy/requests?limit=300` read over the large entries: its
  size, how long it took, and the serving workers' RSS before and after.

Only 127.0.0.1 traffic; every loop bounded in count.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from app.launcher.server_process import ServerProcess  # noqa: E402
from app.settings import Settings  # noqa: E402
from backends.state import SQLiteStore  # noqa: E402
from backends.wire import new_id  # noqa: E402

WRITERS = 2
TENTHS = 10
ADMIN_KEY = "bench-admin-key"
API_KEY = "bench-key"
#: The headers the Python SDK sends, as the journal keeps them.
SDK_HEADERS = {
    "host": "127.0.0.1:8000",
    "accept-encoding": "gzip, deflate",
    "connection": "keep-alive",
    "accept": "application/json",
    "content-type": "application/json",
    "user-agent": "Anthropic/Python 0.75.0",
    "x-stainless-lang": "python",
    "x-stainless-package-version": "0.75.0",
    "x-stainless-os": "Linux",
    "x-stainless-arch": "x64",
    "x-stainless-runtime": "CPython",
    "x-stainless-runtime-version": "3.11.7",
    "anthropic-version": "2023-06-01",
    "x-api-key": "[masked]",
    "x-stainless-retry-count": "0",
    "x-stainless-timeout": "600",
    "content-length": "97",
}
MIB = 1024 * 1024


def sdk_entry(number: int) -> dict[str, Any]:
    """A journal entry as the middleware writes one for an SDK's small request."""
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": f"Hi {number}"}]}
    return {
        "at": time.time(),
        "request_id": new_id("req"),
        "method": "POST",
        "path": "/v1/messages",
        "query": "",
        "headers": SDK_HEADERS,
        "body": body,
        "status": 200,
        "rule": "greeting",
    }


def open_store(path: Path) -> SQLiteStore:
    defaults = Settings()
    return SQLiteStore(
        path, max_journal_bytes=defaults.journal_max_mb * MIB, max_journal_entries=defaults.journal_max_entries
    )


def write(path: Path, count: int, results: Any) -> None:
    """One writer: `count` entries, timing each tenth of them (wall clock and CPU), and the largest WAL it saw."""
    store = open_store(path)
    tenth = count // TENTHS
    durations, cpu, largest_wal = [], [], 0
    for _ in range(TENTHS):
        started, started_cpu = time.perf_counter(), time.process_time()
        for number in range(tenth):
            store.add_entry(sdk_entry(number))
            if number % 1000 == 0:
                largest_wal = max(largest_wal, _size(store.wal_path))
        durations.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    results.append({"durations": durations, "cpu": cpu, "largest_wal": largest_wal, "per_tenth": tenth})


def store_alone(total: int, folder: Path) -> dict[str, Any]:
    path = folder / "state.sqlite3"
    open_store(path)  # the schema, made once before the writers start
    with multiprocessing.Manager() as manager:
        results = manager.list()
        writers = [
            multiprocessing.Process(target=write, args=(path, total // WRITERS, results)) for _ in range(WRITERS)
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        measured = list(results)
    rates = [
        sum(result["per_tenth"] for result in measured) / max(result["durations"][tenth] for result in measured)
        for tenth in range(TENTHS)
    ]
    cpu_us = [
        sum(result["cpu"][tenth] for result in measured) / sum(result["per_tenth"] for result in measured) * 1e6
        for tenth in range(TENTHS)
    ]
    return {
        "entries": total,
        "rates": rates,
        "cpu_us": cpu_us,
        "state_file_mb": _size(path) / MIB,
        "wal_mb": _size(Path(f"{path}-wal")) / MIB,
        "largest_wal_mb": max(result["largest_wal"] for result in measured) / MIB,
        "kept": _kept(path),
    }


def post_many(port: int, body: bytes, count: int, clients: int = 4) -> None:
    """`count` POST /v1/messages with `body`, over `clients` keep-alive connections."""

    def one_client(share: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"content-type": "application/json", "x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
        for _ in range(share):
            connection.request("POST", "/v1/messages", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"POST /v1/messages: {response.status}")
        connection.close()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one_client, [count // clients] * clients))


def files_mb(path: Path) -> dict[str, float]:
    return {"state_file_mb": _size(path) / MIB, "wal_mb": _size(Path(f"{path}-wal")) / MIB}


def rss_mb(server: ServerProcess) -> list[float]:
    sizes = []
    for pid in server.worker_pids():
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        sizes.append(int(status["VmRSS"].split()[0]) / 1024)
    return sizes


def through_http(small: int, large: int, folder: Path, **settings: str) -> dict[str, Any]:
    """A server with `settings` (UNDERSTUDY_* variables) sent `small` small requests and `large` of 1.04 MB."""
    (folder / "script.yaml").write_text("fallback: echo\nrules: []\n")
    path = folder / f"http-{len(settings)}.sqlite3"
    env = {
        "UNDERSTUDY_BACKEND": "scripted",
        "UNDERSTUDY_SCRIPT": str(folder / "script.yaml"),
        "UNDERSTUDY_STATE_FILE": str(path),
        "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY,
        "UNDERSTUDY_API_KEYS": API_KEY,
        **settings,
    }
    message = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}
    with ServerProcess(env, workers=WRITERS) as server:
        started = time.perf_counter()
        post_many(server.port, json.dumps(message).encode(), small)
        small_rate = small / (time.perf_counter() - started)
        after_small = files_mb(path)
        last_small = _last_id(path)
        big = {**message, "messages": [{"role": "user", "content": "x" * 1_040_000}]}
        post_many(server.port, json.dumps(big).encode(), large, clients=2)
        after_large = files_mb(path)
        rss_before = rss_mb(server)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        started = time.perf_counter()
        query = f"after={last_small}&limit=300"
        connection.request("GET", f"/_understudy/requests?{query}", headers={"x-understudy-admin-key": ADMIN_KEY})
        page = connection.getresponse().read()
        page_seconds = time.perf_counter() - started
        connection.close()
        rss_after = rss_mb(server)
    return {
        "small_rate": small_rate,
        "after_small": after_small,
        "after_large": after_large,
        "page_mb": len(page) / MIB,
        "page_entries": len(json.loads(page)["data"]),
        "page_seconds": page_seconds,
        "rss": list(zip(rss_before, rss_after, strict=True)),
    }


def _last_id(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT coalesce(max(id), 0) FROM journal").fetchone()[0])


def _kept(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM journal").fetchone()[0])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    options = parser.parse_args(argv)
    entries, small, large = (100_000, 2_000, 30) if options.quick else (1_000_000, 20_000, 300)
    with tempfile.TemporaryDirectory(prefix="understudy-bench-journal-") as folder:
        alone = store_alone(entries, Path(folder))
        by_default = through_http(small, large, Path(folder))
        whole_bodies = through_http(small, large, Path(folder), UNDERSTUDY_JOURNAL_MAX_BODY_BYTES=str(2 * MIB))
    print(f"store alone: {entries:,} entries from {WRITERS} processes, default limits")
    print("  inserts/s by tenth: " + ", ".join(f"{rate:,.0f}" for rate in alone["rates"]))
    print("  CPU µs per insert by tenth: " + ", ".join(f"{cpu:.0f}" for cpu in alone["cpu_us"]))
    print(
        f"  at the end: {alone['kept']:,} entries kept; state file {alone['state_file_mb']:.1f} MB, "
        f"WAL {alone['wal_mb']:.1f} MB (the largest seen {alone['largest_wal_mb']:.1f} MB)"
    )
    for title, figures in (("default limits", by_default), ("bodies kept up to 2 MB", whole_bodies)):
        print(f"through HTTP, {WRITERS} workers, {title}:")
        files = figures["after_small"]
        print(
            f"  {small:,} small requests ({figures['small_rate']:,.0f}/s): "
            f"state file {files['state_file_mb']:.1f} MB, WAL {files['wal_mb']:.1f} MB"
        )
        print(
            f"  then {large} of 1.04 MB: state file {figures['after_large']['state_file_mb']:.1f} MB, "
            f"WAL {figures['after_large']['wal_mb']:.1f} MB"
        )
        rss = ", ".join(f"{before:.0f} → {after:.0f} MB" for before, after in figures["rss"])
        print(
            f"  GET /_understudy/requests?limit=300 over them: {figures['page_entries']} entries, "
            f"{figures['page_mb']:.2f} MB in {figures['page_seconds']:.2f} s; worker RSS {rss}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
