"""File references in a message, checked and resolved against the file store before a backend answers it.

A message can name an uploaded file rather than carry it:
- a `document` whose source is `{type: file, file_id}`: a PDF or plain text;
- an `image` whose source is `{type: file, file_id}`: JPEG, PNG, GIF or WebP;
- a `container_upload` block `{type: container_upload, file_id}`: any type, for code execution;
in a message's content or in a tool_result's. Each file named must exist and
be available (a 404, as for the Files routes; `file_expired` once it has
expired) and be of a type its block takes (a 400, the Files guide's "Invalid
file type"). A plain-text document is then inlined: its source becomes
`{type: text, media_type: text/plain, data: <the file's text>}`, so every
backend sees it as it sees a text document sent inline (the echo reply quotes
it, the token rule counts it, a proxied request carries it). The other
references stay as they are: backends describe them (`[document]`), and
their bytes are never read.

The body is copied only along the path to a block that changed; a request
that names no file is returned as it came.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO, Protocol, TypeVar

from backends.wire import JSON, ApiError

#: The MIME types each block takes from a file.
ACCEPTED_TYPES = {
    "document": ("application/pdf", "text/plain"),
    "image": ("image/jpeg", "image/png", "image/gif", "image/webp"),
}
#: The most text a document file may hold: far beyond any model's context window, and bounded in memory.
MAX_TEXT_BYTES = 32 * 1024 * 1024
Item = TypeVar("Item")


class FileReader(Protocol):
    """What resolving needs of the file store (backends/files/store.py)."""

    def usable(self, file_id: str) -> JSON:
        """The metadata of an available file; an ApiError (404) when it is unknown or expired."""

    def open(self, file_id: str) -> BinaryIO:
        """The file's bytes, open for reading."""


def resolve_file_sources(body: Mapping[str, Any], files: FileReader) -> Mapping[str, Any]:
    """`body` with every file it names checked and plain-text documents inlined (module docstring)."""
    messages = _each(body["messages"], lambda message: _resolved_message(message, files))
    return body if messages is body["messages"] else {**body, "messages": messages}


def _resolved_message(message: Mapping[str, Any], files: FileReader) -> Mapping[str, Any]:
    content = message.get("content")  # a beta system message may carry only an output_config
    if not isinstance(content, list):
        return message
    blocks = _each(content, lambda block: _resolved_block(block, files))
    return message if blocks is content else {**message, "content": blocks}


def _each(items: Sequence[Item], resolve: Callable[[Item], Item]) -> Sequence[Item]:
    """`items`, each replaced by what `resolve` makes of it: the very same sequence when none changed."""
    changed: list[Item] | None = None
    for index, item in enumerate(items):
        resolved = resolve(item)
        if resolved is not item:
            changed = changed or list(items)
            changed[index] = resolved
    return items if changed is None else changed


def _resolved_blocks(blocks: Sequence[Mapping[str, Any]], files: FileReader) -> Sequence[Mapping[str, Any]]:
    resolved = [_resolved_block(block, files) for block in blocks]
    return blocks if all(new is old for new, old in zip(resolved, blocks, strict=True)) else resolved


def _resolved_block(block: Mapping[str, Any], files: FileReader) -> Mapping[str, Any]:
    kind = block["type"]
    if kind == "container_upload":
        files.usable(block["file_id"])
        return block
    if kind == "tool_result" and isinstance(block.get("content"), list):
        content = _each(block["content"], lambda inner: _resolved_block(inner, files))
        return block if content is block["content"] else {**block, "content": content}
    source = block.get("source")
    if kind not in ACCEPTED_TYPES or not isinstance(source, Mapping) or source.get("type") != "file":
        return block
    file_id = source["file_id"]
    metadata = files.usable(file_id)
    if metadata["mime_type"] not in ACCEPTED_TYPES[kind]:
        accepted = ", ".join(ACCEPTED_TYPES[kind])
        raise ApiError(
            400, f"Invalid file type: file {file_id} is {metadata['mime_type']}; {kind} blocks take {accepted}"
        )
    if metadata["mime_type"] != "text/plain":
        return block
    return {**block, "source": {"type": "text", "media_type": "text/plain", "data": _text(file_id, metadata, files)}}


def _text(file_id: str, metadata: Mapping[str, Any], files: FileReader) -> str:
    if metadata["size_bytes"] > MAX_TEXT_BYTES:
        raise ApiError(
            400,
            f"prompt is too long: file {file_id} holds {metadata['size_bytes']} bytes of text, "
            f"more than the {MAX_TEXT_BYTES} a document may",
        )
    with files.open(file_id) as file:
        return file.read(MAX_TEXT_BYTES).decode("utf-8", "replace")
