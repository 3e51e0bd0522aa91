"""The Node clients the tests drive, installed by the tests themselves: `npm ci` in tests/node, once.

tests/node/package.json pins Claude Code and the TypeScript SDK (its
package-lock.json, every dependency). The first test that needs them runs
`npm ci --prefix tests/node` (the `node_clients` fixture), so the README's
test command is all a clean clone needs: pip cannot install npm packages,
and a run that never reaches these tests (`-m "not slow"`, one other file)
never downloads them. An install is stamped with its lock file's hash and
redone when the lock changes; a lock on a file keeps two runs in one
checkout from installing at once. Without node and npm on PATH the tests
skip, saying so; an install that fails fails them, with npm's output.
"""

from __future__ import annotations

import fcntl
import hashlib
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
#: Written into node_modules after an install: the hash of the package-lock.json installed (npm ci removes it).
STAMP = NODE_MODULES / ".understudy-installed"
#: Held while installing (tests/node/.npm-ci.lock, ignored by git).
INSTALL_LOCK = NODE_DIR / ".npm-ci.lock"
#: The longest an install may take: Claude Code brings a native binary of some 200 MB.
INSTALL_SECONDS = 900
#: A loopback port nothing listens on: where anything not bound for the base URL ends up.
DEAD_PROXY = "http://127.0.0.1:9"


def ensure_installed() -> None:
    """Install the pinned Node clients unless this very lock file is installed; skip without node and npm."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are not on PATH: the Node clients' tests need them (Node 20 or newer)")
    lock_hash = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    with INSTALL_LOCK.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if STAMP.exists() and STAMP.read_text() == lock_hash:
            return
        command = [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False)
        if result.returncode != 0:
            pytest.fail(f"npm ci --prefix tests/node exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        STAMP.write_text(lock_hash)


def offline_env(base_url: str, api_key: str, home: Path) -> dict[str, str]:
    """The whole environment of a Node client run: the server's URL and key, a home of its own, and nothing else
    that could reach the network (a proxy on a dead port catches whatever does not go to 127.0.0.1)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
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
