"""openapi.yaml as its readers and tools see it: consistent discriminators, examples that hold, a served copy that fits.

Connexion validates with JSON Schema draft 4, which ignores `discriminator`
and `example`; these are for people, Swagger UI, Prism and code generators,
so nothing at run time would notice them going stale. These tests do:
- every union of objects tagged by `type` has a discriminator, and its
  mapping names exactly the union's branches by exactly their tags;
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.spec.loading import load_spec

SPEC = load_spec(admin=True)
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


def tags(ref: str) -> list[str]:
    """The `type` tags of the component `ref` names (none for an untagged one)."""
    tag = SCHEMAS[ref.removeprefix(REF_PREFIX)].get("properties", {}).get("type", {})
    return [value for value in tag.get("enum", []) if value is not None]


def tagged_branches(union: dict[str, Any]) -> list[str] | None:
    """The $refs of a union whose every branch (null aside) is a component tagged by `type`, else None."""
    branches = [branch.get("$ref") for branch in union["oneOf"] if branch.get("$ref") != NULL_BRANCH]
    if branches and all(ref and ref.startswith(REF_PREFIX) and tags(ref) for ref in branches):
        return branches  # type: ignore[return-value]
    return None


UNIONS = dict(unions(SPEC))


@pytest.mark.parametrize("where", sorted(UNIONS))
def test_a_tagged_union_has_a_discriminator_that_maps_each_tag_to_its_branch(where: str) -> None:
    union = UNIONS[where]
    branches = tagged_branches(union)
    if branches is None:
        assert "discriminator" not in union, "a discriminator on a union whose branches are not all tagged objects"
        return
    assert "discriminator" in union, f"{where}: a union of tagged objects without a discriminator"
    discriminator = union["discriminator"]
    assert discriminator["propertyName"] == "type"
    expected = {tag: ref for ref in branches for tag in tags(ref)}
    assert discriminator["mapping"] == expected
    assert list(discriminator["mapping"]) == list(expected), "the mapping lists the tags in the union's order"


def test_the_tagged_unions_are_found() -> None:
    discriminated = [where for where, union in UNIONS.items() if "discriminator" in union]
    assert "components.schemas.ContentBlockParam" in discriminated
    assert "components.schemas.MessageStreamEvent" in discriminated
    assert len(discriminated) >= 30
