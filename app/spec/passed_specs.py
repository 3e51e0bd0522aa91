"""Specs that have passed Connexion's check against the OpenAPI schema, remembered in the process and on disk.

The check is most of what starting a server costs (0.2 to 0.5 s of a master's start, whose workers inherit
its verdict), and its verdict on the same spec never changes while Connexion and jsonschema stay the same. So
a spec that passed leaves an empty file named for a digest of the spec, Connexion's version and jsonschema's,
in the user's cache directory (`$XDG_CACHE_HOME/understudy`, else `~/.cache/understudy`), as pip and pre-commit
keep theirs; the next server to start with that spec skips the check. A spec that fails leaves nothing, and a
cache directory that cannot be written only means the check is made every time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

#: What the verdict also depends on: the code that checks, and the OpenAPI schema Connexion ships.
CHECKED_BY = ("connexion", "jsonschema")


def digest(spec: dict[str, Any]) -> str:
    """The name of `spec`'s record: its JSON with the checking packages' versions, hashed."""
    text = json.dumps([spec, _checking_versions()], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


#: The digests of the specs known to have passed, in this process (gunicorn's workers inherit the master's).
_passed_here: set[str] = set()


def has_passed(name: str) -> bool:
    """Whether a spec whose digest is `name` passed the check before: in this process, or any of this user's."""
    if name in _passed_here:
        return True
    try:
        found = (cache_directory() / name).exists()
    except RuntimeError:  # no home directory to find the cache in
        return False
    if found:
        _passed_here.add(name)
    return found


def remember_passed(name: str) -> None:
    """Record that the spec whose digest is `name` passed: here, and on disk where the cache can be written."""
    _passed_here.add(name)
    try:
        directory = cache_directory()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).touch()
    except (OSError, RuntimeError):  # a read-only or missing home directory
        pass


@functools.cache
def _checking_versions() -> dict[str, str]:
    return {name: version(name) for name in CHECKED_BY}


def cache_directory() -> Path:
    """Where the records are kept, under the XDG base directory for caches."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "understudy" / "passed-specs"
