"""Connexion's validators, tuned: the same checks against openapi.yaml, with the API's messages.

Connexion validates every request against the spec; these subclasses change
only how a failure reads and how the work is done:
- a message names the offending field path and says what is wrong in the
  API's words, e.g. `messages.0.content: Input should be a valid string or list`;
- where a union has a discriminator (content blocks, tools, tool_choice…,
  messages by role), the error comes from the branch its mapping names for
  the input's tag, not from all of them; an object is never told it should
  have been null;
- a few failures read as the API words them, not as the schema would
  (`cache_control cannot be set for empty text blocks`);
- a body that is not UTF-8, not JSON, or nested too deeply is a 400, never a 500;
- a body schema that maps API versions to schemas of their own (`x-by-anthropic-version`) is checked
  as the request's anthropic-version says (its header, or the body's `anthropic_version` at the doors
  that carry it there);
- a `pattern` matches as JSON Schema says (ECMA 262: `$` only at the very end; patterns.py);
- each schema's validator is built once, not once per request.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from connexion.exceptions import BadRequestProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.validators import JSONRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError, validators
from jsonschema.exceptions import best_match, relevance
from starlette.datastructures import Headers
from starlette.types import Receive, Scope

from app.http.facts import note
from app.http.parsed_body import hand_on
from app.spec.fastcheck import passes
from app.spec.patterns import pattern_keyword
from app.spec.references import lookup

PYTHON_TYPE_NAMES = {
    "object": "dictionary",
    "array": "list",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
}

EMPTY_BODY_MESSAGE = "The request body is empty; it must be a JSON object"
#: A body schema's map from an anthropic-version to that version's own schema (openapi.yaml, MessageCreateParams).
BY_VERSION = "x-by-anthropic-version"
VERSION_HEADER = "anthropic-version"
BODY_VERSION = "anthropic_version"
#: What a request body without a Content-Type, or with one other than JSON, is told.
CONTENT_TYPE_MESSAGE = "Content-Type must be application/json"

#: Bodies longer than this are parsed with the cyclic garbage collector paused: the collections that the
#: objects of a big body set off while it is parsed double the time, all of it on the event loop (a 15 MB
#: Message Batch of 100,000 requests: 0.96 s, 0.43 s paused). Parsing makes no cycles to collect.
GC_PAUSE_CHARACTERS = 1024 * 1024

#: Connexion's request validator (Draft 4, `nullable`), a `pattern` read as JSON Schema says: ECMA 262's way.
RequestValidator = validators.extend(Draft4RequestValidator, {"pattern": pattern_keyword})

_validators: dict[int, tuple[Mapping[str, Any], Draft4Validator]] = {}
_versioned: dict[int, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}


def schema_validator(schema: Mapping[str, Any]) -> Draft4Validator:
    """The (cached) validator for one resolved schema of the spec."""
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, RequestValidator(schema, format_checker=Draft4Validator.FORMAT_CHECKER))
        _validators[id(schema)] = cached
    return cached[1]


def first_error(validator: Draft4Validator, instance: Any) -> str | None:
    """The most relevant validation error as `path: message`, or None when `instance` is valid.

    `validator.schema` is a body schema as Connexion hands it to a body validator: resolved, with the
    spec's `components` beside it, which the discriminators' mappings point into.
    """
    if passes(validator.schema, instance):  # the compiled check (fastcheck.py); errors still come from jsonschema
        return None
    errors = list(validator.iter_errors(instance))
    return describe(_most_relevant(errors), validator.schema, instance) if errors else None


def _most_relevant(errors: Iterable[ValidationError]) -> ValidationError:
    # Unlike jsonschema's best_match, this does not descend into every branch of a union:
    # `_describe_union` picks the branch the instance meant, by its tag or its JSON type.
    return max(errors, key=relevance)


def describe(error: ValidationError, root: Mapping[str, Any], body: Any = None) -> str:
    """One error as `field.path: message`, choosing the branch of a union the instance meant.

    `root` is the schema validated against, in which a discriminator's mapping is looked up; `body` the
    instance validated, in which an error's neighbours are looked up.
    """
    if error.validator in ("oneOf", "anyOf") and error.context:
        return _describe_union(error, root, body)
    path = _path(error.absolute_path)
    if error.validator == "minLength" and _is_empty_text_with_a_breakpoint(error, body):
        return f"{path}: cache_control cannot be set for empty text blocks"
    if error.validator == "required":
        missing = str(error.message).split("'")[1]
        return f"{_join(path, missing)}: Field required"
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        extra = next(name for name in error.instance if name not in allowed)
        return f"{_join(path, extra)}: Extra inputs are not permitted"
    return f"{path or 'body'}: {_message(error)}"


def _describe_union(error: ValidationError, root: Mapping[str, Any], body: Any) -> str:
    branches = error.schema[error.validator]
    instance = error.instance
    path = _path(error.absolute_path)
    tagged = _tag_choices(error.schema, branches, root) if isinstance(instance, Mapping) else None
    if tagged is not None:
        name, choices = tagged
        if name not in instance:
            chosen = [index for index, branch in enumerate(branches) if name not in branch.get("required", ())]
            if not chosen:
                return f"{_join(path, name)}: Field required"
        else:
            tag = instance[name]
            chosen = choices.get(tag, []) if tag is None or isinstance(tag, str) else []
            if not chosen:
                expected = ", ".join(f"'{known}'" for known in choices if known is not None)
                return f"{_join(path, name)}: Input tag '{tag}' does not match any of the expected tags: {expected}"
    else:
        chosen = [index for index, branch in enumerate(branches) if _branch_takes(branch, instance)]
        if not chosen:
            kinds = [branch.get("type") for branch in branches if branch.get("enum") != [None]]
            names = list(dict.fromkeys(PYTHON_TYPE_NAMES.get(str(kind), str(kind)) for kind in kinds if kind))
            return f"{path or 'body'}: Input should be a valid {' or '.join(names)}"
    errors = [sub for sub in error.context if sub.schema_path[0] in chosen]
    if not errors:
        return f"{path or 'body'}: Input matches more than one of the allowed shapes"
    return describe(_most_relevant(errors), root, body)


def _is_empty_text_with_a_breakpoint(error: ValidationError, body: Any) -> bool:
    """Whether the error is an empty `text` in a text block that sets a cache_control."""
    *where, name = error.absolute_path or [None]
    block = _at(body, where)
    is_text_block = isinstance(block, Mapping) and block.get("type") == "text"
    return name == "text" and is_text_block and bool(block.get("cache_control"))


def _at(instance: Any, path: Iterable[Any]) -> Any:
    for part in path:
        try:
            instance = instance[part]
        except (KeyError, IndexError, TypeError):
            return None
    return instance


def _tag_choices(
    union: Mapping[str, Any], branches: list[Any], root: Mapping[str, Any]
) -> tuple[str, dict[str | None, list[int]]] | None:
    """The tag's property name and, for each tag, the indexes of the branches it selects; None for an untagged union.

    The discriminator says, when the union has one: its mapping names each tag's branch. A union without
    one (say, a list or an error object) is read by its branches' own `type` enums. A null tag, which no
    mapping can name (JSON has no null key), selects the branches whose tag may be null.
    """
    discriminator = union.get("discriminator")
    choices: dict[str | None, list[int]] = {}
    if discriminator is None:
        name = "type"
        for index, branch in enumerate(branches):
            for tag in _tag_schema(branch, name).get("enum", ()):
                choices.setdefault(tag, []).append(index)
        return (name, choices) if choices else None
    name = discriminator["propertyName"]
    choices = {
        tag: _branches_equal_to(lookup(root, target), branches) for tag, target in discriminator["mapping"].items()
    }
    nullable = [index for index, branch in enumerate(branches) if None in _tag_schema(branch, name).get("enum", ())]
    if nullable:
        choices[None] = nullable
    return name, choices


def _tag_schema(branch: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return branch.get("properties", {}).get(name, {})


def _branches_equal_to(component: Any, branches: list[Any]) -> list[int]:
    """The indexes of the branches that are `component`: the resolved spec holds an equal copy where it is referred to.

    A mapping that names no branch (a schema without the components it points into) leaves every branch in play.
    """
    return [index for index, branch in enumerate(branches) if branch == component] or list(range(len(branches)))


def _branch_takes(branch: Mapping[str, Any], instance: Any) -> bool:
    """Whether an untagged union's branch is one `instance` may have meant: its JSON type, and a null branch
    (NullValue, the None of an Optional) only for null."""
    if branch.get("enum") == [None]:
        return instance is None
    return _type_matches(branch.get("type"), instance)


def _type_matches(kind: Any, instance: Any) -> bool:
    """Whether `instance` has JSON type `kind` (a name, a list of names, or None for any)."""
    if kind is None:
        return True
    kinds = kind if isinstance(kind, list) else [kind]
    return any(Draft4Validator.TYPE_CHECKER.is_type(instance, str(name)) for name in kinds)


def _message(error: ValidationError) -> str:
    value, kind = error.validator_value, error.validator
    if kind == "type":
        names = value if isinstance(value, list) else [value]
        return "Input should be a valid " + " or ".join(
            dict.fromkeys(PYTHON_TYPE_NAMES.get(str(name), str(name)) for name in names)
        )
    if kind == "enum":
        # A nullable enum lists null (OpenAPI 3.0.3); the message names the values, as the API's does.
        options = [repr(option) for option in value if option is not None] or ["None"]
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


#: The request bodies' decoder, made once: `json.loads` given any argument makes a decoder, and its scanner, per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if it is running) for the block."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _loaded(text: str) -> Any:
    """`json.loads(text)`, with the constants JSON does not have refused (NaN, Infinity)."""
    if text.startswith("\ufeff"):  # as json.loads says it
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def decoded(raw: bytes | bytearray, encoding: str = "utf-8") -> str:
    """A request body's text, or BadRequestProblem saying why it has none."""
    try:
        return raw.decode(encoding)
    except LookupError:
        raise BadRequestProblem(detail=f"Unknown charset in content-type: {encoding}") from None
    except UnicodeDecodeError as error:
        raise BadRequestProblem(detail=f"The request body is not valid {encoding}: {error.reason}") from None


