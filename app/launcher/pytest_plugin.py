"""A pytest plugin, shipped with the package: start Understudy with a script in a few lines of a test.

    def test_my_agent_retries(understudy):
        server = understudy("examples/retry_on_529.yaml")      # or a list of rules, or YAML text
        with anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key) as client:
            ...
        assert [entry["status"] for entry in server.journal()] == [529, 200]

Each call of the `understudy` fixture starts a real server (gunicorn, the
scripted backend, on a free loopback port) and stops it after the test,
gracefully: a client left open keeps it draining until the client's
connection has been idle for gunicorn's keep-alive. The server is a process
of its own, whose sys.path starts with the server tree, so a project with
packages of its own named `app` or `backends` keeps importing those; it runs
in the test's working directory, so relative paths in `env` mean what they
mean to the test.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from .server_process import ServerProcess

Script = str | Path | list[Any] | Mapping[str, Any]


class ScriptedServer:
    """A running scripted server: where it is, its key, and its journal."""

    def __init__(self, process: ServerProcess, admin_key: str) -> None:
        self.process = process
        self.admin_key = admin_key
        self.api_key = "understudy-test-key"

    @property
    def base_url(self) -> str:
        return self.process.base_url

    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        """The requests the server received, oldest first (filters: path, method, rule, status, request_id)."""
        query = "&".join(f"{name}={value}" for name, value in {"limit": 1000, **filters}.items())
        entries: list[dict[str, Any]] = []
        page: Any = {"last_id": 0, "has_more": True}
        while page["has_more"]:  # a page stops at 1000 entries or 8 MB of them
            page = self._admin("GET", f"/_understudy/requests?{query}&after={page['last_id']}")
            entries += page["data"]
        return entries

    def reset(self) -> None:
        """Start every sequence again and empty the journal."""
        self._admin("POST", "/_understudy/reset")

    def _admin(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            self.base_url + path, method=method, headers={"x-understudy-admin-key": self.admin_key}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None


def _script_file(script: Script, folder: Path) -> Path:
    """A path as it is; YAML text or rules as data written to a file in the test's folder."""
    if isinstance(script, Path):
        return script.resolve()
    if isinstance(script, str) and "\n" not in script and script.endswith((".yaml", ".yml")):
        return Path(script).resolve()
    path = folder / "script.yaml"
    path.write_text(script if isinstance(script, str) else yaml.safe_dump(script), encoding="utf-8")
    return path


@pytest.fixture
def understudy(tmp_path: Path) -> Iterator[Callable[..., ScriptedServer]]:
    """Start Understudy's scripted backend with a script (a path, YAML text, or rules as data)."""
    started: list[ServerProcess] = []

    def start(script: Script, *, workers: int = 1, env: Mapping[str, str] | None = None) -> ScriptedServer:
        admin_key = secrets.token_hex(16)
        folder = tmp_path / f"understudy-{len(started)}"
        folder.mkdir()
        process = ServerProcess(
            {
                "UNDERSTUDY_BACKEND": "scripted",
                "UNDERSTUDY_SCRIPT": str(_script_file(script, folder)),
                "UNDERSTUDY_ADMIN_KEY": admin_key,
                "UNDERSTUDY_STATE_FILE": str(folder / "state.sqlite3"),
                **(env or {}),
            },
            workers=workers,
        )
        started.append(process)
        return ScriptedServer(process.start(), admin_key)

    yield start
    for process in started:
        process.stop()
