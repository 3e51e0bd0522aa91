"""Which tool a request's tool_choice makes the echo backend call, and the input a client tool gets.

- tool_choice `tool` calls the tool it names; `any` calls the first tool offered (a toolset, which has
  no single name, is passed over); `auto` and `none` call nothing: the echo answers in text.
- Server tools (web search, web fetch, code execution, tool search) run on the API's side:
  `server_tools.py` answers for them. Every other tool is the client's, called with a `tool_use` block.
- A custom tool's input is built from its input_schema (`schema_example`), so it validates against it
  (`strict: true` tools included); the built-in client tools' schemas are the API's, so each gets the
  input the API documents for a first look: bash `{command}`, the text editor `{command: view, path}`,
  memory `{command: view, path: /memories}`, computer use `{action: screenshot}`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from backends import schema_example
from backends.wire import JSON, new_id

Tool = Mapping[str, Any]

#: The built-in client tools by the prefix of their `type`, each with the input a call of it carries.
BUILT_IN_INPUTS: Mapping[str, Callable[[str], JSON]] = {
    "bash_": lambda text: {"command": f"echo {shlex.quote(text)}"},
    "text_editor_": lambda _text: {"command": "view", "path": "/"},
    "memory_": lambda _text: {"command": "view", "path": "/memories"},
    "computer_": lambda _text: {"action": "screenshot"},
}
#: Tool types that group several tools under no one name; tool_choice `any` passes them over.
TOOLSET_PREFIXES = ("browser_toolset_", "computer_toolset_", "mcp_toolset")
#: Every tool_use and server_tool_use block is the model's own call, not one made from code execution.
DIRECT_CALLER: JSON = {"type": "direct"}


def forced_tool(body: Mapping[str, Any]) -> Tool | None:
    """The tool tool_choice makes the reply call, if any."""
    choice = body.get("tool_choice") or {}
    tools: Sequence[Tool] = body.get("tools") or ()
    if choice.get("type") == "any":
        return next((tool for tool in tools if not str(tool.get("type", "")).startswith(TOOLSET_PREFIXES)), None)
    if choice.get("type") == "tool":
        return next((tool for tool in tools if tool.get("name") == choice.get("name")), None)
    return None


def tool_use_block(tool: Tool, user_text: str) -> JSON:
    """A call of the client tool `tool`, its input derived from the user's text."""
    return {
        "type": "tool_use",
        "id": new_id("toolu"),
        "name": tool["name"],
        "input": tool_input(tool, user_text),
        "caller": dict(DIRECT_CALLER),
    }


def tool_input(tool: Tool, user_text: str) -> JSON:
    """The input of a call of `tool`: valid against its input_schema, or the built-in tool's documented first call."""
    kind = str(tool.get("type") or "custom")
    for prefix, built_in in BUILT_IN_INPUTS.items():
        if kind.startswith(prefix):
            return built_in(user_text)
    value = schema_example.example(tool.get("input_schema") or {"type": "object"}, hint=user_text)
    return value if isinstance(value, dict) else {}
