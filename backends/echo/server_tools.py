"""The server tools, run on the API's side: the echo backend's calls of them and their results.

A server tool call is a `server_tool_use` block followed by its result block, both in the reply, and the
turn goes on after it (the echo text ends it). Results are derived from the input, so they are the same
for the same request:
- web search (`web_search_*`): input `{query}` (the user's text); two `web_search_result`s whose urls
  and titles are made from the query; counted in usage.server_tool_use.web_search_requests;
- web fetch (`web_fetch_*`): input `{url}`, the first url in the user's text; a `web_fetch_result`
  holding a plain-text document about it (no url in the text: a `url_not_in_prior_context` error);
  counted in web_fetch_requests;
- code execution: `code_execution_20250522` runs Python (`code_execution` with `{code}`), the later
  versions run bash (`bash_code_execution` with `{command}`); both print the user's text, and the
  reply names the container it ran in (`container`);
- tool search (`tool_search_tool_regex`, `tool_search_tool_bm25`): `tool_reference`s to the deferred
  tools (`defer_loading: true`) whose name or description shares a word with the user's text.

`max_uses`: a web search or fetch past its max_uses (counting the calls already in the conversation)
gets the API's `max_uses_exceeded` error result instead, and is not counted.

`pause_turn`: one reply makes one server tool call. With tool_choice `any` whose first tool is a server
tool, the turn calls every server tool offered, in order: each reply but the last stops with
`pause_turn`, and sending it back as the last (assistant) message continues the turn, as the API asks.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from backends.echo.tools import DIRECT_CALLER, Tool
from backends.wire import JSON, new_id, opaque_digest

#: Server tools by the prefix of their `type`.
SERVER_TOOL_PREFIXES = ("web_search_", "web_fetch_", "code_execution_", "tool_search_tool_")
URL = re.compile(r"https?://[^\s\]\"'<>]+")
WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: get_weather is two words
#: When a fetched page is said to have been retrieved, and when search results are dated.
RETRIEVED_AT = "2026-12-01T00:00:00Z"
#: How long the container a code execution ran in stays alive after the request.
CONTAINER_LIFETIME = timedelta(hours=1)


def is_server_tool(tool: Tool) -> bool:
    """Whether `tool` runs on the API's side."""
    return str(tool.get("type", "")).startswith(SERVER_TOOL_PREFIXES)


@dataclass
class ServerTurn:
    """The server tool calls one reply makes: their blocks, what usage counts, the container, whether it pauses."""

    blocks: list[JSON] = field(default_factory=list)
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    container: JSON | None = None
    paused: bool = False

    @property
    def usage(self) -> JSON:
        return {"web_search_requests": self.web_search_requests, "web_fetch_requests": self.web_fetch_requests}


def server_turn(body: Mapping[str, Any], forced: Tool, user_text: str) -> ServerTurn:
    """The server tool call this reply makes, `forced` being the tool tool_choice picked."""
    queue = _turn_queue(body, forced)
    done = _calls_this_turn(body["messages"])
    turn = ServerTurn()
    if done >= len(queue):
        return turn
    _call(turn, queue[done], body, user_text)
    turn.paused = done + 1 < len(queue)
    return turn


def _turn_queue(body: Mapping[str, Any], forced: Tool) -> list[Tool]:
    """The server tools this turn calls: every one offered for `any`, else the one named."""
    if (body.get("tool_choice") or {}).get("type") == "any":
        return [tool for tool in body.get("tools") or () if is_server_tool(tool)]
    return [forced]


def _calls_this_turn(messages: Sequence[Mapping[str, Any]]) -> int:
    """How many server tool calls the turn has made: those of a trailing assistant message (a paused turn resent)."""
    last = messages[-1]
    if last["role"] != "assistant" or isinstance(last["content"], str):
        return 0
    return sum(1 for block in last["content"] if block.get("type") == "server_tool_use")


def _call(turn: ServerTurn, tool: Tool, body: Mapping[str, Any], user_text: str) -> None:
    kind = str(tool["type"])
    if kind.startswith("web_search_"):
        _web_search(turn, tool, body, user_text)
    elif kind.startswith("web_fetch_"):
        _web_fetch(turn, tool, body, user_text)
    elif kind.startswith("code_execution_"):
        _code_execution(turn, kind, body, user_text)
    else:
        _tool_search(turn, tool, body, user_text)


def _use(turn: ServerTurn, name: str, tool_input: JSON) -> str:
    block = {
        "type": "server_tool_use",
        "id": new_id("srvtoolu"),
        "name": name,
        "input": tool_input,
        "caller": dict(DIRECT_CALLER),
    }
    turn.blocks.append(block)
    return str(block["id"])


