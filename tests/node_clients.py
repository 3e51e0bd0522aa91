"""The Node clients the tests drive: Claude Code and the TypeScript SDK, installed by the README's test command.

tests/node/package.json pins them (its package-lock.json, every dependency),
and the README's test command installs them with `npm ci --prefix tests/node`
before pytest starts: pip cannot install npm packages, and no test downloads
anything. Without node and npm on PATH the tests skip, saying so; with them,
an install that is missing or older than the lock file fails the tests,
naming the command that installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from builders import REPO_ROOT

NODE_DIR = REPO_ROOT / "tests" / "node"
NODE_MODULES = NODE_DIR / "node_modules"
CLAUDE = NODE_MODULES / ".bin" / "claude"
#: What `npm ci` writes last: the lock file as installed.
INSTALLED_LOCK = NODE_MODULES / ".package-lock.json"
#: A loopback port nothing listens on: where anything not bound for the base URL ends up.
DEAD_PROXY = "http://127.0.0.1:9"


def ensure_installed() -> None:
    """Skip without node and npm; fail unless the pinned Node clients are installed from this lock file."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node and npm are not on PATH: the Node clients' tests need them (Node 20 or newer)")
    lock = NODE_DIR / "package-lock.json"
    if not INSTALLED_LOCK.exists() or INSTALLED_LOCK.stat().st_mtime < lock.stat().st_mtime:
        pytest.fail("the Node clients are not installed from tests/node's lock file: run npm ci --prefix tests/node")


def offline_env(base_url: str, api_key: str, home: Path) -> dict[str, str]:
    """The whole environment of a Node client run: the server's URL and key, a home of its own (with the temporary
    directory in it, made here: Claude Code keeps its Bash tool's output and a socket there, and would leave them in
    /tmp), and nothing else that could reach the network (a proxy on a dead port catches whatever does not go to
    127.0.0.1)."""
    temporary = home / "tmp"
    temporary.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(temporary),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "HTTPS_PROXY": DEAD_PROXY,
        "HTTP_PROXY": DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def run_claude(prompt: str, env: dict[str, str], cwd: Path, *flags: str) -> dict[str, Any]:
    """`claude -p PROMPT --output-format json` (headless), its JSON result; fails with its output if it fails."""
    command = [str(CLAUDE), "-p", prompt, "--output-format", "json", *flags]
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"claude exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    outcome: dict[str, Any] = json.loads(result.stdout)
    return outcome


def run_node_script(script: Path, env: dict[str, str]) -> Any:
    """Run a .mjs script with node from tests/node (where it finds the packages); its stdout, parsed as JSON."""
    node = shutil.which("node")
    assert node, "node is not on PATH"
    result = subprocess.run(
        [node, str(script)], env=env, cwd=NODE_DIR, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{script.name} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)
