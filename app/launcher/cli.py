"""The `understudy` command: serve the API, check a script, tell the version.

    understudy serve [--host H] [--port P] [--workers N] [--backend NAME] [--script FILE] [--config FILE]
    understudy check SCRIPT...
    understudy --version

`serve` becomes gunicorn with the server tree's gunicorn.conf.py — the same
settings and worker class as `gunicorn wsgi:app` in a checkout — and the
process is replaced rather than wrapped, so Ctrl-C, SIGTERM and SIGHUP (reload)
reach gunicorn's master directly. Its options become the settings' environment
variables, winning over the environment as command-line options do; what they
do not say, the environment, UNDERSTUDY_CONFIG's file and the defaults (the
echo backend) decide, and the server checks it all as it starts. `check` loads
each script as the scripted backend does (`backends/scripted/__main__.py`), in
a child process whose sys.path starts with the server tree.

A mistaken option is one line on stderr and exit status 2; a bad setting is
the server's one-line configuration error (after gunicorn's "Starting" log
line) and status 1; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

from .server_tree import gunicorn_command, python_command

DISTRIBUTION = "messages-understudy"


class _Parser(argparse.ArgumentParser):
    """argparse, reporting a mistake on one line (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port (1-65535): {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    """The command line: `serve`, `check` and `--version`."""
    command = _Parser(prog="understudy", description="A spec-first stand-in server for Anthropic's Messages API.")
    command.add_argument("--version", action="version", version=f"understudy {_version()}")
    commands = command.add_subparsers(dest="command", required=True, metavar="{serve,check}")

    serve = commands.add_parser("serve", help="serve the API with gunicorn", description=serve_command.__doc__)
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=_port, default=8000, help="the port to listen on (default: %(default)s)")
    serve.add_argument("--workers", type=_positive, help="worker processes (default: WEB_CONCURRENCY, or one per core)")
    serve.add_argument("--backend", help="echo, scripted or proxy (default: echo; scripted when --script is given)")
    serve.add_argument("--script", help="the scripted backend's YAML script (UNDERSTUDY_SCRIPT)")
    serve.add_argument("--config", help="a YAML file of settings (UNDERSTUDY_CONFIG)")
    serve.set_defaults(run=serve_command)

    check = commands.add_parser("check", help="check scripted-backend scripts", description=check_command.__doc__)
    check.add_argument("scripts", nargs="+", metavar="SCRIPT", help="a YAML script")
    check.set_defaults(run=check_command)
    return command


def serve_command(options: argparse.Namespace) -> NoReturn:
    """Serve the Messages API with gunicorn, on the echo backend unless told otherwise."""
    host = f"[{options.host}]" if ":" in options.host else options.host  # an IPv6 address
    arguments = ["--bind", f"{host}:{options.port}"]
    if options.workers:
        arguments += ["--workers", str(options.workers)]
    command = gunicorn_command("wsgi:app", *arguments)
    os.execve(command[0], command, {**os.environ, **_settings(options)})


def _settings(options: argparse.Namespace) -> dict[str, str]:
    """The settings the options name, as the environment variables the server reads."""
    backend = options.backend or ("scripted" if options.script else None)
    named = {"UNDERSTUDY_BACKEND": backend, "UNDERSTUDY_SCRIPT": options.script, "UNDERSTUDY_CONFIG": options.config}
    return {variable: value for variable, value in named.items() if value is not None}


def check_command(options: argparse.Namespace) -> int:
    """Check scripts as the scripted backend loads them: `FILE:LINE: problem` and status 1, or an OK line."""
    return subprocess.run(python_command("backends.scripted", *options.scripts), check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    """The `understudy` console command; its exit status."""
    options = parser().parse_args(argv)
    status: int = options.run(options)
    return status
