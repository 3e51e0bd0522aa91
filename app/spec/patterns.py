"""JSON Schema's `pattern` as the standard reads it: an ECMA 262 regular expression, searched for in the string.

Python's `re` reads one thing differently, and it matters for every
pattern anchored at its end: `$` also matches before a final newline, so
`^[a-zA-Z0-9_-]{1,64}$` would take a custom_id of `"a\n"`. In ECMA 262 (no
multiline flag) `$` matches only at the very end, which is Python's `\\Z`; the
translation here makes that one change, outside character classes and
escapes, and leaves the rest of the expression as it is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

from jsonschema import ValidationError


@functools.cache
def ecma_search(pattern: str) -> Callable[[str], re.Match[str] | None]:
    """The search of `pattern` read as ECMA 262 reads it (module docstring); re.error for a broken pattern."""
    return re.compile(_python_pattern(pattern)).search


def _python_pattern(pattern: str) -> str:
    """`pattern` with each end anchor `$` (not escaped, not in a class) written as Python's `\\Z`."""
    written: list[str] = []
    in_class = False
    characters = iter(pattern)
    for character in characters:
        if character == "\\":
            written.append(character + next(characters, ""))
            continue
        if character == "[":
            in_class = True
        elif character == "]":
            in_class = False
        written.append(r"\Z" if character == "$" and not in_class else character)
    return "".join(written)


def pattern_keyword(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """jsonschema's `pattern` keyword, with the pattern read as ECMA 262 reads it."""
    if validator.is_type(instance, "string") and ecma_search(pattern)(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")
