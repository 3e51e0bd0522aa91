"""Rule matching: what a rule's `match` asks of a request, and why a rule did not match.

A `match` is compiled once, when the script loads, into a list of conditions;
a request is read once into a `RequestView`. A condition either holds or says
why not, in words a tester can act on ("user_text does not contain
'weather'"), which is what the no-match error reports for the closest rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from backends import text

Groups = dict[str, str]


class RequestView:
    """The parts of a request the conditions look at, each worked out once."""

    def __init__(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        self.body = body
        self.headers = headers

    @cached_property
    def user_text(self) -> str:
        return text.last_user_text(self.body["messages"])

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
            if message["role"] == "assistant" and not isinstance(message["content"], str)
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
            return cls(kind, re.compile(source, flags), wanted)
        except re.error as error:
            raise ValueError(f"bad regex {wanted!r}: {error}") from None

    def search(self, value: str) -> re.Match[str] | None:
        return self.pattern.match(value) if self.kind == "exact" else self.pattern.search(value)

    def describe(self) -> str:
        verb = {"exact": "is not", "contains": "does not contain", "regex": "does not match"}[self.kind]
        return f"{verb} {self.wanted!r}"


#: A compiled condition: given the request, (None, groups) when it holds, else (reason, {}).
Condition = Callable[[RequestView], tuple[str | None, Groups]]


def compile_match(match: Mapping[str, Any]) -> list[Condition]:
    """The conditions of a rule's `match`, in the order the script gives them."""
    conditions: list[Condition] = []
    for field, spec in match.items():
        if field in ("user_text", "system", "model", "user_id"):
            conditions.append(_text_condition(field, TextMatch.compile(spec)))
        elif field == "headers":
            conditions += [_header_condition(name.lower(), TextMatch.compile(value)) for name, value in spec.items()]
        else:
            conditions.append(_CONDITIONS[field](spec))
    return conditions


def evaluate(conditions: Sequence[Condition], view: RequestView) -> tuple[list[str], Groups]:
    """The reasons the conditions fail (none: the rule matches) and the regex groups they captured."""
    reasons: list[str] = []
    groups: Groups = {}
    for condition in conditions:
        reason, found = condition(view)
        if reason is None:
            groups.update(found)
        else:
            reasons.append(reason)
    return reasons, groups


def _groups(found: re.Match[str]) -> Groups:
    groups = {str(index): value or "" for index, value in enumerate(found.groups(), start=1)}
    groups.update({name: value or "" for name, value in found.groupdict().items()})
    return groups


def _text_condition(field: str, matcher: TextMatch) -> Condition:
    def value_of(view: RequestView) -> str:
        if field == "user_text":
            return view.user_text
        if field == "system":
            return view.system
        if field == "model":
            return str(view.body["model"])
        return str((view.body.get("metadata") or {}).get("user_id") or "")

    def condition(view: RequestView) -> tuple[str | None, Groups]:
        found = matcher.search(value_of(view))
        return (None, _groups(found)) if found else (f"{field} {matcher.describe()}", {})

    return condition


def _header_condition(name: str, matcher: TextMatch) -> Condition:
    def condition(view: RequestView) -> tuple[str | None, Groups]:
        found = matcher.search(view.headers.get(name, ""))
        return (None, _groups(found)) if found else (f"header {name} {matcher.describe()}", {})

    return condition


def _tools_condition(spec: bool | str) -> Condition:
    def condition(view: RequestView) -> tuple[str | None, Groups]:
        if spec is True:
            return (None, {}) if view.tool_names else ("no tools are offered", {})
        if spec is False:
            return (None, {}) if not view.tool_names else ("tools are offered", {})
        return (None, {}) if spec in view.tool_names else (f"no tool named {spec!r} is offered", {})

    return condition


def _tool_result_condition(spec: bool | Mapping[str, str]) -> Condition:
    def condition(view: RequestView) -> tuple[str | None, Groups]:
        results = view.tool_results
        if spec is True or spec is False:
            holds = bool(results) == spec
            return (None, {}) if holds else (f"the last user turn {'lacks' if spec else 'has'} a tool_result", {})
        holds = any(
            spec.get("tool_use_id", tool_id) == tool_id and spec.get("tool_name", name) == name
            for tool_id, name in results
        )
        return (None, {}) if holds else (f"the last user turn has no tool_result for {dict(spec)}", {})

    return condition


def _turn_condition(spec: int) -> Condition:
    def condition(view: RequestView) -> tuple[str | None, Groups]:
        return (None, {}) if view.turn == spec else (f"turn is {view.turn}, not {spec}", {})

    return condition


def _stream_condition(spec: bool) -> Condition:
    def condition(view: RequestView) -> tuple[str | None, Groups]:
        streaming = bool(view.body.get("stream"))
        return (None, {}) if streaming == spec else (f"stream is {str(streaming).lower()}", {})

    return condition


_CONDITIONS: dict[str, Callable[[Any], Condition]] = {
    "tools": _tools_condition,
    "tool_result": _tool_result_condition,
    "turn": _turn_condition,
    "stream": _stream_condition,
}
