"""The benchmark's outside tools, installed when missing: wrk and valgrind (Debian's packages), Prism and aimock
(npm, pinned).

wrk and valgrind come from `apt-get install -y` (after `apt-get update` if the
package lists are stale); Prism and aimock from `npm ci` (or `npm install`)
into bench/node_modules, at the versions pinned in bench/package.json and
bench/package-lock.json. A tool that is missing and cannot be installed raises
ToolMissing, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PRISM_BIN = BENCH / "node_modules" / ".bin" / "prism"
PRISM_PACKAGE = "@stoplight/prism-cli"
#: aimock's server CLI: `llmock` takes fixture files on its command line (the `aimock` bin wants a config file).
AIMOCK_BIN = BENCH / "node_modules" / ".bin" / "llmock"
AIMOCK_PACKAGE = "@copilotkit/aimock"
INSTALL_TIMEOUT = 600


class ToolMissing(Exception):
    """A tool the benchmark needs is not there and could not be installed."""


def ensure_wrk(*, install: bool = True) -> str:
    """The path of wrk, installing Debian's package when it is missing (and `install` allows)."""
    return ensure_debian_tool("wrk", install=install)


def ensure_debian_tool(name: str, *, install: bool = True) -> str:
    """The path of the command `name`, installing Debian's package of that name when it is missing (and allowed)."""
    found = shutil.which(name)
    if found:
        return found
    if not install:
        raise ToolMissing(f"{name} is not installed (and installing was not allowed)")
    if shutil.which("apt-get") is None:
        raise ToolMissing(f"{name} is not installed and there is no apt-get to install it with")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and shutil.which("sudo") is None:
        raise ToolMissing(f"{name} is not installed, and installing it needs root (apt-get install -y {name})")
    print(f"bench: installing {name} (apt-get install -y {name})", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _run([*sudo, "apt-get", "install", "-y", "-q", name], env=env):
        _run([*sudo, "apt-get", "update", "-q"], env=env)  # the package lists may be stale or missing
        _run([*sudo, "apt-get", "install", "-y", "-q", name], env=env)
    found = shutil.which(name)
    if not found:
        raise ToolMissing(f"{name} is not installed and `apt-get install -y {name}` did not install it")
    return found


def ensure_prism(*, install: bool = True) -> Path:
    """The path of the pinned Prism CLI, installing it into bench/node_modules when it is missing (and allowed)."""
    return _ensure_npm_tool("Prism", PRISM_PACKAGE, PRISM_BIN, install=install)


def ensure_aimock(*, install: bool = True) -> Path:
    """The path of the pinned aimock server CLI, installing it into bench/node_modules when missing (and allowed)."""
    return _ensure_npm_tool("aimock", AIMOCK_PACKAGE, AIMOCK_BIN, install=install)


def _ensure_npm_tool(label: str, package: str, binary: Path, *, install: bool) -> Path:
    pinned = pinned_version(package)
    if binary.exists() and installed_version(package) == pinned:
        return binary
    if not install:
        raise ToolMissing(f"{label} {pinned} is not installed in bench/ (and installing was not allowed)")
    npm = shutil.which("npm")
    if npm is None:
        raise ToolMissing(f"{label} is not installed and there is no npm to install it with")
    command = "ci" if (BENCH / "package-lock.json").exists() else "install"
    print(f"bench: installing {label} {pinned} (npm {command} in bench/)", flush=True)
    _run([npm, command, "--no-audit", "--no-fund", "--loglevel=error"], cwd=BENCH)
    if not binary.exists() or installed_version(package) != pinned:
        raise ToolMissing(f"{label} {pinned} is not installed and `npm {command}` in bench/ did not install it")
    return binary


def pinned_version(package: str) -> str:
    """The version of an npm package bench/package.json pins."""
    return str(json.loads((BENCH / "package.json").read_text())["devDependencies"][package])


def installed_version(package: str) -> str | None:
    installed = BENCH / "node_modules" / package / "package.json"
    return str(json.loads(installed.read_text())["version"]) if installed.exists() else None


def pinned_prism_version() -> str:
    return pinned_version(PRISM_PACKAGE)


def pinned_aimock_version() -> str:
    return pinned_version(AIMOCK_PACKAGE)


def _run(command: list[str], **options: object) -> bool:
    """Run an install step, its output shown; whether it succeeded (a hang counts as failure)."""
    try:
        return subprocess.run(command, timeout=INSTALL_TIMEOUT, check=False, **options).returncode == 0  # type: ignore[call-overload]
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"bench: {' '.join(command)} failed: {error}", flush=True)
        return False
