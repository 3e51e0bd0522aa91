"""A pytest plugin, shipped with the package: Understudy with a script, in a few lines of a test.

Two ways to meet a server. `understudy` starts one for a test:

    def test_my_agent_retries(understudy):
        server = understudy("examples/retry_on_529.yaml")      # or a list of rules, or YAML text
        with anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key) as client:
            ...
        assert [entry["status"] for entry in server.journal()] == [529, 200]

`understudy_shared` is one server for the whole session, started with the
script named once (`understudy_script` in the pytest ini file, or a session
fixture of that name), where each test works in a scope of its own: its own
sequences, journal, caches, batches, files and rate limits, so tests neither
see nor consume each other's state, and none pays for a server's start:

    def test_my_agent_retries(understudy_shared):
        with anthropic.Anthropic(**understudy_shared.client_options) as client:
            ...
        assert [entry["status"] for entry in understudy_shared.journal()] == [529, 200]

Under pytest-xdist the shared server is one for the whole run: the first
worker to need it starts it, under a lock, and records where it is in a folder
the controller gave every worker; the others attach. The controller stops it
once every worker is done (`pytest_sessionfinish`), and only then: a worker
that finishes early cannot stop a server another still uses, nor can one that
attaches late find it gone. The server outlives the worker that started it, so
its output goes to a file in that worker's temporary folder, not to a pipe.

Either server is a real one (gunicorn, the scripted backend, on a free
loopback port), stopped gracefully: a client left open keeps it draining until
the client's connection has been idle for gunicorn's keep-alive. It is a
process of its own, whose sys.path starts with the server tree, so a project
with packages of its own named `app` or `backends` keeps importing those; it
runs in the test's working directory, so relative paths in settings mean what
they mean to the test.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .server_process import SCRUBBED, ServerProcess, bound_loopback_socket
from .server_tree import gunicorn_command

Script = str | Path | list[Any] | Mapping[str, Any]

#: The header a request names its scope in (the server's backends/state/scopes.py, not importable here).
SCOPE_HEADER = "x-understudy-scope"
#: The key the fixtures' clients send: the servers they start accept any.
API_KEY = "understudy-test-key"

#: Under pytest-xdist: the folder where the run's shared server is recorded, as the controller hands it to workers.
_HOME = "understudy_shared_home"
_HOME_KEY = pytest.StashKey[Path]()
#: How many times this process has given each test (by node id) a scope: a rerun gets a fresh one.
_ATTEMPTS_KEY = pytest.StashKey[Counter[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("understudy_script", "understudy_shared: the shared server's script, a path relative to this file")
    parser.addini("understudy_workers", "understudy_shared: the shared server's gunicorn workers", default="1")


class _AdminClient:
    """A server's journal and reset, through its admin API, in the scope `headers` names (none: the default scope)."""

    api_key = API_KEY

    def __init__(self, base_url: str, admin_key: str, headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url
        self.admin_key = admin_key
        #: The headers a client sends besides its key (the shared server's: the test's scope).
        self.headers = dict(headers or {})

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
        headers = {**self.headers, "x-understudy-admin-key": self.admin_key}
        request = urllib.request.Request(self.base_url + path, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None


class ScriptedServer(_AdminClient):
    """A running scripted server of the test's own: where it is, its key, and its journal."""

    def __init__(self, process: ServerProcess, admin_key: str) -> None:
        super().__init__(process.base_url, admin_key)
        self.process = process


def _script_file(script: Script, folder: Path) -> Path:
    """A path as it is; YAML text or rules as data written to a file in the test's folder."""
    if isinstance(script, Path):
        return script.resolve()
    if isinstance(script, str) and "\n" not in script and script.endswith((".yaml", ".yml")):
        return Path(script).resolve()
    path = folder / "script.yaml"
    path.write_text(script if isinstance(script, str) else yaml.safe_dump(script), encoding="utf-8")
    return path


def _scripted_env(script: Script, folder: Path, admin_key: str) -> dict[str, str]:
    """The settings of a scripted server whose files (script, state) are in `folder`."""
    return {
        "UNDERSTUDY_BACKEND": "scripted",
        "UNDERSTUDY_SCRIPT": str(_script_file(script, folder)),
        "UNDERSTUDY_ADMIN_KEY": admin_key,
        "UNDERSTUDY_STATE_FILE": str(folder / "state.sqlite3"),
    }


@pytest.fixture
def understudy(tmp_path: Path) -> Iterator[Callable[..., ScriptedServer]]:
    """Start Understudy's scripted backend with a script (a path, YAML text, or rules as data)."""
    started: list[ServerProcess] = []

    def start(script: Script, *, workers: int = 1, env: Mapping[str, str] | None = None) -> ScriptedServer:
        admin_key = secrets.token_hex(16)
        folder = tmp_path / f"understudy-{len(started)}"
        folder.mkdir()
        process = ServerProcess({**_scripted_env(script, folder, admin_key), **(env or {})}, workers=workers)
        started.append(process)
        return ScriptedServer(process.start(), admin_key)

    yield start
    for process in started:
        process.stop()


# ------------------------------------------------------------------------------------------ the shared server


@dataclass(frozen=True)
class SharedServer:
    """The session's one server, as every process of the run finds it."""

    base_url: str
    admin_key: str
    pid: int
    #: Its script, state file and output (server.log).
    folder: str


class ScopedServer(_AdminClient):
    """The shared server as one test sees it: a scope of the test's own, named in every request's headers."""

    def __init__(self, server: SharedServer, scope: str) -> None:
        super().__init__(server.base_url, server.admin_key, {SCOPE_HEADER: scope})
        self.server = server
        self.scope = scope

    @property
    def client_options(self) -> dict[str, Any]:
        """Where, with what key and in what scope: `anthropic.Anthropic(**scoped.client_options, max_retries=0)`."""
        return {"base_url": self.base_url, "api_key": self.api_key, "default_headers": dict(self.headers)}


@pytest.fixture(scope="session")
def understudy_script(pytestconfig: pytest.Config) -> Script:
    """The shared server's script: the ini option `understudy_script`; override this fixture to give it in code."""
    named = str(pytestconfig.getini("understudy_script")).strip()
    if not named:
        pytest.fail(
            "understudy_shared needs a script: set `understudy_script = path/to/script.yaml` in the pytest ini file, "
            "or define a session fixture `understudy_script` returning a path, YAML text or rules",
            pytrace=False,
        )
    base = pytestconfig.inipath.parent if pytestconfig.inipath is not None else pytestconfig.invocation_params.dir
    return base / named


@pytest.fixture(scope="session")
def understudy_shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, understudy_script: Script
) -> Iterator[SharedServer]:
    """The session's one scripted server: under pytest-xdist, the whole run's (the controller stops it)."""
    workers = int(request.config.getini("understudy_workers"))

    def start() -> SharedServer:
        return _start_shared(understudy_script, tmp_path_factory.mktemp("understudy-shared"), workers)

    worker_input: dict[str, Any] = getattr(request.config, "workerinput", {})
    if _HOME not in worker_input:  # one process: the server is this session's, stopped after it
        server = start()
        yield server
        _stop(server)
    else:
        yield _attach(Path(worker_input[_HOME]), worker_input["workerid"], start)


@pytest.fixture
def understudy_shared(request: pytest.FixtureRequest, understudy_shared_server: SharedServer) -> ScopedServer:
    """The session's shared server, in a scope of this test's own."""
    attempts = request.config.stash.setdefault(_ATTEMPTS_KEY, Counter())
    attempts[request.node.nodeid] += 1
    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")
    scope = _scope_name(request.node.name, f"{worker}\n{request.node.nodeid}\n{attempts[request.node.nodeid]}")
    return ScopedServer(understudy_shared_server, scope)


def _scope_name(test_name: str, identity: str) -> str:
    """A scope's name for a test: the test's name, to read in a journal, and a hash of which test, where, which run.

    The worker is in the hash because `--dist each` runs a test in every worker at once; the run, because a test
    run again (a plugin's rerun) must not continue the sequences its first run left. Within the header's pattern.
    """
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name).strip("-_.")[:40]
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"{readable}-{digest}" if readable else digest


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's controller, starting a worker: give it the folder where the run's shared server is recorded."""
    if _HOME_KEY not in node.config.stash:
        node.config.stash[_HOME_KEY] = Path(tempfile.mkdtemp(prefix="understudy-shared-"))
    node.workerinput[_HOME] = str(node.config.stash[_HOME_KEY])


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Iterator[None]:
    """pytest-xdist's controller, after every worker is done (and taken down): stop the run's shared server."""
    try:
        return (yield)
    finally:
        home = session.config.stash.get(_HOME_KEY, None)
        if home is not None:
            if (home / "server.json").exists():
                _stop(SharedServer(**json.loads((home / "server.json").read_text())["server"]))
            shutil.rmtree(home, ignore_errors=True)


def _attach(home: Path, worker: str, start: Callable[[], SharedServer]) -> SharedServer:
    """The run's server, as recorded in `home`: started by the first worker to ask, under a lock the others wait on."""
    record = home / "server.json"
    with open(home / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        known: dict[str, Any] = (
            json.loads(record.read_text()) if record.exists() else {"server": asdict(start()), "workers": []}
        )
        known["workers"].append(worker)  # who attached, for the curious: stopping it is the controller's
        record.write_text(json.dumps(known))
    return SharedServer(**known["server"])


def _start_shared(script: Script, folder: Path, workers: int, timeout: float = 30.0) -> SharedServer:
    """A scripted server that may outlive the process starting it, as ServerProcess.start starts one otherwise.

    posix_spawn rather than subprocess.Popen: the server is not this process's to keep (a Popen still running
    when collected warns), and its output goes to a file, which no reader's exit can close under it.
    """
    admin_key = secrets.token_hex(16)
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED}
    env.update(_scripted_env(script, folder, admin_key))
    log = folder / "server.log"
    with bound_loopback_socket() as listener, open(log, "wb") as output, open(os.devnull, "rb") as nothing:
        os.set_inheritable(listener.fileno(), True)  # gunicorn serves on this socket: `--bind fd://N`
        command = gunicorn_command("wsgi:app", "--bind", f"fd://{listener.fileno()}", "--workers", str(workers))
        pid = os.posix_spawn(
            command[0],
            command,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, nothing.fileno(), 0),
                (os.POSIX_SPAWN_DUP2, output.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, output.fileno(), 2),
            ],
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # Python ignores these; the server expects them as usual
        )
        server = SharedServer(f"http://127.0.0.1:{listener.getsockname()[1]}", admin_key, pid, str(folder))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _gone(pid):
        # Every worker listening, as ServerProcess waits for: each takes its share of connections from the start.
        if _answers(server.base_url) and log.read_text(errors="replace").count("ASGI server listening") >= workers:
            return server
        time.sleep(0.1)
    _stop(server)
    raise RuntimeError(f"the shared server did not start:\n{log.read_text(errors='replace')}")


def _stop(server: SharedServer, timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL, as ServerProcess.stop does, to a server this process may not have started."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        if _gone(server.pid):
            return
        with contextlib.suppress(ProcessLookupError):  # it may exit between the look and the signal
            os.kill(server.pid, sent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _gone(server.pid):
                return
            time.sleep(0.05)


def _gone(pid: int) -> bool:
    """Whether the process has exited: reaped here if it is this process's child, else no longer running."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # another's child: the worker's that started it, or init's once that worker exited
        pass
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # no such process, or another user's: ours is gone either way
        return True
    try:  # a zombie has exited, and waits for a parent that may be slow to reap it
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:  # no /proc here: running, as far as can be told
        return False


def _answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
