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
from itertools import pairwise
from pathlib import Path
from statistics import mean
from typing import Any

import yaml

from backends import text, tokens
from backends.events import message_from_events
from backends.proxy.redaction import Secrets
from backends.safe_yaml import SafeDumper, safe_load
from backends.wire import JSON, ApiError

logger = logging.getLogger("understudy")

#: Content blocks a script can replay; others (server tool results) are left out of a recording.
REPLAYABLE = {"text": ("text",), "tool_use": ("id", "name", "input"), "thinking": ("thinking", "signature"),
              "redacted_thinking": ("data",)}  # fmt: skip
HEADER = (
    "# Recorded by Understudy's proxy backend; replay with UNDERSTUDY_BACKEND=scripted UNDERSTUDY_SCRIPT=<this file>.\n"
)


class Dumper(SafeDumper):
    """Writes every value out in full: scripts may not use YAML aliases, so none are made for shared values."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


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
        spec: JSON = {"status": error.status, "type": error.error_type, "message": error.message}
        retry = {name: value for name, value in error.headers.items() if name.startswith(("retry-after", "x-should"))}
        if retry:
            spec["headers"] = retry
        self._add(body, {"error": spec})

    def record_stream(self, body: Mapping[str, Any], timed_events: Sequence[tuple[float, Mapping[str, Any]]]) -> None:
        """A streamed exchange, with its pace and any error event."""
        events = [event for _, event in timed_events]
        failure = next((index for index, event in enumerate(events) if event["type"] == "error"), None)
        reply = reply_for_message(message_from_events(events[:failure]))
        reply["stream"] = stream_timing(timed_events)
        if failure is not None:
            error = events[failure].get("error", {})
            reply["fault"] = {
                "kind": "error_event",
                "after_events": failure,
                "error": {"status": 529 if error.get("type") == "overloaded_error" else 500, **error},
            }
        self._add(body, reply)

    def _add(self, body: Mapping[str, Any], reply: JSON) -> None:
        match = {
            "model": body["model"],
            "user_text": text.last_user_text(body["messages"]),
            "turn": sum(1 for message in body["messages"] if message["role"] == "user"),
        }
        match, reply = self.secrets.redacted(match), self.secrets.redacted(reply)
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
        piece = yaml.dump([rule], Dumper=Dumper, sort_keys=False, allow_unicode=True)
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
        whole = HEADER + yaml.dump(rules, Dumper=Dumper, sort_keys=False, allow_unicode=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(whole, encoding="utf-8")
            os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)
        self._text, self._rules = whole, rules
        self._by_match[_key(new["match"])] = new


def reply_for_message(message: Mapping[str, Any]) -> JSON:
    """A script reply that gives back `message`."""
    content = [
        {"type": block["type"], **{key: block[key] for key in REPLAYABLE[block["type"]] if key in block}}
        for block in message.get("content", [])
        if block["type"] in REPLAYABLE
    ]
    usage = {key: value for key, value in message.get("usage", {}).items() if isinstance(value, int)}
    reply: JSON = {"content": content or [{"type": "text", "text": ""}], "stop_reason": message.get("stop_reason")}
    if message.get("stop_sequence") is not None:
        reply["stop_sequence"] = message["stop_sequence"]
    if usage:
        reply["usage"] = usage
    return {key: value for key, value in reply.items() if value is not None}


def stream_timing(timed_events: Sequence[tuple[float, Mapping[str, Any]]]) -> JSON:
    """The pace of a recorded stream: time to the first content delta, and the mean gap after it."""
    deltas = [(at, event) for at, event in timed_events if event["type"] == "content_block_delta"]
    if not deltas:
        return {}
    timing: JSON = {"first_token_ms": round(deltas[0][0] * 1000, 1)}
    if len(deltas) > 1:
        gaps = [later[0] - earlier[0] for earlier, later in pairwise(deltas)]
        timing["chunk_delay_ms"] = round(mean(gaps) * 1000, 1)
    pieces = [event["delta"].get("text") for _, event in deltas if event["delta"]["type"] == "text_delta"]
    if pieces:
        timing["chunk_tokens"] = max(1, round(mean(tokens.count(piece) for piece in pieces)))
    return timing


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
