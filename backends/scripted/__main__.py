"""`python -m backends.scripted SCRIPT...`: check scripts as the scripted backend loads them (`understudy check`).

A bad script is reported as `FILE:LINE: problem` on stderr and the exit
status is 1; a good one gets `FILE: OK, N rules` on stdout, after any
warnings the server would log about it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from backends.scripted.script import ScriptError, load_script


def check(paths: Sequence[str]) -> int:
    """Check each script; 1 if any is bad, else 0."""
    status = 0
    for path in paths:
        try:
            script, _source = load_script(Path(path))
        except ScriptError as error:
            print(error, file=sys.stderr)
            status = 1
            continue
        for warning in script.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        rules = len(script.rules)
        print(f"{path}: OK, {rules} rule{'s' if rules != 1 else ''}")
    return status


if __name__ == "__main__":
    sys.exit(check(sys.argv[1:]))
