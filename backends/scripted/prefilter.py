"""The prefilter: runs of rules that test one field with plain strings, passed over at once.

A script of many rules usually keys them on one field — "user_text contains
'weather'", "… contains 'stock'", and so on. Trying them one by one costs a
few hundred nanoseconds a rule; here such a run of rules shares one screen,
a set lookup or one regex that finds any of their strings, and a request that
holds none of them passes the whole run at once. Which rule answers is never
changed: a screen only rules out rules that could not match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Generic, Protocol, TypeVar, cast

from backends.scripted.matching import Condition, PlainTest, RequestView, matches


class HasConditions(Protocol):
    """What screening needs of a rule: its compiled conditions, cheapest first."""

    @property
    def conditions(self) -> tuple[Condition, ...]: ...


RuleT = TypeVar("RuleT", bound=HasConditions)


@dataclass(frozen=True)
class RuleRun(Generic[RuleT]):
    """Rules in a row, and a screen that is false only when none of them can match (None: no screen)."""

    rules: tuple[RuleT, ...]
    screen: Callable[[RequestView], bool] | None = None


def first_match(runs: Sequence[RuleRun[RuleT]], view: RequestView) -> RuleT | None:
    """The first rule, in script order, whose conditions all hold."""
    for run in runs:
        if run.screen is not None and not run.screen(view):
            continue  # none of the run's rules can match
        for rule in run.rules:
            if matches(rule.conditions, view):
                return rule
    return None


def rule_runs(rules: Sequence[RuleT]) -> tuple[RuleRun[RuleT], ...]:
    """The rules in order, in runs a request can pass over at once.

    Rules in a row whose cheapest condition compares the same field with a plain
    string of the same kind ("user_text contains …", "model is …") share a
    screen: one set lookup, or one regex that finds any of their strings. Each of
    those rules needs its own string, so when the screen finds none, no rule of
    the run can match; when it finds one, the run's rules are tried in order
    as usual. Order, and so which rule answers, is unchanged.
    """

    def key(rule: RuleT) -> tuple[str, str] | None:
        plain = _plain_test(rule)
        return None if plain is None else (plain.label, plain.kind)

    grouped: list[RuleRun[RuleT]] = []
    for shared, run in groupby(rules, key=key):
        run_rules = tuple(run)
        if shared is None or len(run_rules) == 1:
            grouped.extend(RuleRun((rule,)) for rule in run_rules)
        else:  # every rule of the run has a plain test, of one field and kind
            grouped.append(RuleRun(run_rules, _screen([cast(PlainTest, _plain_test(rule)) for rule in run_rules])))
    return tuple(grouped)


def _plain_test(rule: HasConditions) -> PlainTest | None:
    """The rule's cheapest condition, if it is a plain string test (conditions are sorted cheapest first)."""
    return rule.conditions[0].plain if rule.conditions else None


#: Screens are regexes built from the rules' strings; beyond this many characters in all (or this deep a
#: nesting of shared prefixes) building one costs more than it saves, and the rules are tried one by one.
SCREEN_MAX_CHARACTERS = 20_000
SCREEN_MAX_NESTING = 100


def _screen(tests: Sequence[PlainTest]) -> Callable[[RequestView], bool] | None:
    """Whether the field holds any of the tests' strings (all of one field and kind); None: no screen."""
    value_of = tests[0].value_of
    if tests[0].kind == "exact":
        wanted = frozenset(test.wanted for test in tests)
        return lambda view: value_of(view) in wanted
    strings = {test.wanted for test in tests}
    if sum(map(len, strings)) > SCREEN_MAX_CHARACTERS:
        return None
    # One regex, its alternatives merged into a trie ("topic (?:1|2)"), so the regex engine tries a
    # few letters at each position of the text rather than every string in turn.
    try:
        any_of = re.compile(_trie_pattern(strings))
    except _TooDeep:
        return None
    return lambda view: any_of.search(value_of(view)) is not None


class _TooDeep(Exception):
    """The strings' shared prefixes nest deeper than a regex should."""


def _trie_pattern(strings: Iterable[str]) -> str:
    """A regex matching any of `strings`, with shared prefixes written once; raises _TooDeep."""
    trie: dict[str, Any] = {}
    for string in strings:
        node = trie
        for character in string:
            node = node.setdefault(character, {})
        node[""] = {}  # a string ends here

    def pattern(node: dict[str, Any], depth: int) -> str:
        if depth > SCREEN_MAX_NESTING:
            raise _TooDeep
        run = []
        while len(node) == 1 and "" not in node:  # letters with no choice: written out in one go
            ((character, node),) = node.items()
            run.append(character)
        branches = [
            re.escape(character) + pattern(child, depth + 1) for character, child in sorted(node.items()) if character
        ]
        rest = "" if not branches else branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        return re.escape("".join(run)) + (f"(?:{rest})?" if "" in node and rest else rest)

    return pattern(trie, 0)
