"""Rule matching: what a rule's `match` asks of a request, and why a rule did not match.

A `match` is compiled once, when the script loads, into a list of conditions,
cheapest first; a request is read once into a `RequestView`. Matching stops at
a rule's first failing condition, and rules in a row that test one field with
plain strings share a screen that passes over all of them at once
(`prefilter.py`), so a long script costs little per request. Only when no rule
matches are the reasons worked out, in words a tester can act on ("user_text
does not contain 'weather'"), for the closest rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter
from typing import Any

from backends import text

Groups = dict[str, str]


class RequestView:
    """The parts of a request the conditions look at, each worked out once."""

    def __init__(
        self, body: Mapping[str, Any], headers: Mapping[str, str], custom_id: str = "", door: str = "anthropic"
    ) -> None:
        self.body = body
        self.headers = headers
        #: The custom_id of a Message Batch request; "" for a request of its own.
        self.custom_id = custom_id
        #: The door the request came in by: `anthropic`, `bedrock`, `vertex`, `openai` … (MessageRequest.door).
        self.door = door

    @cached_property
    def user_text(self) -> str:
        return text.last_user_text(self.body["messages"])

    @cached_property
    def model(self) -> str:
        return str(self.body["model"])

    @cached_property
    def user_id(self) -> str:
        return str((self.body.get("metadata") or {}).get("user_id") or "")

    @cached_property
    def streaming(self) -> bool:
        return bool(self.body.get("stream"))

    @cached_property
    def system(self) -> str:
        return text.system_text(self.body.get("system"))

    @cached_property
    def tool_names(self) -> set[str]:
        return {str(tool.get("name")) for tool in self.body.get("tools") or ()}

    @cached_property
    def turn(self) -> int:
        return sum(1 for message in self.body["messages"] if message["role"] == "user")

    @cached_property
    def tool_results(self) -> list[tuple[str, str | None]]:
        """(tool_use_id, tool name) for each tool_result in the last user turn."""
        messages = self.body["messages"]
        last = next((m for m in reversed(messages) if m["role"] == "user"), None)
        if last is None or isinstance(last["content"], str):
            return []
        names = {
            block["id"]: block["name"]
            for message in messages
            if message["role"] == "assistant" and isinstance(message["content"], list)
            for block in message["content"]
            if block.get("type") == "tool_use"
        }
        return [
            (block["tool_use_id"], names.get(block["tool_use_id"]))
            for block in last["content"]
            if block.get("type") == "tool_result"
        ]


@dataclass(frozen=True)
class TextMatch:
    """A string condition: exact, contains or regex, perhaps ignoring case."""

    kind: str
    pattern: re.Pattern[str]
    wanted: str
    #: A plain string comparison does the job (no regex, no case folding): much cheaper per request.
    literal: bool

    @classmethod
    def compile(cls, spec: str | Mapping[str, Any]) -> TextMatch:
        """From a script's text_match; a bad regex is a ValueError."""
        if isinstance(spec, str):
            spec = {"exact": spec}
        flags = re.IGNORECASE if spec.get("ignore_case") else 0
        kind = next(key for key in ("exact", "contains", "regex") if key in spec)
        wanted = str(spec[kind])
        source = wanted if kind == "regex" else re.escape(wanted)
        if kind == "exact":
            source = f"(?:{source})\\Z"
        try:
            return cls(kind, re.compile(source, flags), wanted, literal=kind != "regex" and not flags)
        except re.error as error:
            raise ValueError(f"bad regex {wanted!r}: {error}") from None

    def search(self, value: str) -> re.Match[str] | None:
        return self.pattern.match(value) if self.kind == "exact" else self.pattern.search(value)

    def describe(self) -> str:
        verb = {"exact": "is not", "contains": "does not contain", "regex": "does not match"}[self.kind]
        return f"{verb} {self.wanted!r}"


@dataclass(frozen=True)
class PlainTest:
    """A plain string test of one field (`exact` or `contains`, case kept), which rules in a row can share."""

    label: str
    kind: str
    wanted: str
    value_of: Callable[[RequestView], str]


@dataclass(frozen=True)
class Condition:
    """One compiled condition: a cheap yes/no test, the words for a no, and any regex groups of a yes."""

    #: Evaluation order within a rule: plain string comparisons (the most selective, usually), then other
    #: plain checks, regexes last — so a rule that does not match usually fails on its first condition.
    cost: int
    holds: Callable[[RequestView], bool]
    failure: Callable[[RequestView], str]
    groups: Callable[[RequestView], Groups] | None = None
    #: Set for a plain string comparison, so that a screen can test many rules' strings at once (prefilter.py).
    plain: PlainTest | None = None


