"""The four servers the benchmark measures, each a subprocess on its own loopback port.

- Understudy: `gunicorn wsgi:app` in the repo root, so with gunicorn.conf.py's
  defaults (the `asgi` worker, one worker per core) and no UNDERSTUDY_*
  setting, i.e. the echo backend as shipped.
- The bare-Flask baseline (baseline.py): the same number of gunicorn workers,
  `gthread` worker class. The clients keep their connections alive, as the
  SDKs do; the `sync` worker closes every connection after one answer and
  serves one connection at a time, so it would measure reconnects and
  queueing rather than Flask. gthread is gunicorn's keep-alive worker for
  plain WSGI apps.
- Prism (`prism mock openapi.yaml`), with its per-request log turned off, as
  Understudy's access log is.
- aimock (`llmock`, one Node process) with bench/aimock-fixtures.json: one
  fixture that answers the README's request with the text Understudy's echo
  gives, as a Message (or its stream of events); its log silent too.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
#: Where every bench saves its figures (not committed).
RESULTS = BENCH / "results"
#: Settings a developer's shell may carry that would change what is measured.
SCRUBBED_PREFIXES = ("UNDERSTUDY_", "ANTHROPIC_", "GUNICORN_CMD_ARGS", "AIMOCK_")
BASELINE_THREADS = 4


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def default_workers() -> int:
    """How many workers gunicorn.conf.py starts: WEB_CONCURRENCY, else one per core."""
    return int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1))


class Server:
    """One server process: started, waited for (health check with a deadline), measured, stopped."""

    def __init__(
        self, name: str, command: Sequence[str], *, cwd: Path, port: int, health: str, asgi_workers: int = 0
    ) -> None:
        self.name = name
        self.command = list(command)
        self.cwd = cwd
        self.port = port
        self.health = health
        #: For a gunicorn asgi server: how many workers to wait for. The health check passes once one
        #: serves; measuring before the others listen would load one worker with every connection.
        self.asgi_workers = asgi_workers
        self.process: subprocess.Popen[bytes] | None = None
        # The server's output, shown if it fails to start; closed (and so removed) with this object.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115

    def start(self) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith(SCRUBBED_PREFIXES)}
        self.process = subprocess.Popen(
            self.command, cwd=self.cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_until_healthy(self, timeout: float = 60.0) -> None:
        """Poll the health URL until it answers 200; raise RuntimeError with the server's output if not."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.health}", timeout=2) as answer:
                    if answer.status == 200 and self._output().count("ASGI server listening") >= self.asgi_workers:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start (exit code {self.process.poll()}):\n{self._output()[-3000:]}")

    def _output(self) -> str:
        # pread, not seek and read: the server writes through the same file offset.
        fd = self.log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait, then SIGKILL (the server's own process group: a gunicorn master and its workers)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: a gunicorn master's children, or the process itself."""
        assert self.process is not None
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children] or [pid]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the serving processes."""
        return sum(cpu_seconds(pid) for pid in self.worker_pids())


class ConfiguredServer(Server):
    """A bench server started with some UNDERSTUDY_* settings of its own."""

    def __init__(self, name: str, env: dict[str, str], command: list[str] | None = None) -> None:
        port = free_port()
        command = command or [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}"]
        workers = int(env.get("WEB_CONCURRENCY", default_workers()))
        super().__init__(name, command, cwd=REPO, port=port, health="/health", asgi_workers=workers)
        self.env = env

    def start(self) -> None:
        environment = {key: value for key, value in os.environ.items() if not key.startswith(SCRUBBED_PREFIXES)}
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env={**environment, **self.env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class RedisServer:
    """A redis-server on a free loopback port, its files in a temporary directory, run as tests/redis_server.py
    runs one: the append-only file fsynced every second, as the README advises operators."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="understudy-bench-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return cpu_seconds(self.process.pid)

    def command(self, *words: str) -> bytes:
        """One command in Redis's inline protocol; its answer's first line, or a bulk string's value."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall((" ".join(words) + "\r\n").encode())
            answer = connection.makefile("rb")
            line = answer.readline()
            return answer.readline().rstrip(b"\r\n") if line.startswith(b"$") and line != b"$-1\r\n" else line

    def _answers(self) -> bool:
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """A process's resident set size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_sockets(pid: int) -> int:
    """How many sockets a process holds open."""
    count = 0
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while we looked
            count += os.readlink(entry).startswith("socket:")
    return count


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def understudy(tree: Path = REPO, name: str = "understudy") -> Server:
    """Understudy as `gunicorn wsgi:app` runs it in `tree`: this checkout, or another (an earlier commit, say)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}"]
    return Server(name, command, cwd=tree, port=port, health="/health", asgi_workers=default_workers())


def flask_baseline(workers: int) -> Server:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "baseline:app", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--worker-class", "gthread", "--threads", str(BASELINE_THREADS),
        "--keep-alive", "2", "--no-control-socket",
    ]  # fmt: skip
    return Server("flask", command, cwd=BENCH, port=port, health="/health")


def prism(prism_bin: Path) -> Server:
    port = free_port()
    spec = str(REPO / "openapi.yaml")
    command = [str(prism_bin), "mock", spec, "--host", "127.0.0.1", "--port", str(port), "--verboseLevel", "silent"]
    return Server("prism", command, cwd=BENCH, port=port, health="/health")


def aimock(aimock_bin: Path) -> Server:
    port = free_port()
    fixtures = str(BENCH / "aimock-fixtures.json")
    command = [
        str(aimock_bin), "--port", str(port), "--host", "127.0.0.1", "--fixtures", fixtures, "--log-level", "silent"
    ]  # fmt: skip
    return Server("aimock", command, cwd=BENCH, port=port, health="/health")


def start_all(servers: Sequence[Server], timeout: float = 90.0) -> None:
    """Start every server at once, then wait for each (in threads: start-up is mostly waiting)."""
    for server in servers:
        server.start()
    failures: list[BaseException] = []

    def wait(server: Server) -> None:
        try:
            server.wait_until_healthy(timeout)
        except BaseException as error:
            failures.append(error)

    waiters = [threading.Thread(target=wait, args=(server,)) for server in servers]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()
    if failures:
        raise failures[0]


def save_results(name: str, figures: Any, *, quick: bool = False) -> Path:
    """Save a bench's figures as bench/results/NAME-STAMP.json (-quick for a smoke run), say where, and return it."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    saved = RESULTS / f"{name}-{stamp}{'-quick' if quick else ''}.json"
    saved.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"saved {saved.relative_to(REPO)}")
    return saved


def round_options(argv: list[str] | None, doc: str, *, default_rounds: int, needs: str = "wrk") -> argparse.Namespace:
    """The options of a bench that measures in interleaved rounds: --quick, --rounds (resolved: `default_rounds`, or
    1 with --quick) and --no-install (the tools it `needs` must then be there)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round: a smoke run")
    parser.add_argument(
        "--rounds", type=int, default=None, help=f"interleaved rounds (default {default_rounds}; 1 with --quick)"
    )
    parser.add_argument("--no-install", action="store_true", help=f"install nothing ({needs} must be there)")
    options = parser.parse_args(argv)
    options.rounds = options.rounds or (1 if options.quick else default_rounds)
    return options
