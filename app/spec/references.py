"""Local JSON references (`#/components/schemas/TextBlockParam`): the ones a node makes, and where one points."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def references(node: Any) -> Iterator[str]:
    """Every `$ref` in `node`, at any depth."""
    if isinstance(node, Mapping):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def lookup(document: Mapping[str, Any], reference: str) -> Any:
    """What a local reference points to in `document`, or None when nothing is there."""
    node: Any = document
    for part in reference.removeprefix("#/").split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
