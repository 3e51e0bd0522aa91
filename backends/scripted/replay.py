"""A rule that replays one exchange: what the request was matched by, and the reply it got, as the script says it.

The proxy's record mode (backends/proxy/recording.py) adds a rule per exchange
to a recording; the inspector's copy button (app/api/inspector.py) makes one
from a journal entry. Both make it here, so that a recorded rule and a copied
one are the same rule: matched by the request's model, its last user text and
its turn; answering with the message's replayable content, stop reason and
usage, a stream's pace and any error event, or the error it got.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from statistics import mean
from typing import Any

import yaml

from backends import text, tokens
from backends.events import message_from_events
from backends.safe_yaml import SafeDumper
from backends.wire import JSON, error_type_for

#: Content blocks a script can replay; others (server tool results) are left out of a rule.
REPLAYABLE = {"text": ("text",), "tool_use": ("id", "name", "input"), "thinking": ("thinking", "signature"),
              "redacted_thinking": ("data",)}  # fmt: skip
#: The overloaded error's status, which an error event does not carry.
OVERLOADED_STATUS = 529


class Dumper(SafeDumper):
    """Writes every value out in full: scripts may not use YAML aliases, so none are made for shared values."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def rules_yaml(rules: Sequence[Mapping[str, Any]]) -> str:
    """Rules as the items of a script's YAML list, keys in their order."""
    return yaml.dump(list(rules), Dumper=Dumper, sort_keys=False, allow_unicode=True)


def match_for(body: Mapping[str, Any], model: str | None = None) -> JSON:
    """What matches the request again: its model (`model`, where a door named it outside the body), its last user
    text and its turn (the number of user turns)."""
    messages = body["messages"]
    return {
        "model": model or body["model"],
        "user_text": text.last_user_text(messages),
        "turn": sum(1 for message in messages if message["role"] == "user"),
    }


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


def reply_for_stream(timed_events: Sequence[tuple[float, Mapping[str, Any]]]) -> JSON:
    """A script reply that streams the events again: their message, their pace, and any error event where it came
    (`timed_events` each with its time in seconds from the request)."""
    events = [event for _, event in timed_events]
    failure = next((index for index, event in enumerate(events) if event["type"] == "error"), None)
    reply = reply_for_message(message_from_events(events[:failure]))
    reply["stream"] = stream_timing(timed_events)
    if failure is not None:
        error = events[failure].get("error", {})
        status = OVERLOADED_STATUS if error.get("type") == "overloaded_error" else 500
        reply["fault"] = {"kind": "error_event", "after_events": failure, "error": {"status": status, **error}}
    return reply


def reply_for_error(status: int, error_type: str | None, message: str, headers: Mapping[str, str]) -> JSON:
    """A script reply that answers with the error again, with its retry headers."""
    spec: JSON = {"status": status, "type": error_type or error_type_for(status), "message": message}
    retry = {name: value for name, value in headers.items() if name.startswith(("retry-after", "x-should"))}
    if retry:
        spec["headers"] = retry
    return {"error": spec}


def stream_timing(timed_events: Sequence[tuple[float, Mapping[str, Any]]]) -> JSON:
    """The pace of a stream: time to the first content delta, and the mean gap after it."""
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


def rule_for_entry(entry: Mapping[str, Any]) -> JSON:
    """A rule that answers a journal entry's request as it was answered (named for the entry); ValueError, saying
    why, for an entry no rule can replay (not a Messages request, or one whose body or events were not kept whole)."""
    body = entry.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or "truncated" in body:
        raise ValueError("its request is not a Messages request kept whole")
    try:
        match = match_for(body, entry.get("model"))
        reply = _reply_for_entry(entry)
    except (KeyError, TypeError, AttributeError):
        raise ValueError("its request or its answer is not one a script can say") from None
    return {"name": f"journal-{entry['id']}", "match": match, "reply": reply}


def _reply_for_entry(entry: Mapping[str, Any]) -> JSON:
    if entry.get("events_left_out"):
        raise ValueError("its stream's events were not all kept")
    events = entry.get("events")
    if events:
        return reply_for_stream([(item["at_ms"] / 1000, item["event"]) for item in events])
    answer = entry.get("response")
    status = int(entry["status"])
    if status >= 400:
        return reply_for_error(status, *_error_of(answer), {})  # (an entry keeps no response headers)
    if isinstance(answer, dict) and "choices" in answer:  # the OpenAI-compatible door's completion
        return {"text": answer["choices"][0]["message"].get("content") or ""}
    if not isinstance(answer, dict) or answer.get("type") != "message":
        raise ValueError("its answer is not a message")
    return reply_for_message(answer)


def _error_of(answer: Any) -> tuple[str | None, str]:
    """An error answer's type and message, in any door's shape (`{"error": {type, message}}`, or `{"message"}`)."""
    if not isinstance(answer, dict):
        return None, str(answer or "")
    inner = answer.get("error")
    error: Mapping[str, Any] = inner if isinstance(inner, dict) else answer
    kind = error.get("type")
    return (kind if isinstance(kind, str) else None), str(error.get("message", ""))
