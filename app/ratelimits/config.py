"""UNDERSTUDY_RATE_LIMITS parsed: the limits, and whose they are.

In the environment, one line of NAME=NUMBER pairs: `rpm=50,itpm=30000,otpm=8000`
(and `count_tokens_rpm`, `batches_rpm`, `per=key|scope|server`). In a settings
file, the same line, or a mapping that adds limits of their own per model class,
per scope and per API key, and a `total` every request also takes from:

    rate_limits:
      rpm: 50
      itpm: 30000
      otpm: 8000
      per: key                    # whose buckets: each API key's (default), each scope's, or the server's
      models:                     # a model class (the catalogue's `line`) or one model (its id or an alias)
        haiku: {itpm: 50000, otpm: 10000}
        claude-3-haiku-20240307: {count_cache_reads: true}
      scopes: {nightly: {rpm: 1000}}
      keys: {team-a-key: {rpm: 2000}}
      total: {rpm: 4000, itpm: 2000000, otpm: 400000}

A request's limits are the default's, with its model's entry laid over them,
then its scope's, then its key's (a field each entry sets wins). API keys are
kept here only as their SHA-256 (`key_hash`), never as given. A mistake is a
ValueError saying what is wrong, which load_settings turns into one line naming
UNDERSTUDY_RATE_LIMITS.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backends.state.scopes import is_scope_name

#: The limits a rule may set, each a positive whole number per minute.
LIMITS = ("rpm", "itpm", "otpm", "count_tokens_rpm", "batches_rpm")
#: Whose buckets the limits fill.
PER = ("key", "scope", "server")
#: What a `models` entry may set: the Messages limits, and whether cache reads count towards ITPM (the rate limits
#: page marks the models they do for with †).
MODEL_FIELDS = ("rpm", "itpm", "otpm", "count_cache_reads")
#: The sections of the settings file's form.
SECTIONS = ("models", "scopes", "keys", "total")
#: A model class or model id as a bucket's subject may hold it: no braces, colons or equals signs (Redis keys).
SUBJECT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def key_hash(key: str) -> str:
    """An API key as the rate limits keep it: its SHA-256, in hex."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Limits:
    """Per-minute limits (None: not limited) and whether cache reads count towards ITPM (None: not said)."""

    rpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None
    count_tokens_rpm: int | None = None
    batches_rpm: int | None = None
    count_cache_reads: bool | None = None

    def under(self, other: Limits | None) -> Limits:
        """These limits with every field `other` sets laid over them."""
        if other is None:
            return self
        given = {item.name: getattr(other, item.name) for item in dataclasses.fields(other)}
        return dataclasses.replace(self, **{name: value for name, value in given.items() if value is not None})

    def any(self) -> bool:
        """Whether any limit is set."""
        return any(getattr(self, name) is not None for name in LIMITS)


@dataclass(frozen=True)
class RateLimits:
    """The parsed setting: the default limits, whose buckets they fill, and the entries laid over them."""

    default: Limits
    per: str = "key"
    #: By model class (the catalogue's `line`) or model id or alias, as written.
    models: Mapping[str, Limits] = field(default_factory=dict)
    scopes: Mapping[str, Limits] = field(default_factory=dict)
    #: By the key's SHA-256 (key_hash).
    keys: Mapping[str, Limits] = field(default_factory=dict)
    #: Limits every request also takes from, whoever sends it (an upstream key's own, in front of the proxy).
    total: Limits | None = None

    def limits(self, *, model: str | None, model_class: str | None, scope: str, hashed_key: str) -> Limits:
        """A request's limits: the default, then its model class's and its model's entries, its scope's, its key's."""
        limits = self.default
        for entry in (
            self.models.get(model_class or ""),
            self.models.get(model or ""),
            self.scopes.get(scope),
            self.keys.get(hashed_key),
        ):
            limits = limits.under(entry)
        return limits