def compile_match(match: Mapping[str, Any]) -> list[Condition]:
    """The conditions of a rule's `match`, cheapest first."""
    conditions: list[Condition] = []
    for field, spec in match.items():
        if field in ("user_text", "system", "model", "user_id", "custom_id", "door"):
            conditions.append(_text_condition(field, attrgetter(field), TextMatch.compile(spec)))
        elif field == "headers":
            for name, value in spec.items():
                conditions.append(
                    _text_condition(f"header {name.lower()}", _header(name.lower()), TextMatch.compile(value))
                )
        else:
            conditions.append(_CONDITIONS[field](spec))
    return sorted(conditions, key=lambda condition: condition.cost)


def matches(conditions: Sequence[Condition], view: RequestView) -> bool:
    """Whether every condition holds (stopping at the first that does not)."""
    for condition in conditions:  # noqa: SIM110 - a plain loop: this runs for every rule of every request
        if not condition.holds(view):
            return False
    return True


def captured(conditions: Sequence[Condition], view: RequestView) -> Groups:
    """The regex groups a matching rule's conditions captured."""
    groups: Groups = {}
    for condition in conditions:
        if condition.groups is not None:
            groups.update(condition.groups(view))
    return groups


def reasons(conditions: Sequence[Condition], view: RequestView) -> list[str]:
    """Why a rule does not match: one reason per condition that fails."""
    return [condition.failure(view) for condition in conditions if not condition.holds(view)]


def _groups(found: re.Match[str] | None) -> Groups:
    if found is None:
        return {}
    groups = {str(index): value or "" for index, value in enumerate(found.groups(), start=1)}
    groups.update({name: value or "" for name, value in found.groupdict().items()})
    return groups


def _header(name: str) -> Callable[[RequestView], str]:
    return lambda view: view.headers.get(name, "")


def _text_condition(label: str, value_of: Callable[[RequestView], str], matcher: TextMatch) -> Condition:
    wanted = matcher.wanted
    if matcher.literal:  # the common case, and the cheapest: a plain comparison, tried before anything else
        plain = PlainTest(label, matcher.kind, wanted, value_of)
        if matcher.kind == "exact":
            holds: Callable[[RequestView], bool] = lambda view: value_of(view) == wanted  # noqa: E731
        else:
            holds = lambda view: wanted in value_of(view)  # noqa: E731
        return Condition(0, holds, lambda view: f"{label} {matcher.describe()}", plain=plain)
    return Condition(
        cost=3,
        holds=lambda view: matcher.search(value_of(view)) is not None,
        failure=lambda view: f"{label} {matcher.describe()}",
        groups=lambda view: _groups(matcher.search(value_of(view))),
    )


def _tools_condition(spec: bool | str) -> Condition:
    if spec is True:
        return Condition(1, lambda view: bool(view.tool_names), lambda view: "no tools are offered")
    if spec is False:
        return Condition(1, lambda view: not view.tool_names, lambda view: "tools are offered")
    return Condition(1, lambda view: spec in view.tool_names, lambda view: f"no tool named {spec!r} is offered")


def _tool_result_condition(spec: bool | Mapping[str, str]) -> Condition:
    if isinstance(spec, bool):
        wording = f"the last user turn {'lacks' if spec else 'has'} a tool_result"
        return Condition(2, lambda view: bool(view.tool_results) == spec, lambda view: wording)

    def holds(view: RequestView) -> bool:
        return any(
            spec.get("tool_use_id", tool_id) == tool_id and spec.get("tool_name", name) == name
            for tool_id, name in view.tool_results
        )

    return Condition(2, holds, lambda view: f"the last user turn has no tool_result for {dict(spec)}")


def _turn_condition(spec: int) -> Condition:
    return Condition(1, lambda view: view.turn == spec, lambda view: f"turn is {view.turn}, not {spec}")


def _stream_condition(spec: bool) -> Condition:
    return Condition(1, lambda view: view.streaming == spec, lambda view: f"stream is {str(view.streaming).lower()}")


_CONDITIONS: dict[str, Callable[[Any], Condition]] = {
    "tools": _tools_condition,
    "tool_result": _tool_result_condition,
    "turn": _turn_condition,
    "stream": _stream_condition,
}
