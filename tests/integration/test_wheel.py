"""The wheel on its own: built with `pip wheel .`, installed into a fresh venv, used from a project elsewhere.

One venv serves every test here (it takes most of the time: the build, then
pip installing the wheel and its dependencies, from pip's cache when warm).
The user's project sits outside the checkout and has top-level `app` and
`backends` packages of its own, neither of which has anything the server
needs: were the server to import them, it would not start.
"""

from __future__ import annotations

import configparser
import fcntl
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import anthropic
import pytest

from app.launcher.server_process import ServerProcess, free_port

from builders import REPO_ROOT

GOOD_SCRIPT = """\
rules:
  - name: greet
    match: {user_text: Hi}
    reply: {text: Hello from the script}
"""
BAD_SCRIPT = """\
rules:
  - name: greet
    reply: {text: hello, colour: blue}
"""
USER_TEST = """\
import anthropic
import app
import backends
import understudy


def test_the_fixture_serves_a_scripted_reply(understudy):
    server = understudy([{"name": "greet", "match": {"user_text": "Hi"}, "reply": {"text": "Hello from the script"}}])
    with anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key, max_retries=0) as client:
        reply = client.messages.create(
            model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
        )
    assert reply.content[0].text == "Hello from the script"
    assert [entry["rule"] for entry in server.journal()] == ["greet"]


def test_the_projects_own_packages_are_the_ones_it_imports():
    assert app.MARKER == "the user's app" and backends.MARKER == "the user's backends"
    assert "site-packages" in understudy.__file__
"""


@dataclass(frozen=True)
class Installed:
    """A venv with the wheel installed, and a user project next to it."""

    wheel: Path
    bin: Path
    project: Path

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """A command of the venv, run in the project, in an environment that knows nothing of the checkout."""
        environment = {"PATH": f"{self.bin}{os.pathsep}/usr/bin:/bin", "HOME": str(self.project)}
        return subprocess.run(
            [str(self.bin / command[0]), *command[1:]],
            cwd=self.project,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )


def _pinned_in_test_extra(*names: str) -> list[str]:
    """The test extra's pins of these packages, as setup.cfg gives them."""
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    pins = config["options.extras_require"]["test"].split()
    return [pin for pin in pins if pin.split("==")[0] in names]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Installed:
    """The venv and project, made once a run: under pytest-xdist, by the first worker to need them (stealing can
    split this module between workers), in the folder every worker's temporary folders share, under a lock."""
    if worker_id == "master":  # one process: pytest's fixture cache is enough
        root = tmp_path_factory.mktemp("wheel")
        _install(root)
    else:
        shared = tmp_path_factory.getbasetemp().parent
        root = shared / "wheel"
        with open(shared / "wheel.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not (root / "installed").exists():
                _install(root)
                (root / "installed").touch()
    [wheel] = (root / "dist").glob("*.whl")
    return Installed(wheel, root / "venv" / "bin", root / "project")


def _install(root: Path) -> None:
    _run([sys.executable, "-m", "pip", "wheel", str(REPO_ROOT), "--no-deps", "--quiet", "-w", str(root / "dist")])
    [wheel] = (root / "dist").glob("*.whl")
    _run([sys.executable, "-m", "venv", str(root / "venv")])
    python = str(root / "venv" / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", str(wheel)])
    # The server built with what the wheel alone installs, before the tests' tools come in: what it prints.
    server_tree = (
        "import sys; from understudy.server_tree import SERVER_TREE; sys.path.insert(0, str(SERVER_TREE)); import wsgi"
    )
    built = subprocess.run([python, "-c", server_tree], capture_output=True, text=True, timeout=120, cwd=root)
    assert built.returncode == 0, built.stderr
    (root / "server-build.stderr").write_text(built.stderr)
    _run([python, "-m", "pip", "install", "--quiet", *_pinned_in_test_extra("pytest", "anthropic")])

    project = root / "project"
    for package in ("app", "backends"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f'MARKER = "the user\'s {package}"\n')
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_with_understudy.py").write_text(USER_TEST)
    (project / "good.yaml").write_text(GOOD_SCRIPT)
    (project / "bad.yaml").write_text(BAD_SCRIPT)


def test_the_wheel_takes_one_top_level_name(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"understudy"}
    parts = ("openapi.yaml", "wsgi.py", "gunicorn.conf.py", "backends/scripted/schema.yaml", "doors/bedrock.yaml")
    for part in (*parts, "doors/vertex.yaml", "doors/openai.yaml"):
        assert f"understudy/server/{part}" in names


def test_the_fixture_works_in_a_project_with_its_own_app_and_backends(installed):
    result = installed.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_server_builds_without_a_warning_with_the_wheels_own_dependencies(installed):
    # Starlette warns at import unless httpx2 is installed (the SDK brings it, but a server has no SDK).
    assert (installed.wheel.parent.parent / "server-build.stderr").read_text() == ""


def test_version_and_help(installed):
    version = installed.run("understudy", "--version")
    assert version.returncode == 0 and version.stdout.strip() == "understudy 0.1.0"
    for command in ([], ["serve"], ["check"]):
        shown = installed.run("understudy", *command, "--help")
        assert shown.returncode == 0 and shown.stdout.startswith(f"usage: understudy {' '.join(command)}".rstrip())
    assert "--script" in installed.run("understudy", "serve", "--help").stdout


def test_check_passes_a_good_script_and_names_the_line_of_a_bad_one(installed):
    good = installed.run("understudy", "check", "good.yaml")
    assert good.returncode == 0 and good.stdout == "good.yaml: OK, 1 rule\n", good.stderr
    bad = installed.run("understudy", "check", "bad.yaml")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr == "bad.yaml:3: rules/0/reply: Additional properties are not allowed ('colour' was unexpected)\n"


def test_serve_answers_the_sdk(installed):
    server = ServerProcess(workers=1, cwd=installed.project)
    # ServerProcess's start-up wait and stop, for the venv's command instead of the checkout's gunicorn.
    server.command = [str(installed.bin / "understudy"), "serve", "--port", str(server.port), "--workers", "1"]
    with server, anthropic.Anthropic(base_url=server.base_url, api_key="any-key", max_retries=0, timeout=20) as client:
        reply = client.messages.create(
            model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "Hello, wheel"}]
        )
        # A door, from the specs the wheel carries beside openapi.yaml.
        door = client.post(
            "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/invoke",
            body={
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "Hi"}],
            },
            cast_to=object,
        )
    assert reply.content[0].text == "Hello, wheel"
    assert door["model"] == "claude-sonnet-4-5-20250929" and door["content"][0]["text"] == "Hi"
    assert "Using worker: app.http.worker.Worker" in server.output  # gunicorn.conf.py's, as in a checkout


def test_a_bad_option_or_setting_is_one_line_not_a_traceback(installed):
    option = installed.run("understudy", "serve", "--port", "eighty")
    assert option.returncode == 2
    assert option.stderr == (
        "understudy serve: error: argument --port: not a TCP port (1-65535): 'eighty' (see understudy serve --help)\n"
    )
    setting = installed.run("understudy", "serve", "--backend", "oracle", "--port", str(free_port()))
    assert setting.returncode == 1 and "Traceback" not in setting.stderr
    assert setting.stderr.splitlines()[-1] == (
        "understudy: configuration error: UNDERSTUDY_BACKEND: unknown backend 'oracle'; "
        "known backends: echo, proxy, scripted"
    )
