"""The scripted backend: replies from a YAML script, for deterministic tests of code that calls the API.

The script (UNDERSTUDY_SCRIPT) is an ordered list of rules; the first rule
whose `match` holds answers, with its `reply` or the next of its `replies`.
Sequence positions live in the shared state store, so "first call 529, second
call 200" holds whichever gunicorn worker takes each call. When no rule
matches, the script's fallback answers: the echo backend, or a 400 naming the
closest rule and why it did not match.

Editing the script file takes effect on the next request, in every worker,
and gunicorn's SIGHUP restarts workers onto the new file; either way a script
that does not load is refused, the last good one (kept in the shared store,
so a worker that never loaded it serves it too) keeps serving, and the log
says why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.base import Backend
from backends.catalogue import UNLISTED_MODEL
from backends.echo import echo_message
from backends.exchange import EventStream, MessageRequest, Reply
from backends.scripted import replies
from backends.scripted.matching import RequestView, captured, reasons
from backends.scripted.prefilter import first_match
from backends.scripted.script import Rule, Script, ScriptError, load_script, parse_script
from backends.state import StateStore, StoreFull, StoreUnavailable
from backends.wire import RULE_HEADER, ApiError

if TYPE_CHECKING:
    from backends.catalogue import ModelCatalogue

logger = logging.getLogger("understudy")

#: Every scripted reply names the rule that produced it in this header (the journal records it).
FALLBACK_RULE = "(fallback)"


@dataclass(frozen=True)
class Choice:
    """The rule that answers a request, and its reply with any templates filled."""

    rule: Rule
    reply: Mapping[str, Any]


class ScriptedBackend(Backend):
    """Answers by the first matching rule of a script."""

    name = "scripted"

    def __init__(
        self, catalogue: ModelCatalogue, script_path: Path, store: StateStore, sleep: Any = time.sleep
    ) -> None:
        super().__init__(catalogue)
        self.path = Path(script_path)
        self.store = store
        self.sleep = sleep
        self._lock = threading.Lock()
        # Taken before the file is read, so that an edit made while it loads shows at the next request.
        self._seen = _version(self.path)
        self.script = self._first_load()

    # ---------------------------------------------------------------- replies
    def create_message(self, request: MessageRequest) -> Reply:
        choice = self._choose(request)
        if choice is None:
            model = self.catalogue.find(request.body["model"]) or UNLISTED_MODEL
            return Reply(echo_message(request.body, model=model), {RULE_HEADER: FALLBACK_RULE})
        reply = choice.reply
        headers = self._headers(choice, reply)
        if "error" in reply:
            raise self._error(reply["error"], headers)
        replies.before_reply(reply.get("fault"), self.sleep)
        return Reply(replies.message(reply, request.body, self.tokenizer(request.body["model"])), headers)

    def stream_message(self, request: MessageRequest) -> EventStream:
        choice = self._choose(request)
        if choice is None:
            return super().stream_message(request)
        reply = choice.reply
        headers = self._headers(choice, reply)
        if "error" in reply:
            raise self._error(reply["error"], headers)
        timing = {**choice.rule.timing, **reply.get("stream", {})}
        message = replies.message(reply, request.body, self.tokenizer(request.body["model"]))
        return EventStream(replies.stream_events(message, timing, reply.get("fault"), self.sleep), headers)

    @staticmethod
    def _headers(choice: Choice, reply: Mapping[str, Any]) -> dict[str, str]:
        headers = {name: str(value) for name, value in (reply.get("headers") or {}).items()}
        return {**headers, RULE_HEADER: choice.rule.name}

    @staticmethod
    def _error(spec: Mapping[str, Any], headers: Mapping[str, str]) -> ApiError:
        error = replies.api_error(spec)
        error.headers = {**headers, **error.headers}
        return error

    # --------------------------------------------------------------- matching
    def _choose(self, request: MessageRequest) -> Choice | None:
        self._reload_if_changed()
        script = self.script
        view = RequestView(request.body, request.headers, request.custom_id, request.door)
        rule = first_match(script.runs, view)
        if rule is not None:
            return self._next_reply(rule, view)
        if script.fallback == "echo":
            return None
        raise ApiError(400, _no_match_message(script.rules, view), headers={RULE_HEADER: FALLBACK_RULE})

    def _next_reply(self, rule: Rule, view: RequestView) -> Choice:
        count = self.store.next_count(f"rule:{rule.name}") if rule.counted else 1
        position = count - 1
        if position >= len(rule.replies):
            if rule.when_exhausted == "fail":
                raise ApiError(
                    400,
                    f"rule {rule.name!r} has used all {len(rule.replies)} of its replies (when_exhausted: fail)",
                    headers={RULE_HEADER: rule.name},
                )
            position = position % len(rule.replies) if rule.when_exhausted == "cycle" else len(rule.replies) - 1
        reply = rule.replies[position]
        if not rule.templated:  # most replies are plain: nothing to work out
            return Choice(rule, reply)
        values = {
            "user_text": view.user_text,
            "model": view.model,
            "counter": str(count),
            "rule": rule.name,
            "custom_id": view.custom_id,
            **{f"match.{key}": value for key, value in captured(rule.conditions, view).items()},
        }
        return Choice(rule, replies.fill(reply, values))

    # ---------------------------------------------------------------- loading
    def _first_load(self) -> Script:
        try:
            return self._load(self._seen)
        except ScriptError as error:
            last_good = self._last_good()
            if last_good is None:
                raise ValueError(str(error)) from None
            logger.error("%s — serving the last script that loaded", error)
            return parse_script(last_good, str(self.path))

    def _load(self, version: FileVersion | None) -> Script:
        script, source = load_script(self.path)
        for warning in script.warnings:
            logger.warning("%s", warning)
        # On a full disk, or with Redis away, the script serves all the same, just not kept.
        with contextlib.suppress(StoreFull, StoreUnavailable):
            self.store.save_script(str(self.path), source, version.changed_ns if version else 0)
        return script

    def _last_good(self) -> str | None:
        """The last good script text the store keeps for this path; none while the store cannot be reached."""
        try:
            return self.store.last_script(str(self.path))
        except StoreUnavailable:
            return None

    def _reload_if_changed(self) -> None:
        """Load the script again if its file changed since this worker last read it.

        Checked on every request (a stat, a microsecond or two), not every so often: once any worker
        has served an edit, every worker serves it, and after a broken edit every worker serves the last
        good script — the store's, which may be newer than the one this worker had.
        """
        if _version(self.path) == self._seen:
            return
        with self._lock:
            version = _version(self.path)
            if version == self._seen:
                return  # another thread has just loaded it
            self._seen = version
            try:
                self.script = self._load(version)
                logger.info("reloaded the script %s (pid %s)", self.path, os.getpid())
            except ScriptError as error:
                last_good = self._last_good()
                if last_good is not None:
                    self.script = parse_script(last_good, str(self.path))
                logger.error("%s — the previous script keeps serving", error)


@dataclass(frozen=True)
class FileVersion:
    """What tells one version of a file from the next, from its stat."""

    inode: int  # a new file put in its place (editors that save by renaming)
    size: int
    modified_ns: int
    #: The inode's change time: set by the kernel at every write, so it also orders the versions
    #: (an mtime can be set back, e.g. by `cp -p` or `touch -d`).
    changed_ns: int


def _version(path: Path) -> FileVersion | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return FileVersion(stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _no_match_message(rules: tuple[Rule, ...], view: RequestView) -> str:
    """Which rule came closest (fewest failing conditions, the first on a tie), and why it did not match."""
    if not rules:
        return "No rule matched this request: the script has no rules"
    rule, failures = min(((rule, reasons(rule.conditions, view)) for rule in rules), key=lambda pair: len(pair[1]))
    return f"No rule matched this request. Closest: rule {rule.name!r} (line {rule.line}): {'; '.join(failures)}"
