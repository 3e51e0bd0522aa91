"""The compiled request check (app/spec/fastcheck.py) gives jsonschema's verdict, always.

For every request schema in openapi.yaml — each operation's JSON body and
each parameter — requests are generated from the schema, then mutated at
random (values of the wrong type, keys dropped or added, nulls, unknown
tags), and the compiled check must agree with the request validator
(app/spec/validators.py: Connexion's Draft4RequestValidator, patterns read as
ECMA 262 reads them) on every one. Seeded, so a failure repeats.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from connexion.json_schema import resolve_refs
from jsonschema import Draft4Validator

from app.spec.batch_params import CHECKED_AS, PARAMS_SCHEMA
from app.spec.fastcheck import compile_check, passes
from app.spec.loading import load_spec
from app.spec.validators import RequestValidator

CASES_PER_SCHEMA = 1000
MAX_DEPTH = 9
#: Strings a schema may or may not take; two end in a newline, which a pattern anchored with `$` must refuse.
STRINGS = [
    *["", "a", "a\n", "custom_1\n", "hello world", "req_123", "msg_1", "2026-01-01T00:00:00Z", "not a date"],
    *["user", "text", "auto"],
]
NUMBERS = [-1, 0, 1, 2, 7, 100_000, 2**40, 0.5, -2.5, 1.0, True, False]


def request_schemas() -> list[tuple[str, dict]]:
    spec = resolve_refs(load_spec(admin=True))
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                found.append((f"{method} {path} {parameter['name']}", parameter.get("schema", parameter)))
            content = operation.get("requestBody", {}).get("content", {})
            for media_type, body in content.items():
                found.append((f"{method} {path} body ({media_type})", body["schema"]))
    # A batch request's params, checked when the request is processed (app/spec/batch_params.py).
    batch_params = spec["components"]["schemas"][PARAMS_SCHEMA][CHECKED_AS]
    found.append(("post /v1/messages/batches: requests.N.params, when processed", batch_params))
    return found


SCHEMAS = request_schemas()


def generate(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value shaped by `schema`, often valid, sometimes not."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return any_value(rng, depth)
    if "oneOf" in schema:
        return generate(rng.choice(schema["oneOf"]), rng, depth + 1)
    if "enum" in schema and rng.random() < 0.9:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    kind = rng.choice(kind) if isinstance(kind, list) else kind
    if schema.get("nullable") and rng.random() < 0.1:
        return None
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties", {})
        value = {name: generate(properties.get(name, {}), rng, depth + 1) for name in schema.get("required", [])}
        for name, subschema in properties.items():
            if name not in value and rng.random() < 0.3:
                value[name] = generate(subschema, rng, depth + 1)
        return value
    if kind == "array":
        count = rng.randint(schema.get("minItems", 0), schema.get("minItems", 0) + 2)
        return [generate(schema.get("items", {}), rng, depth + 1) for _ in range(count)]
    if kind == "string":
        return string(schema, rng)
    if kind in ("integer", "number"):
        return number(schema, kind, rng)
    if kind == "boolean":
        return rng.random() < 0.5
    return any_value(rng, depth)


def string(schema: dict, rng: random.Random) -> str:
    """Mostly a string the schema's length, pattern and format accept; now and then any of STRINGS."""
    if rng.random() < 0.2:
        return rng.choice(STRINGS)
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    prefix = schema.get("pattern", "^").lstrip("^").split("\\")[0].split("[")[0].split("$")[0]
    return (prefix + rng.choice(["x", "hello world", "claude-sonnet-4-5"]))[: schema.get("maxLength", 100)]


def number(schema: dict, kind: str, rng: random.Random) -> Any:
    """Mostly a number within the schema's bounds; now and then any of NUMBERS."""
    if rng.random() < 0.2:
        return rng.choice(NUMBERS)
    low = schema.get("minimum", 0)
    high = schema.get("maximum", low + 1000)
    if kind == "integer":
        return rng.randint(int(low), int(high))
    return rng.uniform(low, high)