def parse_json(text: str) -> Any:
    """Parse a request body's text (None for a blank one), or raise BadRequestProblem saying what is wrong."""
    if not text.strip():
        return None
    try:
        if len(text) > GC_PAUSE_CHARACTERS:
            with _collector_paused():
                return _loaded(text)
        return _loaded(text)  # the common case: a small body, nothing to pause for
    except json.JSONDecodeError as error:
        raise BadRequestProblem(detail=f"Invalid JSON in request body: {error.msg} at position {error.pos}") from None
    except ValueError as error:
        raise BadRequestProblem(detail=f"Invalid JSON in request body: {error}") from None
    except RecursionError:
        raise BadRequestProblem(detail="Invalid JSON in request body: nested too deeply") from None


class RequestBodyValidator(JSONRequestBodyValidator):
    """Validates a JSON request body against its operation's schema.

    `_parse` and `_validate` are the two methods Connexion's docs ("Custom validators") have a
    validator override; the schema and charset are kept here, as Connexion's own copies are private.

    Where the view takes the parsed body from the scope (`body_in_scope`: app/internals.py's hooks are
    on), the body's bytes are not handed on: `wrap_receive` parses and validates them as they come and
    the layers below see an empty body, as for an upload (multipart.py). Connexion's own `wrap_receive`
    keeps every message of the body to hand it on, and the bridge into Flask reads it whole again: a
    256 MB Message Batch was held four times over (bytes, copies, text, objects), 1.15 GB at its peak.
    """

    def __init__(self, *, schema: dict[str, Any], encoding: str, body_in_scope: bool = False, **kwargs: Any) -> None:
        super().__init__(schema=schema, encoding=encoding, **kwargs)
        self.schema = schema
        self.encoding = encoding
        self.body_in_scope = body_in_scope

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        if not self.body_in_scope or _declared_length(scope) == b"0":
            return await super().wrap_receive(receive, scope=scope)  # Connexion's, whose answer to a missing body
        _require_content_type(scope)
        raw = bytearray()
        more = True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
        text = decoded(raw, self.encoding)
        del raw  # from here the text is all there is of the body: not held twice while it is parsed
        body = self._checked(text, scope)
        self._validate(body)
        return hand_on(body, scope, receive)  # for the view (internals.FlaskDecorator)

    async def _parse(self, stream: Any, scope: Any) -> Any:
        _require_content_type(scope)
        return self._checked(decoded(b"".join([chunk async for chunk in stream]), self.encoding), scope)

    def _checked(self, text: str, scope: Scope) -> Any:
        """The body parsed from its text and checked against the schema of the request's API version."""
        body = parse_json(text)
        if body is not None:
            # Checked here, not in _validate, because the schema may depend on a header: only here is the scope.
            schema = for_version(self.schema, request_version(Headers(scope=scope), body))
            try:
                check_body(schema, body)
            except BadRequestProblem:
                if refused_by_version(self.schema, schema, body):
                    note(refused_by="version", model=body.get("model"))  # a body another version takes: an object
                raise
        return body

    def _validate(self, body: Any) -> dict | None:
        if body is None:
            raise BadRequestProblem(detail=EMPTY_BODY_MESSAGE)
        return None


