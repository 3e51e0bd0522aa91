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

The text documents of one request may hold at most 32 MB between them (the
real API's limit on a request's size, which they would count against inline):
each is counted before it is read, a file named twice counts twice, and a
file is read and held once however often it is named. Past that, a 400
`prompt is too long` before the next file is read.

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
#: The most text the documents of one request may hold, however many files it names and however often: the
#: real API's limit on a Messages request (32 MB), far beyond any model's context window, bounded in memory.
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
    return _Resolution(files).body(body)


class _Resolution:
    """One request's files: each text file read once however often it is named, and all of them within the
    request's budget of MAX_TEXT_BYTES, counted before each read (a file named eight times costs eight times
    its size, as eight inline copies would, but is read and held once)."""

    def __init__(self, files: FileReader) -> None:
        self.files = files
        self.texts: dict[str, str] = {}
        self.text_bytes = 0

    def body(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        messages = _each(body["messages"], self.message)
        return body if messages is body["messages"] else {**body, "messages": messages}

    def message(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        content = message.get("content")  # a beta system message may carry only an output_config
        if not isinstance(content, list):
            return message
        blocks = _each(content, self.block)
        return message if blocks is content else {**message, "content": blocks}

    def block(self, block: Mapping[str, Any]) -> Mapping[str, Any]:
        kind = block["type"]
        if kind == "container_upload":
            self.files.usable(block["file_id"])
            return block
        if kind == "tool_result" and isinstance(block.get("content"), list):
            content = _each(block["content"], self.block)
            return block if content is block["content"] else {**block, "content": content}
        source = block.get("source")
        if kind not in ACCEPTED_TYPES or not isinstance(source, Mapping) or source.get("type") != "file":
            return block
        file_id = source["file_id"]
        metadata = self.files.usable(file_id)
        if metadata["mime_type"] not in ACCEPTED_TYPES[kind]:
            accepted = ", ".join(ACCEPTED_TYPES[kind])
            raise ApiError(
                400, f"Invalid file type: file {file_id} is {metadata['mime_type']}; {kind} blocks take {accepted}"
            )
        if metadata["mime_type"] != "text/plain":
            return block
        return {**block, "source": {"type": "text", "media_type": "text/plain", "data": self.text(metadata)}}

    def text(self, metadata: Mapping[str, Any]) -> str:
        """A text file's contents, counted against the request's budget before it is read (once)."""
        self.text_bytes += metadata["size_bytes"]
        if self.text_bytes > MAX_TEXT_BYTES:
            raise ApiError(
                400,
                f"prompt is too long: the text files this request names hold {self.text_bytes} bytes or more, "
                f"more than the {MAX_TEXT_BYTES} a request may (a file named twice counts twice)",
            )
        file_id = metadata["id"]
        if file_id not in self.texts:
            with self.files.open(file_id) as file:
                self.texts[file_id] = file.read(MAX_TEXT_BYTES).decode("utf-8", "replace")
        return self.texts[file_id]


def _each(items: Sequence[Item], resolve: Callable[[Item], Item]) -> Sequence[Item]:
    """`items`, each replaced by what `resolve` makes of it: the very same sequence when none changed."""
    changed: list[Item] | None = None
    for index, item in enumerate(items):
        resolved = resolve(item)
        if resolved is not item:
            changed = changed or list(items)
            changed[index] = resolved
    return items if changed is None else changed
