"""Where the server's files are, and the commands that run Python with them first on sys.path.

The server tree is the directory holding wsgi.py, gunicorn.conf.py,
openapi.yaml, app/ and backends/: the repository root in a checkout, and
`understudy/server/` when installed from the wheel. Commands built here run in
the caller's working directory, so relative paths in settings mean what they
mean to the caller, while the tree comes first on the child's sys.path, so it
imports the server's `app` and `backends`, never the caller's.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
#: Installed, the tree sits inside this package; in a checkout this is app/launcher/, two levels below it.
SERVER_TREE = _HERE / "server" if (_HERE / "server" / "wsgi.py").is_file() else _HERE.parents[1]
GUNICORN_CONFIG = SERVER_TREE / "gunicorn.conf.py"

# What `python -m MODULE ARGS` does, but with the tree where `python -m` puts the working directory.
# Run as `python -c _RUN_MODULE TREE MODULE ARGS`: sys.argv starts as ['-c', TREE, MODULE, ARGS...] and the
# module sees [its file, ARGS...], as under `python -m`.
_RUN_MODULE = (
    "import runpy, sys; sys.path[0] = sys.argv.pop(1); "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)


def gunicorn_command(target: str = "wsgi:app", *arguments: str) -> list[str]:
    """gunicorn serving `target` from the tree, with the tree's gunicorn.conf.py (so its worker class too)."""
    # `python -m` and gunicorn both put the working directory first on sys.path; --pythonpath then puts
    # the tree before it, so the server's `app` is the one found even where the caller has its own.
    return [
        sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG), "--pythonpath", str(SERVER_TREE),
        target, *arguments,
    ]  # fmt: skip


def python_command(module: str, *arguments: str) -> list[str]:
    """`python -m module arguments` with the tree first on sys.path and the working directory not on it."""
    return [sys.executable, "-c", _RUN_MODULE, str(SERVER_TREE), module, *arguments]
