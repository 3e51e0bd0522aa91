"""Which tool a request's tool_choice makes the echo backend call, and the input a client tool gets.

- tool_choice `tool` calls the tool it names; `any` calls the first tool offered (a toolset, which has
  no single name, is passed over); `none` calls nothing: the echo answers in text.
- Under `auto` (tool_choice's default when tools are given) the model's choice is made deterministically:
  a custom tool that the last user turn names is called — a word of four letters or more of its name, as a
  word of the text ("What is the weather in Paris?" calls `weather` or `get_weather`) — and text answers
  otherwise, and always once the turn carries tool results (so an agent loop ends). Clients that turn a
  forced choice into `auto`, on the models that refuse forced choices, still get their call.
- Server tools (web search, web fetch, code execution, tool search) run on the API's side:
  `server_tools.py` answers for them. Every other tool is the client's, called with a `tool_use` block.
- A custom tool's input is built from its input_schema (`schema_example`), so it validates against it
  (`strict: true` tools included); the built-in client tools' schemas are the API's, so each gets the
  input the API documents for a first look: bash `{command}`, the text editor `{command: view, path}`,
  memory `{command: view, path: /memories}`, computer use `{action: screenshot}`.
"""

from __future__ import annotations

import re
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
WORD = re.compile(r"[A-Za-z]+")
#: The words of a tool name: snake_case, kebab-case and camelCase parts.
NAME_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
#: Every tool_use and server_tool_use block is the model's own call, not one made from code execution.
DIRECT_CALLER: JSON = {"type": "direct"}


def chosen_tool(body: Mapping[str, Any], user_text: str) -> Tool | None:
    """The tool the reply calls, if any: the one tool_choice forces, or under `auto` one the user's text names."""
    tools: Sequence[Tool] = body.get("tools") or ()
    if not tools:
        return None
    choice = body.get("tool_choice") or {"type": "auto"}
    if choice.get("type") == "any":
        return next((tool for tool in tools if not str(tool.get("type", "")).startswith(TOOLSET_PREFIXES)), None)
    if choice.get("type") == "tool":
        return next((tool for tool in tools if tool.get("name") == choice.get("name")), None)
    if choice.get("type") == "auto" and not answers_tools(body["messages"]):
        said = {word.lower() for word in WORD.findall(user_text)}
        return next((tool for tool in tools if _is_custom(tool) and _name_words(tool) & said), None)
    return None


def answers_tools(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the last user turn carries tool results: the model then answers them, in text."""
    last = next((message for message in reversed(messages) if message["role"] == "user"), None)
    content = last["content"] if last else ""
    return isinstance(content, list) and any(block.get("type") == "tool_result" for block in content)


def _is_custom(tool: Tool) -> bool:
    return tool.get("type") in (None, "custom") and "name" in tool


def _name_words(tool: Tool) -> set[str]:
    """The words of a tool's name that can name it in a sentence: four letters or more (`get` and `run` cannot)."""
    return {word.lower() for word in NAME_WORD.findall(str(tool["name"])) if len(word) >= 4}


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
