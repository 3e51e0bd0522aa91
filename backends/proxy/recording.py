"""Record mode: each exchange the proxy forwards becomes a rule of a script the scripted backend replays.

A recorded rule matches the request by its model, its last user text and its
turn; its reply is the upstream's answer as it was — content, stop reason,
usage, and for a stream its pace (time to first token, delay between
chunks) and any error event. The same request seen again adds to the rule's
`replies`, so a replay gives the answers in the order they came. Secrets —
the upstream key, the clients' keys, the admin key — are masked wherever they
appear (`redaction.py`); headers are never recorded.

Workers share the file under a lock. A new request's rule is appended to the
file in one write, and each worker parses only what others appended since it
last looked, so an exchange does not cost more as the file grows (but for
reading it); only a repeated request rewrites the file, whole, replacing it at
once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from backends.proxy.redaction import Secrets
from backends.safe_yaml import safe_load
from backends.scripted.replay import match_for, reply_for_error, reply_for_message, reply_for_stream, rules_yaml
from backends.wire import JSON, ApiError

logger = logging.getLogger("understudy")

HEADER = (
    "# Recorded by Understudy's proxy backend; replay with UNDERSTUDY_BACKEND=scripted UNDERSTUDY_SCRIPT=<this file>.\n"
)


class Recorder:
    """Adds exchanges to a recording script."""

    def __init__(self, path: Path, secrets: Iterable[str]) -> None:
        self.path = Path(path)
        self.secrets = Secrets(secrets)
        # The file as this worker last saw or wrote it, and its rules, by match too.
        self._text = ""
        self._rules: list[JSON] = []
        self._by_match: dict[str, JSON] = {}

    def record(self, body: Mapping[str, Any], message: Mapping[str, Any]) -> None:
        """A whole-message exchange."""
        self._add(body, reply_for_message(message))

    def record_error(self, body: Mapping[str, Any], error: ApiError) -> None:
        """An exchange the upstream answered with an error."""
        self._add(body, reply_for_error(error.status, error.error_type, error.message, error.headers))

    def record_stream(self, body: Mapping[str, Any], timed_events: Sequence[tuple[float, Mapping[str, Any]]]) -> None:
        """A streamed exchange, with its pace and any error event."""
        self._add(body, reply_for_stream(timed_events))

    def _add(self, body: Mapping[str, Any], reply: JSON) -> None:
        match, reply = self.secrets.redacted(match_for(body)), self.secrets.redacted(reply)
        try:
            with _locked(self.path):
                self._catch_up()
                rule = self._by_match.get(_key(match))
                if rule is None:
                    self._append({"name": f"recorded-{len(self._rules) + 1}", "match": match, "reply": reply})
                else:
                    self._rewrite(rule, _with_reply(rule, reply))
        except (OSError, ValueError, yaml.YAMLError):
            self._text = ""  # whatever went wrong, read the whole file afresh next time
            logger.exception("could not record an exchange to %s", self.path)

    def _catch_up(self) -> None:
        """This worker's copy of the file brought up to date, parsing only what was appended since."""
        current = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        added = current[len(self._text) :]
        # Appends add whole rules, each starting "- " at the left margin. A rewrite by another worker can
        # also leave this worker's text as a prefix (a last rule's replies grown by one, indented), so
        # anything else means: parse the whole file again.
        if self._text and current.startswith(self._text) and (not added or added.startswith("- ")):
            new_rules = _rules_in(added)
        else:
            self._rules, self._by_match, new_rules = [], {}, _rules_in(current)
        self._text = current
        for rule in new_rules:
            self._rules.append(rule)
            self._by_match.setdefault(_key(rule["match"]), rule)  # the first rule with a match is the one that answers

    def _append(self, rule: JSON) -> None:
        piece = rules_yaml([rule])
        if not self._text:
            piece = HEADER + piece
        elif not self._text.endswith("\n"):  # a file someone saved without a last newline
            piece = "\n" + piece
        # One write to a file opened for appending: the piece lands whole, after whatever another worker wrote.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, piece.encode("utf-8"))
        finally:
            os.close(descriptor)
        self._text += piece
        self._rules.append(rule)
        self._by_match[_key(rule["match"])] = rule

    def _rewrite(self, old: JSON, new: JSON) -> None:
        """The file written again whole, with rule `old` replaced by `new`; memory changes only once it is."""
        rules = [new if rule is old else rule for rule in self._rules]
        whole = HEADER + rules_yaml(rules)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(whole, encoding="utf-8")
            os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)
        self._text, self._rules = whole, rules
        self._by_match[_key(new["match"])] = new


@contextmanager
def _locked(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _rules_in(source: str) -> list[JSON]:
    """The rules a recording (or a piece appended to one) holds."""
    rules = safe_load(source)
    if rules is None:
        return []
    if not isinstance(rules, list) or not all(isinstance(rule, dict) and "match" in rule for rule in rules):
        raise ValueError("it is not a recording: a YAML list of rules with a `match` each")
    return rules


def _with_reply(rule: Mapping[str, Any], reply: JSON) -> JSON:
    """`rule` with `reply` added after the replies it has."""
    earlier = rule.get("replies") or ([rule["reply"]] if "reply" in rule else [])
    rest = {key: value for key, value in rule.items() if key not in ("reply", "replies")}
    return {**rest, "replies": [*earlier, reply]}


def _key(match: Mapping[str, Any]) -> str:
    return json.dumps(match, sort_keys=True)
