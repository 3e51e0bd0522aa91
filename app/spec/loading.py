"""Loading openapi.yaml and the doors' specs beside it, the single source of routing and validation.

A door (Bedrock's InvokeModel, Vertex AI's rawPredict, the OpenAI-compatible
chat completions) is declared in a file of its own under `doors/`, beside
openapi.yaml, whose `$ref`s point into openapi.yaml's components as if it were
part of it: its paths and components are laid into the one document Connexion
routes and validates. A door's body that is a Messages body with changes says
so (`x-derived-from`: the schema, the fields it lacks) and lists only what it
adds; the loader writes the whole schema out, each API version's (`x-by-anthropic-version`)
alike, so that a field added to the Messages body is a field of every door's.

The document is used as written, with two switches: UNDERSTUDY_ALLOW_UNKNOWN_FIELDS
opens the top-level request schemas to fields the spec does not know, for
SDKs newer than the spec; the admin routes (tagged Admin) are served only
when an admin key is set, and /metrics (tagged Metrics too) only when
UNDERSTUDY_METRICS is on as well — without them, the spec also leaves out what
only they use (the tag, their security schemes, their schemas), so that neither
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
#: The doors' specs: every YAML file in this folder, beside openapi.yaml.
DOORS_DIRECTORY = SPEC_FILE.parent / "doors"
#: A door's schema that is another with changes: `{schema: <name>, without: [<field>, …]}`, its own
#: `properties` and `required` added.
DERIVED_FROM = "x-derived-from"
#: The request bodies whose unknown top-level fields the switch lets through.
TOP_LEVEL_REQUESTS = (
    "MessageCreateParams",
    "MessageCreateParams20230601",
    "MessageCountTokensParams",
    "MessageCountTokensParams20230601",
    # the doors' bodies that are Messages bodies (doors/bedrock.yaml, doors/vertex.yaml)
    "BedrockInvokeParams",
    "BedrockInvokeParams20230601",
    "VertexRawPredictParams",
    "VertexRawPredictParams20230601",
    "VertexCountTokensParams",
    "VertexCountTokensParams20230601",
)
ADMIN_TAG = "Admin"
METRICS_TAG = "Metrics"


def load_spec(
    *, allow_unknown_fields: bool = False, admin: bool = False, metrics: bool = False, path: Path = SPEC_FILE
) -> dict[str, Any]:
    """The spec as a dict of the caller's own, ready for Connexion's add_api."""
    spec = copy.deepcopy(_parsed(path, path.stat().st_mtime_ns, _doors(path.parent / DOORS_DIRECTORY.name)))
    if not admin:
        _leave_out(spec, ADMIN_TAG)
    if not metrics:
        _leave_out(spec, METRICS_TAG)
    if allow_unknown_fields:
        for name in TOP_LEVEL_REQUESTS:
            spec["components"]["schemas"][name]["additionalProperties"] = True
    return spec


def _leave_out(spec: dict[str, Any], tag: str) -> None:
    """Take the routes tagged `tag` out of `spec`, with the tag, security schemes and components only they use."""
    kept: dict[str, Any] = {}
    left_out: dict[str, Any] = {}
    for route, operations in spec["paths"].items():
        is_tagged = any(tag in operation.get("tags", ()) for operation in _operations(operations))
        (left_out if is_tagged else kept)[route] = operations
    spec["paths"] = kept
    spec["tags"] = [named for named in spec.get("tags", []) if named["name"] != tag]
    components = spec["components"]
    used = {name for path_item in kept.values() for operation in _operations(path_item) for name in _schemes(operation)}
    components["securitySchemes"] = {name: it for name, it in components["securitySchemes"].items() if name in used}
    # Left out: what the admin routes reach and nothing else does, neither a kept route nor another component
    # (one no route refers to, such as MessageStreamEvent, is there for the spec's readers).
    reached_by_admin = _reached(spec, left_out)
    every_component = [f"#/components/{family}/{name}" for family, named in components.items() for name in named]
    others = [lookup(spec, ref) for ref in every_component if ref not in reached_by_admin]
    for ref in reached_by_admin - _reached(spec, kept, *others):
        family, name = ref.split("/")[2:]
        del components[family][name]


def _operations(path_item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A path's operations (its other keys, `parameters`, are the path's own)."""
    return (operation for key, operation in path_item.items() if key != "parameters")


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


def _doors(directory: Path) -> tuple[tuple[Path, int], ...]:
    """The doors' spec files, each with its mtime (in name order: the order their paths are routed in)."""
    return tuple((door, door.stat().st_mtime_ns) for door in sorted(directory.glob("*.yaml")))


@functools.lru_cache(maxsize=1)
def _parsed(path: Path, modified_ns: int, doors: tuple[tuple[Path, int], ...]) -> dict[str, Any]:
    """The spec file with the doors' laid in, as parsed, kept while no file changes (`…_ns`: mtimes)."""
    spec: dict[str, Any] = safe_load(path.read_text(encoding="utf-8"))
    for door, _ in doors:
        _lay_in(spec, safe_load(door.read_text(encoding="utf-8")), door.name)
    schemas = spec["components"]["schemas"]
    for name, schema in schemas.items():
        if DERIVED_FROM in schema:
            schemas[name] = _derived(schema, schemas)
    return spec


def _lay_in(spec: dict[str, Any], door: dict[str, Any], name: str) -> None:
    """Add a door's paths, tags and components to `spec`; a name both declare is a mistake (ValueError)."""
    for route in door.get("paths", {}):
        if route in spec["paths"]:
            raise ValueError(f"{name}: the path {route} is declared twice")
    # Connexion routes a request by trying each path in order: the first-party create (the file's first path)
    # stays first, the doors' come straight after it, and the rarer routes (batches, files, models) after them.
    first, *rest = spec["paths"].items()
    spec["paths"] = dict([first, *door.get("paths", {}).items(), *rest])
    spec["tags"] = [*spec.get("tags", []), *door.get("tags", [])]
    for family, members in door.get("components", {}).items():
        known = spec["components"].setdefault(family, {})
        for member in members:
            if member in known:
                raise ValueError(f"{name}: components/{family}/{member} is declared twice")
        known.update(members)


def _derived(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The whole schema an `x-derived-from` schema stands for: its base less the fields it lacks, plus its own."""
    source = schema[DERIVED_FROM]
    base = schemas[source["schema"]]
    without = set(source.get("without", ()))
    derived = {name: value for name, value in base.items() if name not in ("x-by-anthropic-version", "example")}
    derived.update({name: value for name, value in schema.items() if name not in ("properties", "required")})
    del derived[DERIVED_FROM]
    derived["properties"] = {
        **{name: value for name, value in base.get("properties", {}).items() if name not in without},
        **schema.get("properties", {}),
    }
    derived["required"] = [
        *(name for name in base.get("required", ()) if name not in without),
        *schema.get("required", ()),
    ]
    return derived
