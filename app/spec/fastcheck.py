"""A compiled yes/no check of a request against its schema, for the common case: a valid request.

jsonschema interprets a schema as it validates, building a validator object
for every sub-schema it visits; in py-spy profiles of the echo benchmark that
was the largest single cost of a request (some 20% of a worker's time, for a
one-message body). This module compiles a schema once into nested closures
that answer only "valid?", with exactly the rules of Connexion's
Draft4RequestValidator (Draft 4, plus `nullable` for `type` and `enum`), a
`pattern` read as ECMA 262 reads it (patterns.py), as validators.py has it.

It only ever short-cuts a success: when the check says valid, the request is
valid; otherwise jsonschema validates as before and words the error, so every
error message is unchanged. A schema using a Draft 4 keyword not compiled
here gets no check at all (`passes` is then always False), so a keyword added
to openapi.yaml later can never be skipped. Keywords Draft 4 does not know
(description, example, x-…) are ignored, as jsonschema ignores them.
`tests/unit/test_fastcheck.py` holds the check to jsonschema's verdict on
generated and mutated requests for every request schema in the spec.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from connexion.json_schema import Draft4RequestValidator
from jsonschema import Draft4Validator

from app.spec.patterns import ecma_search

Check = Callable[[Any], bool]

#: Every keyword Draft 4 validates; a schema using one that is not compiled below gets no fast check.
DRAFT4_KEYWORDS = frozenset(Draft4RequestValidator.VALIDATORS)
COMPILED = frozenset(
    {
        "type", "enum", "properties", "required", "additionalProperties", "items", "oneOf", "anyOf", "allOf",
        "not", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern", "format",
    }
)  # fmt: skip
FORMAT_CHECKER = Draft4Validator.FORMAT_CHECKER


def _is_number(instance: Any) -> bool:
    return isinstance(instance, numbers.Number) and not isinstance(instance, bool)


#: Draft 4's types, as jsonschema's draft 4 type checker tells them.
TYPES: dict[str, Check] = {
    "array": lambda instance: isinstance(instance, list),
    "boolean": lambda instance: isinstance(instance, bool),
    "integer": lambda instance: isinstance(instance, int) and not isinstance(instance, bool),
    "null": lambda instance: instance is None,
    "number": _is_number,
    "object": lambda instance: isinstance(instance, dict),
    "string": lambda instance: isinstance(instance, str),
}


class Unsupported(Exception):
    """The schema uses something this module does not compile."""


_compiled: dict[int, tuple[Mapping[str, Any], Check | None]] = {}


def passes(schema: Mapping[str, Any], instance: Any) -> bool:
    """True when `instance` is valid against `schema`; False when it is not, or when that is for jsonschema to say."""
    cached = _compiled.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, compile_check(schema))
        _compiled[id(schema)] = cached
    check = cached[1]
    if check is None:
        return False
    try:
        return check(instance)
    except RecursionError:
        return False  # jsonschema decides (and the caller reports a body nested too deeply)


def compile_check(schema: Mapping[str, Any]) -> Check | None:
    """The compiled check of `schema`, or None when it uses a keyword not compiled here."""
    try:
        return _Compiler().compile(schema)
    except Unsupported:
        return None


class _Compiler:
    """Compiles one schema; shared and recursive sub-schemas (the resolved spec has both) are compiled once."""

    def __init__(self) -> None:
        self.done: dict[int, Check] = {}
        self.pending: dict[int, list[Check]] = {}
        self.schemas: list[Any] = []  # keeps every compiled schema alive, so no id is reused meanwhile

    def compile(self, schema: Any) -> Check:
        key = id(schema)
        if key in self.done:
            return self.done[key]
        if key in self.pending:  # a schema that contains itself: call it through its cell once compiled
            pending = self.pending[key]
            return lambda instance: pending[0](instance)
        if not isinstance(schema, dict):
            raise Unsupported(f"a schema that is not an object: {schema!r}")
        self.schemas.append(schema)
        cell: list[Check] = []
        self.pending[key] = cell
        check = _all(self._keywords(schema))
        cell.append(check)
        del self.pending[key]
        self.done[key] = check
        return check

    def _keywords(self, schema: dict[str, Any]) -> list[Check]:
        unknown = (schema.keys() & DRAFT4_KEYWORDS) - COMPILED
        if unknown:
            raise Unsupported(f"keywords {sorted(unknown)}")
        nullable = schema.get("x-nullable") is True or bool(schema.get("nullable"))
        checks = [
            _nullable(_type(schema["type"]), nullable) if "type" in schema else None,
            _nullable(_enum(schema["enum"]), nullable) if "enum" in schema else None,
            self._properties(schema["properties"]) if "properties" in schema else None,
            _required(schema["required"]) if "required" in schema else None,
            self._additional(schema) if "additionalProperties" in schema else None,
            self._items(schema["items"]) if "items" in schema else None,
            self._one_of(schema["oneOf"]) if "oneOf" in schema else None,
            self._any_of(schema["anyOf"]) if "anyOf" in schema else None,
            _all([self.compile(each) for each in schema["allOf"]]) if "allOf" in schema else None,
            self._not(schema["not"]) if "not" in schema else None,
            *_bounds(schema),
            _pattern(schema["pattern"]) if "pattern" in schema else None,
            _format(schema["format"]) if "format" in schema else None,
        ]
        return [check for check in checks if check is not None]

    def _properties(self, properties: Any) -> Check:
        if not isinstance(properties, dict):
            raise Unsupported("properties that are not an object")
        compiled = {name: self.compile(subschema) for name, subschema in properties.items()}

        def check_properties(instance: Any) -> bool:
            if not isinstance(instance, dict):
                return True
            # By the instance's members, not the schema's: a request sets a few of the forty a Message names.
            for name, value in instance.items():
                valid = compiled.get(name)
                if valid is not None and not valid(value):
                    return False
            return True

        return check_properties

    def _additional(self, schema: Mapping[str, Any]) -> Check | None:
        if "patternProperties" in schema:
            raise Unsupported("patternProperties")
        allowed = frozenset(schema.get("properties", {}))
        additional = schema["additionalProperties"]
        if isinstance(additional, dict):
            extra = self.compile(additional)
            return lambda instance: (
                not isinstance(instance, dict)
                or all(extra(value) for name, value in instance.items() if name not in allowed)
            )
        if not additional:
            return lambda instance: not isinstance(instance, dict) or allowed.issuperset(instance)
        return None

    def _items(self, items: Any) -> Check:
        if not isinstance(items, dict):
            raise Unsupported("items that are not one schema")
        each = self.compile(items)

        def check_items(instance: Any) -> bool:
            if not isinstance(instance, list):
                return True
            for item in instance:  # noqa: SIM110 - a loop is faster than all() over a generator
                if not each(item):
                    return False
            return True

        return check_items

    def _one_of(self, branches: Sequence[Any]) -> Check:
        compiled = [self.compile(branch) for branch in branches]

        def check_one_of(instance: Any) -> bool:
            valid = 0
            for branch in compiled:
                if branch(instance):
                    valid += 1
                    if valid > 1:
                        return False
            return valid == 1

        return check_one_of

    def _any_of(self, branches: Sequence[Any]) -> Check:
        compiled = [self.compile(branch) for branch in branches]
        return lambda instance: any(branch(instance) for branch in compiled)

    def _not(self, schema: Any) -> Check:
        negated = self.compile(schema)
        return lambda instance: not negated(instance)


def _all(checks: list[Check]) -> Check:
    if not checks:
        return lambda instance: True
    if len(checks) == 1:
        return checks[0]

    def check_all(instance: Any) -> bool:
        # A loop, not all() over a generator, which costs more: this runs for every sub-schema of a request.
        for check in checks:  # noqa: SIM110
            if not check(instance):
                return False
        return True

    return check_all


def _nullable(check: Check, nullable: bool) -> Check:
    """Connexion's `allow_nullable`: a null passes `type` and `enum` when the schema is nullable."""
    return (lambda instance: instance is None or check(instance)) if nullable else check


