"""A real redis-server for the tests: the Debian package's binary, on a loopback port of its own, in a temp dir.

Started once per session (or per test, for the tests that stop it under load);
`stop` and `start` again on the same port and directory, so a test can take Redis
away from running servers and bring it back. Persistence is the append-only file
with fsync every second, as the README tells operators to configure it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from app.launcher.server_process import free_port


def redis_server_binary() -> str | None:
    """redis-server (or valkey-server) on the PATH, if installed."""
    return shutil.which("redis-server") or shutil.which("valkey-server")


class RedisServer:
    """One redis-server process on 127.0.0.1; `url` is what UNDERSTUDY_STATE_URL takes."""

    def __init__(self, directory: Path | None = None) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed: the README's test command installs it")
        self.binary = binary
        self.port = free_port()
        self.directory = Path(directory or tempfile.mkdtemp(prefix="understudy-redis-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start it and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop it (SIGTERM: it writes its append-only file first) and wait for it to go."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def flush(self) -> None:
        """Empty every database, between tests that share the server."""
        self.command("FLUSHALL")

    def command(self, *words: str) -> bytes:
        """One command in Redis's inline protocol; the first line of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall((" ".join(words) + "\r\n").encode())
            return connection.makefile("rb").readline()

    def close(self) -> None:
        """Stop it and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _answers(self) -> bool:
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()