def _result(turn: ServerTurn, kind: str, tool_use_id: str, content: Any) -> None:
    turn.blocks.append({"type": kind, "tool_use_id": tool_use_id, "content": content})


def _over_max_uses(tool: Tool, body: Mapping[str, Any]) -> bool:
    limit = tool.get("max_uses")
    if not limit:
        return False
    used = sum(
        1
        for message in body["messages"]
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "server_tool_use" and block.get("name") == tool["name"]
    )
    return used >= limit


def _web_search(turn: ServerTurn, tool: Tool, body: Mapping[str, Any], query: str) -> None:
    tool_use_id = _use(turn, "web_search", {"query": query})
    if _over_max_uses(tool, body):
        error = {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}
        _result(turn, "web_search_tool_result", tool_use_id, error)
        return
    turn.web_search_requests += 1
    slug = "-".join(WORD.findall(query.lower())[:8]) or "search"
    results = [
        {
            "type": "web_search_result",
            "url": f"https://example.com/{slug}/{rank}",
            "title": f"{query[:80]} ({rank})",
            "encrypted_content": opaque_digest(f"{query}\n{rank}"),
            "page_age": RETRIEVED_AT,
        }
        for rank in (1, 2)
    ]
    _result(turn, "web_search_tool_result", tool_use_id, results)


def _web_fetch(turn: ServerTurn, tool: Tool, body: Mapping[str, Any], user_text: str) -> None:
    found = URL.search(user_text)
    url = found.group(0) if found else ""
    tool_use_id = _use(turn, "web_fetch", {"url": url})
    error_code = "max_uses_exceeded" if _over_max_uses(tool, body) else None if found else "url_not_in_prior_context"
    if error_code is not None:
        _result(
            turn,
            "web_fetch_tool_result",
            tool_use_id,
            {"type": "web_fetch_tool_result_error", "error_code": error_code},
        )
        return
    turn.web_fetch_requests += 1
    page = {
        "type": "web_fetch_result",
        "url": url,
        "retrieved_at": RETRIEVED_AT,
        "content": {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": f"The page at {url}."},
            "title": url,
        },
    }
    _result(turn, "web_fetch_tool_result", tool_use_id, page)


def _code_execution(turn: ServerTurn, kind: str, body: Mapping[str, Any], user_text: str) -> None:
    output = {"stdout": f"{user_text}\n", "stderr": "", "return_code": 0, "content": []}
    if kind == "code_execution_20250522":
        tool_use_id = _use(turn, "code_execution", {"code": f"print({user_text!r})"})
        _result(turn, "code_execution_tool_result", tool_use_id, {"type": "code_execution_result", **output})
    else:
        tool_use_id = _use(turn, "bash_code_execution", {"command": f"echo {shlex.quote(user_text)}"})
        _result(turn, "bash_code_execution_tool_result", tool_use_id, {"type": "bash_code_execution_result", **output})
    turn.container = _container(body.get("container"))


def _container(requested: Any) -> JSON:
    """The container the code ran in: the one the request named, or a new one, with the skills it asked for."""
    given = requested if isinstance(requested, Mapping) else {"id": requested}
    skills = [
        {"type": skill["type"], "skill_id": skill["skill_id"], "version": skill.get("version") or "latest"}
        for skill in given.get("skills") or ()
    ]
    expires_at = datetime.now(timezone.utc) + CONTAINER_LIFETIME
    return {
        "id": given.get("id") or new_id("container"),
        "expires_at": expires_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "skills": skills or None,
    }


def _tool_search(turn: ServerTurn, tool: Tool, body: Mapping[str, Any], user_text: str) -> None:
    words = {word.lower() for word in WORD.findall(user_text)}
    regex = tool["name"] == "tool_search_tool_regex"
    query = {"pattern": "|".join(sorted(re.escape(word) for word in words)) or ".*"} if regex else {"query": user_text}
    tool_use_id = _use(turn, str(tool["name"]), query)
    matches = [
        {"type": "tool_reference", "tool_name": candidate["name"]}
        for candidate in body.get("tools") or ()
        if candidate.get("defer_loading")
        and candidate.get("name")
        and words & {word.lower() for word in WORD.findall(f"{candidate['name']} {candidate.get('description', '')}")}
    ]
    _result(
        turn,
        "tool_search_tool_result",
        tool_use_id,
        {"type": "tool_search_tool_search_result", "tool_references": matches},
    )