def _require_content_type(scope: Scope) -> None:
    # Without a Content-Type, Connexion guesses JSON and validates the body, but Flask would then hand
    # the handler raw bytes: a body must say what it is, as one with the wrong type must (a 415 → 400).
    if not any(name.lower() == b"content-type" for name, _ in scope["headers"]):
        raise BadRequestProblem(detail=CONTENT_TYPE_MESSAGE)


def _declared_length(scope: Scope) -> bytes | None:
    return next((value for name, value in scope["headers"] if name.lower() == b"content-length"), None)


def request_version(headers: Mapping[str, str], body: Any) -> str | None:
    """The API version a request names: its `anthropic-version` header, or (Bedrock's and Vertex AI's doors, which
    send none) its body's `anthropic_version`."""
    version = headers.get(VERSION_HEADER)
    if version is None and isinstance(body, dict) and isinstance(body.get(BODY_VERSION), str):
        return str(body[BODY_VERSION])
    return version


def for_version(schema: Mapping[str, Any], version: str | None) -> Mapping[str, Any]:
    """The schema a request of API `version` is checked against: the one the schema's `x-by-anthropic-version`
    names for it, else the schema itself (the newest version's).

    `schema` is a body schema as Connexion hands it over, resolved, with the spec's `components` beside it;
    so is the one returned (made once per version's schema), for the discriminators' mappings.
    """
    versions = schema.get(BY_VERSION)
    if versions is None or version not in versions:
        return schema
    chosen = versions[version]
    cached = _versioned.get(id(chosen))
    if cached is None or cached[0] is not chosen:
        cached = (chosen, {**chosen, "components": schema.get("components", {})})
        _versioned[id(chosen)] = cached
    return cached[1]


