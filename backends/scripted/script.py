"""Loading a script: YAML in, checked against schema.yaml, compiled into rules; mistakes named by line.

A script is data, never code: it is read with YAML's safe loader (no tags
that build objects; see backends/safe_yaml.py), it can include nothing, and
its templates only substitute named values. Every problem is reported as `FILE:LINE: problem`, so that a
broken script stops start-up — or, on reload, is refused while the old one
keeps serving — with a message that says where to look.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from backends.safe_yaml import SafeLoader, safe_load
from backends.scripted.matching import Condition, compile_match
from backends.scripted.prefilter import RuleRun, rule_runs

SCHEMA_FILE = Path(__file__).with_name("schema.yaml")
TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
TEMPLATE_NAMES = {"user_text", "model", "counter", "rule", "custom_id"}


class ScriptError(ValueError):
    """A script that cannot be used; the message is `FILE:LINE: problem`."""


@dataclass(frozen=True)
class Rule:
    """One compiled rule: when it matches, and what it replies."""

    name: str
    line: int
    conditions: tuple[Condition, ...]
    replies: tuple[Mapping[str, Any], ...]
    when_exhausted: str
    timing: Mapping[str, Any]
    #: Whether matches are counted in the shared store: a sequence, a rule that fails when used up,
    #: or a {{ counter }} template. Other rules skip the store, which keeps matching cheap.
    counted: bool
    #: Whether any reply has templates to fill; plain replies are served as they are.
    templated: bool

    @property
    def catches_all(self) -> bool:
        return not self.conditions


@dataclass(frozen=True)
class Script:
    """A loaded script: its rules in order, its fallback, and warnings worth logging."""

    path: str
    rules: tuple[Rule, ...]
    #: The same rules, in runs the prefilter can pass over at once (`prefilter.rule_runs`).
    runs: tuple[RuleRun[Rule], ...]
    fallback: str
    warnings: tuple[str, ...]


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = safe_load(SCHEMA_FILE.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def load_script(path: Path) -> tuple[Script, str]:
    """The script at `path`, and its text; raises ScriptError."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScriptError(f"{path}: cannot read the script: {error}") from None
    return parse_script(source, str(path)), source


def parse_script(source: str, path: str) -> Script:
    """A script from its YAML text; `path` names it in messages."""
    try:
        tree = yaml.compose(source, Loader=SafeLoader)
        data = safe_load(source)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ScriptError(f"{path}:{line}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if data is None:
        raise ScriptError(f"{path}:1: the script is empty")
    alias = next((token for token in yaml.scan(source, Loader=SafeLoader) if isinstance(token, yaml.AliasToken)), None)
    if alias is not None:
        # An alias is a reference, so a few lines of them can stand for billions of nodes ("billion laughs"),
        # which validation would then walk; scripts are small enough to write out in full.
        raise ScriptError(f"{path}:{alias.start_mark.line + 1}: YAML aliases (*name) are not allowed in scripts")
    invalid = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if invalid is not None:
        where = "/".join(str(part) for part in invalid.absolute_path) or "the script"
        message = invalid.schema.get("x-error", invalid.message) if invalid.validator == "oneOf" else invalid.message
        raise ScriptError(f"{path}:{_line(tree, invalid.absolute_path)}: {where}: {message}")

    settings: Mapping[str, Any] = {"rules": data} if isinstance(data, list) else data
    rules_path = [] if isinstance(data, list) else ["rules"]
    defaults = (settings.get("defaults") or {}).get("stream", {})
    rules = []
    for index, raw in enumerate(settings["rules"]):
        line = _line(tree, [*rules_path, index])
        try:
            rules.append(_rule(raw, index, line, defaults))
        except ValueError as problem:
            raise ScriptError(f"{path}:{line}: rule {raw.get('name', index)!r}: {problem}") from None
    return Script(path, tuple(rules), rule_runs(rules), settings.get("fallback", "echo"), tuple(_warnings(path, rules)))


def _rule(raw: Mapping[str, Any], index: int, line: int, defaults: Mapping[str, Any]) -> Rule:
    replies = tuple(raw["replies"]) if "replies" in raw else (raw["reply"],)
    when_exhausted = raw.get("when_exhausted", "repeat_last")
    for reply in replies:
        _check_templates(reply)
    templates = _template_names(replies)
    return Rule(
        name=str(raw.get("name", f"rule-{index + 1}")),
        line=line,
        conditions=tuple(compile_match(raw.get("match") or {})),
        replies=replies,
        when_exhausted=when_exhausted,
        timing={**defaults, **raw.get("stream", {})},
        counted=len(replies) > 1 or when_exhausted == "fail" or "counter" in templates,
        templated=bool(templates),
    )


def _check_templates(reply: Mapping[str, Any]) -> None:
    for name in _template_names([reply]):
        if name not in TEMPLATE_NAMES and not name.startswith("match."):
            known = ", ".join(sorted(TEMPLATE_NAMES))
            raise ValueError(f"unknown template value {{{{ {name} }}}}; known: {known}, match.N")


def _template_names(value: Any) -> set[str]:
    """The names of every template in the strings of `value`."""
    if isinstance(value, str):
        return set(TEMPLATE.findall(value))
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else ()
    return set().union(*(_template_names(item) for item in items))


def _warnings(path: str, rules: Sequence[Rule]) -> list[str]:
    warnings = []
    names = [rule.name for rule in rules]
    for rule in rules[:-1]:
        if rule.catches_all:
            warnings.append(
                f"{path}:{rule.line}: rule {rule.name!r} matches everything, so the rules after it never run"
            )
            break
    for name in {name for name in names if names.count(name) > 1}:
        warnings.append(f"{path}: several rules are named {name!r}; they share one sequence position")
    return warnings


def _line(tree: yaml.Node | None, path: Sequence[Any]) -> int:
    """The 1-based line of the YAML node at `path` (the deepest node found)."""
    node = tree
    for part in path:
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == part), node)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1 if node is not None else 1
