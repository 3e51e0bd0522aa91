"""Connexion's validators, tuned: the same checks against openapi.yaml, with the API's messages.

Connexion validates every request against the spec; these subclasses change
only how a failure reads and how the work is done:
- a message names the offending field path and says what is wrong in the
  API's words, e.g. `messages.0.content: Input should be a valid string or list`;
- where a union has a `type` tag (content blocks, tools, tool_choice…), the
  error comes from the branch the tag names, not from all of them;
- a body that is not UTF-8, not JSON, or nested too deeply is a 400, never a 500;
- each schema's validator is built once, not once per request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from connexion.exceptions import BadRequestProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.validators import JSONRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from jsonschema.exceptions import best_match

PYTHON_TYPE_NAMES = {
    "object": "dictionary",
    "array": "list",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
}

EMPTY_BODY_MESSAGE = "The request body is empty; it must be a JSON object"

_validators: dict[int, tuple[Mapping[str, Any], Draft4Validator]] = {}


def schema_validator(schema: Mapping[str, Any]) -> Draft4Validator:
    """The (cached) validator for one resolved schema of the spec."""
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, Draft4RequestValidator(schema, format_checker=Draft4Validator.FORMAT_CHECKER))
        _validators[id(schema)] = cached
    return cached[1]


def first_error(validator: Draft4Validator, instance: Any) -> str | None:
    """The most relevant validation error as `path: message`, or None when `instance` is valid."""
    error = best_match(validator.iter_errors(instance))
    return None if error is None else describe(error)


def describe(error: ValidationError) -> str:
    """One error as `field.path: message`, choosing the tagged branch of a union."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        return _describe_union(error)
    path = _path(error.absolute_path)
    if error.validator == "required":
        missing = str(error.message).split("'")[1]
        return f"{_join(path, missing)}: Field required"
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        extra = next(name for name in error.instance if name not in allowed)
        return f"{_join(path, extra)}: Extra inputs are not permitted"
    return f"{path or 'body'}: {_message(error)}"


def _describe_union(error: ValidationError) -> str:
    branches = error.schema[error.validator]
    tag = error.instance.get("type") if isinstance(error.instance, Mapping) else None
    tags = [_tag_of(branch) for branch in branches]
    if tag is not None and any(tags):
        if tag in tags:
            index = tags.index(tag)
            errors = [sub for sub in error.context if sub.schema_path[0] == index]
            if errors:
                return describe(best_match(errors))
        expected = ", ".join(f"'{name}'" for name in tags if name)
        path = _path(error.absolute_path)
        return f"{_join(path, 'type')}: Input tag '{tag}' does not match any of the expected tags: {expected}"
    types = [branch.get("type") for branch in branches]
    if all(types) and not any(_type_matches(kind, error.instance) for kind in types):
        names = " or ".join(PYTHON_TYPE_NAMES.get(kind, kind) for kind in types)
        return f"{_path(error.absolute_path) or 'body'}: Input should be a valid {names}"
    return describe(best_match(error.context))


def _tag_of(branch: Mapping[str, Any]) -> str | None:
    values = branch.get("properties", {}).get("type", {}).get("enum", [])
    return values[0] if len(values) == 1 else None


def _type_matches(kind: str, instance: Any) -> bool:
    return Draft4Validator.TYPE_CHECKER.is_type(instance, kind)


def _message(error: ValidationError) -> str:
    value, kind = error.validator_value, error.validator
    if kind == "type":
        names = value if isinstance(value, list) else [value]
        return "Input should be a valid " + " or ".join(PYTHON_TYPE_NAMES.get(str(name), str(name)) for name in names)
    if kind == "enum":
        options = [repr(option) for option in value]
        listed = ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 1 else options[0]
        return f"Input should be {listed}"
    return {
        "minimum": f"Input should be greater than or equal to {value}",
        "maximum": f"Input should be less than or equal to {value}",
        "minLength": f"String should have at least {value} character{'s' * (value != 1)}",
        "maxLength": f"String should have at most {value} character{'s' * (value != 1)}",
        "minItems": f"List should have at least {value} item{'s' * (value != 1)}",
        "maxItems": f"List should have at most {value} item{'s' * (value != 1)}",
        "pattern": f"String should match pattern '{value}'",
    }.get(str(kind), str(error.message))


def _path(parts: Iterable[Any]) -> str:
    return ".".join(str(part) for part in parts)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes, encoding: str = "utf-8") -> Any:
    """Decode and parse a request body, or raise BadRequestProblem saying what is wrong."""
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise BadRequestProblem(detail=f"Unknown charset in content-type: {encoding}") from None
    except UnicodeDecodeError as error:
        raise BadRequestProblem(detail=f"The request body is not valid {encoding}: {error.reason}") from None
    if not text.strip():
        return None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise BadRequestProblem(detail=f"Invalid JSON in request body: {error.msg} at position {error.pos}") from None
    except ValueError as error:
        raise BadRequestProblem(detail=f"Invalid JSON in request body: {error}") from None
    except RecursionError:
        raise BadRequestProblem(detail="Invalid JSON in request body: nested too deeply") from None


class RequestBodyValidator(JSONRequestBodyValidator):
    """Validates a JSON request body against its operation's schema."""

    async def _parse(self, stream: Any, scope: Any) -> Any:
        return parse_json(b"".join([chunk async for chunk in stream]), self._encoding)

    def _validate(self, body: Any) -> dict | None:
        if body is None:
            raise BadRequestProblem(detail=EMPTY_BODY_MESSAGE)
        try:
            message = first_error(schema_validator(self._schema), body)
        except RecursionError:
            message = "body: nested too deeply"
        if message is not None:
            raise BadRequestProblem(detail=message)
        return None


class RequestParameterValidator(ParameterValidator):
    """Validates headers, query and path parameters, naming the parameter in each message."""

    @staticmethod
    def validate_parameter(parameter_type: str, value: Any, param: dict, param_name: str | None = None) -> str | None:
        name = param["name"]
        if value is None:
            return f"{name}: {parameter_type} is required" if param.get("required") else None
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name}: Input should be a finite number"
        error = best_match(schema_validator(param.get("schema", param)).iter_errors(value))
        return None if error is None else f"{name}: {_message(error)}"
