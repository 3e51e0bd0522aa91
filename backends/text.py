"""Plain-text views of request content, shared by the echo reply and the token rule.

Text blocks give their text; every other block is described briefly in square
brackets, so that a reply or a count never silently ignores it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Block = Mapping[str, Any]


def content_text(content: str | Sequence[Block]) -> str:
    """A message's content as text: a string as it is, blocks joined by newlines."""
    if isinstance(content, str):
        return content
    return "\n".join(block_text(block) for block in content)


def system_text(system: str | Sequence[Block] | None) -> str:
    """The system prompt as text (empty when there is none)."""
    if not system:
        return ""
    return content_text(system)


def block_text(block: Block) -> str:
    """One content block as text."""
    kind = block["type"]
    if kind == "text":
        return str(block["text"])
    if kind == "thinking":
        return str(block.get("thinking", ""))
    if kind == "tool_use":
        return f"[tool_use {block['name']} {json.dumps(block.get('input', {}), ensure_ascii=False)}]"
    if kind == "tool_result":
        inner = block.get("content")
        result = content_text(inner) if inner else ""
        error = " error" if block.get("is_error") else ""
        return f"[tool_result{error} {block['tool_use_id']}: {result}]"
    if kind == "document":
        return _document_text(block)
    if kind == "search_result":
        return f"[search_result {block.get('title', '')}: {content_text(block.get('content', []))}]"
    return f"[{kind}]"


def _document_text(block: Block) -> str:
    source = block.get("source", {})
    title = f" {block['title']}" if block.get("title") else ""
    if source.get("type") == "text":
        return f"[document{title}: {source.get('data', '')}]"
    if source.get("type") == "content" and not isinstance(source.get("content"), str):
        return f"[document{title}: {content_text(source.get('content', []))}]"
    return f"[document{title}]"


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last user message (empty when there is none)."""
    for message in reversed(messages):
        if message["role"] == "user":
            return content_text(message["content"])
    return ""