def any_value(rng: random.Random, depth: int = MAX_DEPTH) -> Any:
    choices = [None, rng.choice(STRINGS), rng.choice(NUMBERS)]
    if depth < MAX_DEPTH + 2:
        choices += [[any_value(rng, depth + 1)], {"type": rng.choice(STRINGS), "text": rng.choice(STRINGS)}]
    return rng.choice(choices)


def mutate(value: Any, rng: random.Random) -> Any:
    """`value` with one random change somewhere inside it."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        choice = rng.random()
        if choice < 0.25:
            return {name: item for name, item in value.items() if name != key}
        if choice < 0.4:
            return {**value, rng.choice(["extra", "type", "text", "cache_control"]): any_value(rng)}
        return {**value, key: mutate(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.7:
        index = rng.randrange(len(value))
        return [*value[:index], mutate(value[index], rng), *value[index + 1 :]]
    return any_value(rng, depth=MAX_DEPTH - 1)


VERTEX_MODELS = "/v1/projects/{project}/locations/{location}/publishers/anthropic/models"
#: The message routes' bodies, the largest schemas: 2 s each to compare, so the quick loop leaves them out.
LARGEST = (
    "post /v1/messages body (application/json)",
    "post /v1/messages/count_tokens body (application/json)",
    # the doors' Messages bodies (doors/bedrock.yaml, doors/vertex.yaml), as large
    "post /model/{modelId}/invoke body (application/json)",
    "post /model/{modelId}/invoke-with-response-stream body (application/json)",
    *(
        f"post {VERTEX_MODELS}/{route} body (application/json)"
        for route in ("count-tokens:rawPredict", "{model}:rawPredict", "{model}:streamRawPredict")
    ),
)


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        pytest.param(name, schema, id=name, marks=[pytest.mark.slow] if name in LARGEST else [])
        for name, schema in SCHEMAS
    ],
)
def test_the_compiled_check_agrees_with_jsonschema(name: str, schema: dict) -> None:
    check = compile_check(schema)
    if check is None:
        pytest.skip(f"{name}: uses a keyword fastcheck does not compile (jsonschema validates it alone)")
    validator = RequestValidator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)
    rng = random.Random(name)
    verdicts = {True: 0, False: 0}
    for _ in range(CASES_PER_SCHEMA):
        instance = generate(schema, rng)
        if rng.random() < 0.6:
            instance = mutate(instance, rng)
        expected = validator.is_valid(instance)
        assert check(instance) == expected, (name, instance)
        verdicts[expected] += 1
    assert verdicts[False], f"{name}: no invalid instance was generated"


def test_the_message_bodies_are_compiled() -> None:
    bodies = [
        schema
        for name, schema in SCHEMAS
        if name.startswith("post /v1/messages") and ("body" in name or "params" in name)
    ]
    assert len(bodies) == 4 and all(compile_check(schema) is not None for schema in bodies)


def test_a_boolean_enum_never_takes_a_number() -> None:
    check = compile_check({"enum": [False]})
    assert check is not None
    assert check(False) and not check(True) and not check(0) and not check(0.0) and not check(None)


def test_a_schema_with_a_keyword_not_compiled_is_left_to_jsonschema() -> None:
    schema = {"type": "array", "uniqueItems": True}
    assert compile_check(schema) is None
    assert not passes(schema, [1, 2])  # not "invalid": the caller then asks jsonschema


def test_nullable_lets_null_through_type_and_enum_only() -> None:
    schema = {"type": "string", "enum": ["a"], "nullable": True, "minLength": 2}
    check = compile_check(schema)
    assert check is not None
    assert check(None) and not check("b") and not check("a")  # "a" is in the enum but too short
    assert compile_check({"type": "string", "enum": ["a"]})(None) is False  # type: ignore[misc]


def test_a_schema_that_contains_itself() -> None:
    node: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    node["properties"]["child"] = node
    check = compile_check(node)
    assert check is not None
    assert check({"child": {"child": {}}}) and not check({"child": {"other": 1}})
