"""Deterministic example values for a JSON schema: the echo backend's tool inputs.

`example(schema, hint)` builds the smallest sensible value that validates:
objects get their required properties, arrays their minimum length, strings
the hint (the user's text) when it fits, else a default, an example, an enum
value or a short placeholder. Candidates are checked with jsonschema, so the
result validates whenever a simple value can.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

Schema = Mapping[str, Any]
MAX_DEPTH = 32
FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
}


def example(schema: Schema, hint: str = "") -> Any:
    """A value that validates against `schema` (local `$ref`s resolved against it)."""
    return _Builder(schema, hint).build(schema, 0)


def is_valid(schema: Schema, value: Any) -> bool:
    """Whether `value` validates against `schema`, by the schema's own draft."""
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return validator_class(schema).is_valid(value)


class _Builder:
    def __init__(self, root: Schema, hint: str) -> None:
        self.root = root
        self.hint = hint

    def build(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
            return None
        if "$ref" in schema:
            return self.build(self._resolve(schema["$ref"]), depth + 1)
        for keyword in ("const", "default"):
            if keyword in schema:
                return schema[keyword]
        if schema.get("enum"):
            return schema["enum"][0]
        for keyword in ("oneOf", "anyOf"):
            if schema.get(keyword):
                return self._first_valid(schema[keyword], depth)
        if schema.get("allOf"):
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part["$ref"]) if "$ref" in part else part)
            return self.build(merged, depth + 1)
        return self._by_type(schema, _type_of(schema), depth)

    def _by_type(self, schema: Schema, kind: str, depth: int) -> Any:
        if kind == "object":
            required = schema.get("required", [])
            properties = schema.get("properties", {})
            return {name: self.build(properties.get(name, {}), depth + 1) for name in required}
        if kind == "array":
            item = self.build(schema.get("items", {}), depth + 1)
            return [item] * int(schema.get("minItems", 0))
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            return _number(schema, kind)
        if kind == "boolean":
            return False
        return None

    def _string(self, schema: Schema) -> str:
        if "format" in schema and schema["format"] in FORMATS:
            return FORMATS[schema["format"]]
        examples = schema.get("examples") or []
        candidates = [*examples, self.hint, "echo", "x" * int(schema.get("minLength", 1))]
        for candidate in candidates:
            if isinstance(candidate, str) and is_valid(schema, candidate):
                return candidate
        return candidates[-1]

    def _first_valid(self, options: list[Any], depth: int) -> Any:
        values = [self.build(option, depth + 1) for option in options]
        for option, value in zip(options, values, strict=True):
            if is_valid(self._standalone(option), value):
                return value
        return values[0]

    def _standalone(self, schema: Schema) -> Schema:
        """`schema` with the root's definitions beside it, so its `$ref`s still resolve."""
        definitions = {key: self.root[key] for key in ("$defs", "definitions") if key in self.root}
        return {**definitions, **schema}

    def _resolve(self, reference: str) -> Schema:
        if not reference.startswith("#"):
            return {}
        node: Any = self.root
        for part in reference.lstrip("#/").split("/") if reference != "#" else []:
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, Mapping) else {}
        return node if isinstance(node, Mapping) else {}


def _type_of(schema: Schema) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((option for option in kind if option != "null"), "null")
    if kind:
        return str(kind)
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "null"


def _number(schema: Schema, kind: str) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    if isinstance(schema.get("exclusiveMinimum"), (int, float)) or schema.get("exclusiveMinimum") is True:
        low = low + 1
    high = schema.get("maximum")
    value = low if high is None or low <= high else high
    step = schema.get("multipleOf")
    if step:
        value = -(-value // step) * step
    return int(value) if kind == "integer" else value