def parse_rate_limits(value: Any) -> RateLimits | None:
    """The setting from the environment's line or a settings file's mapping (None when empty)."""
    if isinstance(value, RateLimits) or value is None:
        return value
    if isinstance(value, str):
        if not value.strip():
            return None
        rules = RateLimits(_limits(value, LIMITS, "", top=True), per=_per_of_line(value))
    elif isinstance(value, Mapping):
        rules = _rules(value)
    else:
        raise ValueError("must be a line such as rpm=50,itpm=30000,otpm=8000, or a mapping (in a settings file)")
    entries = (rules.default, rules.total, *rules.models.values(), *rules.scopes.values(), *rules.keys.values())
    if not any(entry is not None and entry.any() for entry in entries):
        raise ValueError("sets no limit: give one of " + ", ".join(LIMITS))
    return rules


def _rules(value: Mapping[str, Any]) -> RateLimits:
    """The settings file's form."""
    unknown = sorted(set(value) - {*LIMITS, "per", *SECTIONS})
    if unknown:
        raise ValueError(f"unknown entry {unknown[0]!r} (known: {', '.join((*LIMITS, 'per', *SECTIONS))})")
    default = _limits({name: value[name] for name in LIMITS if name in value}, LIMITS, "", top=True)
    per = str(value.get("per", "key")).strip()
    if per not in PER:
        raise ValueError(f"per must be one of {', '.join(PER)}, not {per!r}")
    models = _section(value, "models", MODEL_FIELDS)
    for name in models:
        if not SUBJECT_NAME.fullmatch(name):
            raise ValueError(f"models: {name!r} is not a model class or model id")
    scopes = _section(value, "scopes", LIMITS)
    for name in scopes:
        if not is_scope_name(name):
            raise ValueError(f"scopes: {name!r} is not a scope name (1-64 letters, digits and _.-)")
    keys = {key_hash(key): limits for key, limits in _section(value, "keys", LIMITS).items()}
    total = _limits(value["total"], LIMITS, "total: ") if "total" in value else None
    return RateLimits(default, per, models, scopes, keys, total)


def _section(value: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> dict[str, Limits]:
    entries = value.get(name) or {}
    if not isinstance(entries, Mapping):
        raise ValueError(f"{name} must be a mapping of names to limits")
    return {str(key).strip(): _limits(entry, allowed, f"{name}: {key}: ") for key, entry in entries.items()}


def _per_of_line(line: str) -> str:
    pairs = dict(item.partition("=")[::2] for item in line.split(","))
    per = pairs.get("per", "key").strip()
    if per not in PER:
        raise ValueError(f"per must be one of {', '.join(PER)}, not {per!r}")
    return per


def _limits(given: Any, allowed: tuple[str, ...], where: str, *, top: bool = False) -> Limits:
    """Limits from a NAME=NUMBER line or a mapping; `top`: the default's, which may also say `per`."""
    if isinstance(given, str):
        pairs: dict[str, Any] = {}
        for item in given.split(","):
            if not item.strip():
                continue
            name, equals, number = item.partition("=")
            if not equals:
                raise ValueError(f"{where}must be NAME=NUMBER pairs, comma-separated, such as rpm=50,itpm=30000")
            pairs[name.strip()] = number.strip()
        if top:
            pairs.pop("per", None)
        given = pairs
    if not isinstance(given, Mapping):
        raise ValueError(f"{where}must be a mapping of limits, such as {{rpm: 50, itpm: 30000}}")
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"{where}unknown limit {unknown[0]!r} (known: {', '.join(allowed)})")
    values: dict[str, Any] = {}
    for name, number in given.items():
        values[name] = _flag(number, f"{where}{name}") if name == "count_cache_reads" else _count(number, where + name)
    return Limits(**values)


def _count(value: Any, name: str) -> int:
    text = str(value).strip().replace("_", "")
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a positive whole number of requests or tokens per minute")
    return int(text)


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{name} must be true or false")
