"""Citations: for each document the last user message gives with `citations: {enabled: true}`, the echo
backend quotes it in a text block of its own whose `citations` point back at the quote.

The quote is the document's first sentence (at most 200 characters), and the location is the kind the
API uses for the document's kind:
- plain text (`source.type: text`): `char_location`, start and end character indices;
- custom content (`source.type: content`): `content_block_location`, the first block (0 to 1);
- a PDF or a file (base64, url, file): `page_location`, page 1 to 2 (exclusive end, as the API counts),
  quoting the document's title, since the echo does not read PDFs.
`document_index` counts every document block of the request, in order, from 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from backends.wire import JSON

SENTENCE_END = re.compile(r"(?<=[.!?])\s")
MAX_QUOTE = 200


def cited_blocks(messages: Sequence[Mapping[str, Any]]) -> list[JSON]:
    """One text block per citable document of the last user message, quoting it with its citation."""
    documents = list(_documents(messages))
    last_user = max((place for place, message in enumerate(messages) if message["role"] == "user"), default=-1)
    blocks = []
    for index, (place, document) in enumerate(documents):
        if place == last_user and (document.get("citations") or {}).get("enabled"):
            citation = _citation(document, index)
            blocks.append({"type": "text", "text": citation["cited_text"], "citations": [citation]})
    return blocks


def _documents(messages: Sequence[Mapping[str, Any]]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for place, message in enumerate(messages):
        content = message.get("content")  # a beta system message may carry only an output_config
        if isinstance(content, list):
            for block in content:
                if block.get("type") == "document":
                    yield place, block


def _citation(document: Mapping[str, Any], index: int) -> JSON:
    source = document.get("source") or {}
    title = document.get("title")
    where: JSON = {"document_index": index, "document_title": title}
    if source.get("type") == "text":
        quote = _first_sentence(str(source.get("data", "")))
        return {
            "type": "char_location",
            "cited_text": quote,
            **where,
            "start_char_index": 0,
            "end_char_index": len(quote),
        }
    if source.get("type") == "content":
        content = source.get("content")
        first = (
            content
            if isinstance(content, str)
            else next((block.get("text", "") for block in content or () if block.get("type") == "text"), "")
        )
        return {
            "type": "content_block_location",
            "cited_text": first,
            **where,
            "start_block_index": 0,
            "end_block_index": 1,
        }
    quote = title or "Page 1"
    return {"type": "page_location", "cited_text": quote, **where, "start_page_number": 1, "end_page_number": 2}


def _first_sentence(text: str) -> str:
    return SENTENCE_END.split(text.strip(), maxsplit=1)[0][:MAX_QUOTE]