def refused_by_version(schema: Mapping[str, Any], chosen: Mapping[str, Any], body: Any) -> bool:
    """Whether a body its API version's schema (`chosen`) refused is one another version takes: the version refused
    it, not the body's shape (a failure's question only, so a valid request pays nothing for it)."""
    others = [schema, *(for_version(schema, version) for version in schema.get(BY_VERSION, ()))]
    try:
        return any(other is not chosen and first_error(schema_validator(other), body) is None for other in others)
    except RecursionError:
        return False


def check_body(schema: Mapping[str, Any], body: Any) -> None:
    """Raise the BadRequestProblem of the body's most relevant error against `schema`, if it has one."""
    try:
        message = first_error(schema_validator(schema), body)
    except RecursionError:
        message = "body: nested too deeply"
    if message is not None:
        raise BadRequestProblem(detail=message)


class RequestParameterValidator(ParameterValidator):
    """Validates headers, query and path parameters, naming the parameter in each message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connexion's `validate` builds a request object and parses the query string on every request. A
        # request without a query string, to an operation that requires no query parameter and has no cookie
        # parameters, can only fail on its headers and its path parameters, the routed strings: those are all
        # it checks (a path parameter of another type is converted by Connexion's parser, so it takes that way).
        self._headers_and_path_only = not (
            self.parameters.get("cookie")
            or any(param.get("required") for param in self.parameters.get("query", []))
            or any(param.get("schema", {}).get("type") != "string" for param in self.parameters.get("path", []))
        )
        # Connexion adds a path's own parameters to its operation's list in the spec itself (`+=`, in
        # OpenAPIOperation.__init__), once for every layer that builds the operation: x-understudy-scope is in
        # POST /v1/messages's list six times over, as one object. Each is checked once.
        self._headers = list({id(param): param for param in self.parameters.get("header", [])}.values())

    def validate(self, scope: Scope) -> None:
        if scope.get("query_string") or not self._headers_and_path_only:
            super().validate(scope)
            return
        routed = scope.get("path_params", {})
        for param in self.parameters.get("path", []):
            error = self.validate_parameter("path", routed.get(param["name"]), param)
            if error:
                raise BadRequestProblem(detail=error)
        headers = Headers(scope=scope)  # what Connexion's request object would look each header up in
        for param in self._headers:
            error = self.validate_parameter("header", headers.get(param["name"]), param)
            if error:
                raise BadRequestProblem(detail=error)

    @staticmethod
    def validate_parameter(parameter_type: str, value: Any, param: dict, param_name: str | None = None) -> str | None:
        name = param["name"]
        if value is None:
            return f"{name}: {parameter_type} is required" if param.get("required") else None
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name}: Input should be a finite number"
        schema = param.get("schema", param)
        if passes(schema, value):  # the compiled check (fastcheck.py); errors still come from jsonschema
            return None
        error = best_match(schema_validator(schema).iter_errors(value))
        return None if error is None else f"{name}: {_message(error)}"
