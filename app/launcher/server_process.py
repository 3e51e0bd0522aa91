"""Run Understudy as a real server in a subprocess: gunicorn on a free loopback port.

The test suite uses it to test the server as clients meet it. Start-up waits
for /health with a deadline; the server's output is drained in a thread (so a
chatty server never blocks on a full pipe) and kept for failure messages;
stopping sends SIGTERM, waits, then kills. Inherited Anthropic credentials are
removed from the child's environment so a test can never reach the real API
by accident. The server runs in the caller's working directory (or `cwd`),
with the server tree first on its sys.path (`server_tree.py`).

The port is bound here, before gunicorn starts, and gunicorn inherits the
socket (`--bind fd://N`, a documented bind address): a port that is only free
when chosen can be taken by another process, a parallel test's client, say,
before gunicorn binds it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from .server_tree import gunicorn_command

SCRUBBED = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")


def bound_loopback_socket() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1, not yet listening: it holds the port for whoever inherits it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    return listener


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (free only until another process binds it)."""
    with bound_loopback_socket() as probe:
        return int(probe.getsockname()[1])


class ServerProcess:
    """One gunicorn server; use as a context manager, or call start() and stop(). It starts once."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        workers: int = 1,
        target: str = "wsgi:app",
        extra_args: Sequence[str] = (),
        cwd: Path | None = None,
    ) -> None:
        self._listener: socket.socket | None = bound_loopback_socket()
        self.port = int(self._listener.getsockname()[1])
        self.cwd = cwd
        self.workers = workers
        self.env = {key: value for key, value in os.environ.items() if key not in SCRUBBED}
        self.env.update(env or {})
        self.command = gunicorn_command(
            target, "--bind", f"fd://{self._listener.fileno()}", "--workers", str(workers), *extra_args
        )
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._draining: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        """Everything the server has printed so far."""
        return "".join(self.lines)

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the server and wait until /health answers; raise RuntimeError with its output if not."""
        if self._listener is None:
            raise RuntimeError("a ServerProcess starts once: its port went to the first server")
        # Only a command that binds the inherited socket gets it: held open in a process that binds the port
        # itself (a command set by hand, `understudy serve --port`), it would keep that bind from succeeding.
        inherited = (self._listener.fileno(),) if f"fd://{self._listener.fileno()}" in self.command else ()
        with self._listener:  # the server's copy is its own: this one must not keep the port open after it
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                pass_fds=inherited,
            )
        self._listener = None
        self._draining = threading.Thread(target=self._drain, daemon=True)
        self._draining.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._healthy() and self._all_workers_listen():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not start:\n{self.output}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; the exit code. The server's output is read to its end, and the pipe closed."""
        if self._listener is not None:  # never started
            self._listener.close()
            self._listener = None
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._draining is not None:
            self._draining.join(timeout)  # the pipe ends when the last process holding it (a worker, too) exits
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def worker_pids(self) -> list[int]:
        """The pids of the server's worker processes."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def _all_workers_listen(self) -> bool:
        """Whether every asgi worker has finished booting (other worker classes are not waited for).

        So tests meet the whole server: every worker takes its share of connections from the start. (Under
        uvloop, which gunicorn.conf.py does not use, a worker that gets SIGTERM while still loading the app
        would also lose the signal and serve on until the master kills it, graceful_timeout later.)
        """
        if any(arg in ("-k", "--worker-class") or arg.startswith("--worker-class=") for arg in self.command):
            return True
        return self.output.count("ASGI server listening") >= self.workers

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
