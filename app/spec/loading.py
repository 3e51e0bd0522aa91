"""Loading openapi.yaml, the single source of routing and validation.

The file is used as written, with two switches: UNDERSTUDY_ALLOW_UNKNOWN_FIELDS
opens the top-level request schemas to fields the spec does not know, for
SDKs newer than the spec; and the admin routes (tagged Admin) are served only
when an admin key is set — without them, the spec also leaves out what only
they use (the tag, their security scheme, their schemas), so that neither
routing nor the served copy (/openapi.json) shows any of it. Everything else
the spec says still holds.

The file is parsed once per process (and gunicorn's workers inherit the
master's parse): every app built, and the fuzz tests, get a copy of their own,
free to change (Connexion does).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.spec.references import lookup, references
from backends.safe_yaml import safe_load

SPEC_FILE = Path(__file__).resolve().parents[2] / "openapi.yaml"
#: The request bodies whose unknown top-level fields the switch lets through.
TOP_LEVEL_REQUESTS = (
    "MessageCreateParams",
    "MessageCreateParams20230601",
    "MessageCountTokensParams",
    "MessageCountTokensParams20230601",
)
ADMIN_TAG = "Admin"


def load_spec(*, allow_unknown_fields: bool = False, admin: bool = False, path: Path = SPEC_FILE) -> dict[str, Any]:
    """The spec as a dict of the caller's own, ready for Connexion's add_api."""
    spec = copy.deepcopy(_parsed(path, path.stat().st_mtime_ns))
    if not admin:
        _leave_out_admin(spec)
    if allow_unknown_fields:
        for name in TOP_LEVEL_REQUESTS:
            spec["components"]["schemas"][name]["additionalProperties"] = True
    return spec


def _leave_out_admin(spec: dict[str, Any]) -> None:
    """Take the routes tagged Admin out of `spec`, with the tag, security schemes and components only they use."""
    kept: dict[str, Any] = {}
    left_out: dict[str, Any] = {}
    for route, operations in spec["paths"].items():
        is_admin = any(ADMIN_TAG in operation.get("tags", ()) for operation in operations.values())
        (left_out if is_admin else kept)[route] = operations
    spec["paths"] = kept
    spec["tags"] = [tag for tag in spec.get("tags", []) if tag["name"] != ADMIN_TAG]
    components = spec["components"]
    used = {name for operations in kept.values() for operation in operations.values() for name in _schemes(operation)}
    components["securitySchemes"] = {name: it for name, it in components["securitySchemes"].items() if name in used}
    # Left out: what the admin routes reach and nothing else does, neither a kept route nor another component
    # (one no route refers to, such as MessageStreamEvent, is there for the spec's readers).
    reached_by_admin = _reached(spec, left_out)
    every_component = [f"#/components/{family}/{name}" for family, named in components.items() for name in named]
    others = [lookup(spec, ref) for ref in every_component if ref not in reached_by_admin]
    for ref in reached_by_admin - _reached(spec, kept, *others):
        family, name = ref.split("/")[2:]
        del components[family][name]


def _schemes(operation: dict[str, Any]) -> Iterator[str]:
    for requirement in operation.get("security", ()):
        yield from requirement


def _reached(spec: dict[str, Any], *roots: Any) -> set[str]:
    """Every `#/components/…` reference reachable from `roots`, following references."""
    reached: set[str] = set()
    pending = [ref for root in roots for ref in references(root)]
    while pending:
        ref = pending.pop()
        if ref not in reached:
            reached.add(ref)
            pending.extend(references(lookup(spec, ref)))
    return reached


@functools.lru_cache(maxsize=1)
def _parsed(path: Path, modified_ns: int) -> dict[str, Any]:
    """The spec file as parsed, kept while the file is unchanged (`modified_ns`: its mtime)."""
    parsed: dict[str, Any] = safe_load(path.read_text(encoding="utf-8"))
    return parsed
