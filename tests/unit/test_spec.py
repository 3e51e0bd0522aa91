"""openapi.yaml as its readers and tools see it: consistent discriminators, examples that hold, a served copy that fits.

Connexion validates with JSON Schema draft 4, which ignores `discriminator`
and `example`; these are for people, Swagger UI, Prism and code generators,
so nothing at run time would notice them going stale. These tests do:
- every union of objects tagged by `type` (messages: by `role`) has a
  discriminator, and its mapping names exactly the union's branches by
  exactly their tags;
- every example is valid against the schema it illustrates, every content
  block has one, and each error response's examples carry its own error type
  (Prism answers a missing key with the 401's first example);
- the contents in `info.description` list every operation, and every
  component they name exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from connexion.json_schema import Draft4RequestValidator, resolve_refs

from app.spec.loading import load_spec
from backends.wire import ERROR_TYPES

SPEC = load_spec(admin=True, metrics=True)
SCHEMAS = SPEC["components"]["schemas"]
REF_PREFIX = "#/components/schemas/"
#: The branch of an Optional union that stands for null; it has no tag.
NULL_BRANCH = REF_PREFIX + "NullValue"


def unions(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema of the spec holding a oneOf, with where it is."""
    if isinstance(node, dict):
        if "oneOf" in node:
            yield where, node
        for key, value in node.items():
            yield from unions(value, f"{where}.{key}" if where else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from unions(value, f"{where}.{index}")


#: The properties a union's branches may be tagged by: content blocks, tools, events… by `type`; messages by `role`.
TAG_PROPERTIES = ("type", "role")


def tags(ref: str, name: str = "type") -> list[str]:
    """The `name` tags of the component `ref` names (none for an untagged one)."""
    tag = SCHEMAS[ref.removeprefix(REF_PREFIX)].get("properties", {}).get(name, {})
    return [value for value in tag.get("enum", []) if value is not None]


def tagged_branches(union: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The tag property and the $refs of a union whose every branch (null aside) is a component tagged by it."""
    branches = [branch.get("$ref") for branch in union["oneOf"] if branch.get("$ref") != NULL_BRANCH]
    for name in TAG_PROPERTIES:
        if branches and all(ref and ref.startswith(REF_PREFIX) and tags(ref, name) for ref in branches):
            return name, branches  # type: ignore[return-value]
    return None


UNIONS = dict(unions(SPEC))
RESOLVED = resolve_refs(SPEC)


@pytest.mark.parametrize("where", sorted(UNIONS))
def test_a_tagged_union_has_a_discriminator_that_maps_each_tag_to_its_branch(where: str) -> None:
    union = UNIONS[where]
    tagged = tagged_branches(union)
    if tagged is None:
        assert "discriminator" not in union, "a discriminator on a union whose branches are not all tagged objects"
        return
    name, branches = tagged
    assert "discriminator" in union, f"{where}: a union of tagged objects without a discriminator"
    discriminator = union["discriminator"]
    assert discriminator["propertyName"] == name
    expected = {tag: ref for ref in branches for tag in tags(ref, name)}
    assert discriminator["mapping"] == expected
    assert list(discriminator["mapping"]) == list(expected), "the mapping lists the tags in the union's order"


def test_the_tagged_unions_are_found() -> None:
    discriminated = [where for where, union in UNIONS.items() if "discriminator" in union]
    assert "components.schemas.ContentBlockParam" in discriminated
    assert "components.schemas.MessageStreamEvent" in discriminated
    assert "components.schemas.MessageParam" in discriminated
    assert len(discriminated) >= 30


def examples(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str, str]]:
    """Where the spec gives an example: (the path of its node, `example` or `examples.NAME`, the schema's key).

    A schema's own `example` illustrates the schema itself; a header's, a parameter's or a media type's sits
    beside its `schema`, and so do a media type's named `examples`.
    """
    if isinstance(node, dict):
        beside = "schema" if "schema" in node else ""
        if "example" in node and path[-1:] != ("properties",):
            yield path, "example", beside
        for name in node.get("examples", {}) if beside else ():
            yield path, f"examples.{name}", beside
        for key, value in node.items():
            if key not in ("example", "examples"):
                yield from examples(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from examples(value, (*path, index))


def at(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


def example_and_schema(path: tuple[Any, ...], which: str, beside: str) -> tuple[Any, Any]:
    """The example and the schema it illustrates, resolved."""
    node = at(RESOLVED, path)
    example = node["example"] if which == "example" else node["examples"][which.split(".", 1)[1]]["value"]
    return example, node[beside] if beside else node


EXAMPLES = {".".join(map(str, path)) + f" {which}": (path, which, beside) for path, which, beside in examples(SPEC)}


@pytest.mark.parametrize("where", sorted(EXAMPLES))
def test_an_example_is_valid_against_its_schema(where: str) -> None:
    example, schema = example_and_schema(*EXAMPLES[where])
    errors = [error.message for error in Draft4RequestValidator(schema).iter_errors(example)]
    assert not errors, f"{where}: {errors}"


def test_the_examples_are_found() -> None:
    assert "components.schemas.TextBlock example" in EXAMPLES
    assert "components.responses.Authentication.content.application/json examples.missing_key" in EXAMPLES
    assert "components.headers.RequestId example" in EXAMPLES


BLOCK_UNIONS = ("ContentBlockParam", "ToolResultContentBlockParam", "ContentBlock")


@pytest.mark.parametrize(
    "block", sorted({ref for union in BLOCK_UNIONS for ref in SCHEMAS[union]["discriminator"]["mapping"].values()})
)
def test_every_content_block_has_an_example(block: str) -> None:
    assert "example" in SCHEMAS[block.removeprefix(REF_PREFIX)]


#: The error responses in the API's shape (a door's own, in its platform's, are tested with the door).
API_ERROR_RESPONSES = sorted(
    name
    for name, response in SPEC["components"]["responses"].items()
    if response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
)


@pytest.mark.parametrize("name", API_ERROR_RESPONSES)
def test_an_error_response_s_examples_are_of_its_own_error_type(name: str) -> None:
    response = SPEC["components"]["responses"][name]
    error_type = response["description"].split(":")[0]  # each description opens with its error type
    named = response["content"]["application/json"]["examples"]
    assert named, f"{name} has no examples"
    assert {example["value"]["error"]["type"] for example in named.values()} == {error_type}


def test_each_status_answers_with_the_api_s_error_type() -> None:
    for route, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":  # the path's own, not an operation
                continue
            for status, response in operation["responses"].items():
                if int(status) in ERROR_TYPES and response.get("$ref", "").split("/")[-1] in API_ERROR_RESPONSES:
                    described = SPEC["components"]["responses"][response["$ref"].split("/")[-1]]["description"]
                    assert described.startswith(ERROR_TYPES[int(status)] + ":"), f"{method} {route} {status}"


CONTENTS = SPEC["info"]["description"].split("## Contents", 1)[1]
#: What the contents put in backticks: an operation (`POST /v1/messages`), a component (`TextBlockParam`), or else.
QUOTED = re.findall(r"`([^`]+)`", CONTENTS)


def test_the_contents_list_every_operation() -> None:
    listed = {quoted for quoted in QUOTED if re.fullmatch(r"(GET|POST|DELETE|PUT|PATCH) /\S*", quoted)}
    operations = {
        f"{method.upper()} {route}"
        for route, methods in SPEC["paths"].items()
        for method in methods
        if method != "parameters"
    }
    assert listed == operations


def test_the_components_the_contents_name_exist() -> None:
    names = {name for family in SPEC["components"].values() for name in family}
    named = {quoted for quoted in QUOTED if re.fullmatch(r"[A-Z][a-z][A-Za-z0-9_]*", quoted) and quoted != "Param"}
    assert len(named) > 40
    assert named <= names, sorted(named - names)