def _type(types: Any) -> Check:
    names = types if isinstance(types, list) else [types]
    try:
        tests = [TYPES[name] for name in names]
    except (KeyError, TypeError):
        raise Unsupported(f"type {types!r}") from None
    if len(tests) == 1:
        return tests[0]
    return lambda instance: any(test(instance) for test in tests)


def _enum(values: Any) -> Check:
    if not isinstance(values, list):
        raise Unsupported(f"enum {values!r}")
    # jsonschema compares with its `equal`; for strings, booleans and null that is plain equality within the same
    # type (a boolean never equals a number, as it would in Python).
    if not all(value is None or isinstance(value, str | bool) for value in values):
        raise Unsupported("an enum of values other than strings, booleans and null")
    strings = frozenset(value for value in values if isinstance(value, str))
    booleans = frozenset(value for value in values if isinstance(value, bool))
    has_null = None in values

    def check_enum(instance: Any) -> bool:
        if isinstance(instance, str):
            return instance in strings
        if isinstance(instance, bool):
            return instance in booleans
        return instance is None and has_null

    return check_enum


def _required(names: Any) -> Check:
    if not isinstance(names, list):
        raise Unsupported(f"required {names!r}")
    return lambda instance: not isinstance(instance, dict) or all(name in instance for name in names)


def _bounds(schema: Mapping[str, Any]) -> list[Check | None]:
    """minimum/maximum (with Draft 4's boolean exclusive flags) and the length and size limits."""
    checks: list[Check | None] = []
    if "minimum" in schema:
        low = schema["minimum"]
        if schema.get("exclusiveMinimum", False):
            checks.append(lambda instance: not _is_number(instance) or not instance <= low)
        else:
            checks.append(lambda instance: not _is_number(instance) or not instance < low)
    if "maximum" in schema:
        high = schema["maximum"]
        if schema.get("exclusiveMaximum", False):
            checks.append(lambda instance: not _is_number(instance) or not instance >= high)
        else:
            checks.append(lambda instance: not _is_number(instance) or not instance > high)
    for keyword, kind, too_short in (
        ("minLength", str, True),
        ("maxLength", str, False),
        ("minItems", list, True),
        ("maxItems", list, False),
    ):
        if keyword in schema:
            checks.append(_size(kind, schema[keyword], too_short))
    return checks


def _size(kind: type[str] | type[list[Any]], limit: Any, is_minimum: bool) -> Check:
    if is_minimum:
        return lambda instance: not isinstance(instance, kind) or not len(instance) < limit
    return lambda instance: not isinstance(instance, kind) or not len(instance) > limit


def _pattern(pattern: Any) -> Check:
    try:
        search = ecma_search(pattern)
    except (re.error, TypeError):
        raise Unsupported(f"pattern {pattern!r}") from None
    return lambda instance: not isinstance(instance, str) or search(instance) is not None


def _format(name: Any) -> Check:
    return lambda instance: FORMAT_CHECKER.conforms(instance, name)
