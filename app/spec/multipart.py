"""multipart/form-data bodies checked against their schema as they stream in, file parts written straight to disk.

Connexion's form validator keeps every message of the body it reads, and
werkzeug's form parser behind Flask gets a body our bridge has read whole
(app/http/bridge.py): a 500 MB upload cannot travel either way. This
validator reads the body as it arrives, part by part (python-multipart's
parser, which Connexion's own form parsing uses too):
- a part the schema declares a file (`type: string, format: binary`) goes to
  a new file in the spool directory a batch of chunks at a time, written on a
  thread, whether or not the part has a filename (the SDK sends bare bytes
  without one); it may hold at most `max_file_bytes` (else a 413);
- any other part is text: at most 64 KiB, kept in memory;
- at most 100 parts, each with python-multipart's bounds on its headers.
A disk with no room for the file is a 503 api_error, as a full state store is.
A file refused, too large or for want of room, is removed at once, and the
rest of the body read to its end (no more than the route's body limit), so
that the client, still sending, hears the answer.
The fields are then checked against the schema as a JSON body is
(`spec/validators.py`, the same messages: `file: Field required`), text
parsed as the schema's type says, and the form is left in the ASGI scope
(app/http/parsed_body.py) for the handler: values typed, each file a
`SpooledFile`. The body is used up: the layers below see an empty one. A body
that fails — broken, cut short, too large, or invalid — leaves no file
behind; the handler removes the spool it does not keep (`SpooledFile.discard`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from connexion.exceptions import BadRequestProblem
from connexion.validators import AbstractRequestBodyValidator
from python_multipart.multipart import FormParserError, MultipartParser, parse_options_header
from starlette.types import Receive, Scope

from app.http.parsed_body import hand_on
from app.spec.validators import first_error, schema_validator
from backends.files import spool_prefix
from backends.wire import ApiError

MAX_TEXT_PART_BYTES = 64 * 1024
MAX_PARTS = 100
#: File bytes gathered before one write: few thread hops, little memory.
WRITE_BATCH_BYTES = 1024 * 1024
#: A text part the schema types `integer`: digits, no more than Python converts (4,300); a longer one stays
#: text, and fails its schema as any other text would.
INTEGER = re.compile(rf"-?[0-9]{{1,{sys.get_int_max_str_digits() or 4300}}}")

# python-multipart logs each malformed body it meets as a warning; the client's 400 already says the same.
logging.getLogger("python_multipart").setLevel(logging.ERROR)


class FileTooLarge(ApiError):
    """A file part is over the limit (the Files guide: "File exceeds the 500 MB limit")."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"File exceeds the {limit / 2**20:g} MB limit")  # the body was read: no need to close


class NoRoomForFile(ApiError):
    """The disk under the files has no room for this one: a 503 api_error, as for a full state store."""

    def __init__(self) -> None:
        super().__init__(503, "There is no room on disk for the file; it was not kept. Retry when there is room")


#: The errors of a write that found no room.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class SpooledFile:
    """A file part of an upload, in a spool file of its own until the handler keeps it or discards it."""

    path: Path
    filename: str | None
    content_type: str | None
    size: int = 0

    def discard(self) -> None:
        """Remove the spool file (nothing happens when it was moved away, kept)."""
        self.path.unlink(missing_ok=True)


class MultipartBodyValidator(AbstractRequestBodyValidator):
    """Connexion's body validator interface for multipart/form-data, streaming (module docstring).

    It overrides `wrap_receive`, the method Connexion's request validation calls, rather than the
    `_parse` and `_validate` a validator usually overrides: Connexion's `wrap_receive` keeps every
    message of the body to hand it on, which is what must not happen here. The schema is kept here,
    as Connexion's own copy is private.
    """

    def __init__(self, *, schema: dict, spool_directory: Path, max_file_bytes: int, **options: Any) -> None:
        options.pop("uri_parser", None)  # text parts are typed from the schema here
        super().__init__(schema=schema, **options)
        self.schema = schema
        self.spool_directory = spool_directory
        self.max_file_bytes = max_file_bytes
        properties = schema.get("properties", {})
        self._file_fields = frozenset(name for name, part in properties.items() if _is_file(part))

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        reader = _FormReader(_boundary(scope), self._file_fields, self.spool_directory, self.max_file_bytes)
        try:
            await reader.read(receive)
            form = self._validated(reader.fields)
        except BaseException:
            reader.discard()
            raise
        return hand_on(form, scope, receive)

    def _validated(self, fields: list[tuple[str, str | SpooledFile]]) -> dict[str, Any]:
        """The form, checked against the schema: one value per field, or a list for a field given more than once."""
        properties = self.schema.get("properties", {})
        given: dict[str, list[Any]] = {}
        for name, value in fields:
            typed = value if isinstance(value, SpooledFile) else _typed(value, properties.get(name, {}))
            given.setdefault(name, []).append(typed)
        form = {name: values[0] if len(values) == 1 else values for name, values in given.items()}
        checked = {name: _stand_in(value) for name, value in form.items()}
        message = first_error(schema_validator(self.schema), checked)
        if message is not None:
            raise BadRequestProblem(detail=message)
        return form


@dataclass
class _Part:
    """The part being read: its name and its text, or for a file part where its bytes go (none once refused)."""

    name: str = ""
    text: bytearray = field(default_factory=bytearray)
    is_file: bool = False
    size: int = 0
    spooled: SpooledFile | None = None
    sink: IO[bytes] | None = None


class _FormReader:
    """One multipart body, parsed as its chunks arrive; python-multipart calls the `_on_…` methods."""

    def __init__(
        self, boundary: bytes, file_fields: frozenset[str], spool_directory: Path, max_file_bytes: int
    ) -> None:
        self.file_fields = file_fields
        self.spool_directory = spool_directory
        self.max_file_bytes = max_file_bytes
        self.fields: list[tuple[str, str | SpooledFile]] = []
        self.spooled: list[SpooledFile] = []
        self.parts = 0
        self.ended = False
        #: Why the upload's file is refused, once it is (too large, no room): the body is read on to its end, so
        #: that the client hears the answer, but nothing more is written and every spool file is gone.
        self.refusal: ApiError | None = None
        self._part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._sinks: list[IO[bytes]] = []
        self._writes: list[tuple[IO[bytes], bytes | memoryview]] = []
        self._write_bytes = 0
        self._closes: list[IO[bytes]] = []
        self._parser = _parser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    async def read(self, receive: Receive) -> None:
        """Parse the whole body; file bytes reach disk as it goes. Raises on a broken or cut body."""
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            received += len(chunk)
            more = message.get("more_body", False)
            try:
                self._parser.write(chunk)
            except FormParserError as error:
                raise BadRequestProblem(detail=f"Invalid multipart/form-data body: {error}") from None
            if self._write_bytes >= WRITE_BATCH_BYTES or self._closes or not more:
                await asyncio.to_thread(self._write)
        if received and not self.ended:
            raise BadRequestProblem(detail="Invalid multipart/form-data body: it ends before its closing boundary")
        if self.refusal is not None:
            raise self.refusal

    def discard(self) -> None:
        """Close and remove every spool file this body made."""
        for sink in self._sinks:
            sink.close()
        for spooled in self.spooled:
            spooled.discard()

    def _write(self) -> None:
        """Write the gathered file bytes and close the finished files (on a thread: disk time is not the loop's)."""
        try:
            for sink, data in self._writes:
                sink.write(data)
            for sink in self._closes:
                sink.close()
        except OSError as error:
            if error.errno not in NO_ROOM:
                raise
            self._refuse(NoRoomForFile())
        self._writes, self._write_bytes, self._closes = [], 0, []

    def _refuse(self, reason: ApiError) -> None:
        """Refuse the upload's file (the first reason stands) and give its disk space back at once."""
        self.refusal = self.refusal or reason
        self._writes, self._write_bytes = [], 0  # bytes gathered for the files being removed
        self.discard()

    def _on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise BadRequestProblem(detail=f"Invalid multipart/form-data body: more than {MAX_PARTS} parts")
        self._part = _Part()
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def _on_headers_finished(self) -> None:
        _disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise BadRequestProblem(detail='Invalid multipart/form-data body: a part has no Content-Disposition "name"')
        self._part.name = options[b"name"].decode("utf-8", "replace")
        self._part.is_file = self._part.name in self.file_fields
        if not self._part.is_file or self.refusal is not None:
            return
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        content_type = self._headers[b"content-type"].decode("latin-1") if b"content-type" in self._headers else None
        try:
            sink = tempfile.NamedTemporaryFile(dir=self.spool_directory, prefix=spool_prefix(), delete=False)  # noqa: SIM115
        except OSError as error:
            if error.errno not in NO_ROOM:
                raise
            self._refuse(NoRoomForFile())
            return
        self._sinks.append(sink)
        self._part.sink = sink
        self._part.spooled = SpooledFile(Path(sink.name), filename, content_type)
        self.spooled.append(self._part.spooled)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if not part.is_file:
            if len(part.text) + end - start > MAX_TEXT_PART_BYTES:
                raise BadRequestProblem(detail=f"{part.name}: Part exceeds the maximum size of 64 KiB")
            part.text += data[start:end]
            return
        part.size += end - start
        if part.size > self.max_file_bytes:
            self._refuse(FileTooLarge(self.max_file_bytes))
        elif self.refusal is None and part.sink is not None:
            # A view of the chunk as it came (never changed); a copy of the parser's own look-behind buffer (reused).
            piece = memoryview(data)[start:end] if isinstance(data, bytes) else bytes(data[start:end])
            self._writes.append((part.sink, piece))
            self._write_bytes += end - start

    def _on_part_end(self) -> None:
        part = self._part
        if not part.is_file:
            self.fields.append((part.name, part.text.decode("utf-8", "replace")))
            return
        if part.sink is not None:
            self._closes.append(part.sink)
        if part.spooled is not None:
            part.spooled.size = part.size
            self.fields.append((part.name, part.spooled))

    def _on_end(self) -> None:
        self.ended = True


def upload_routes(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (method, path) of every operation of the spec whose body is multipart/form-data, and only that."""
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict)
        and list(operation.get("requestBody", {}).get("content", {})) == ["multipart/form-data"]
    ]


def _is_file(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and schema.get("format") in ("binary", "base64")


def _stand_in(value: Any) -> Any:
    """What the schema checks for a value: a file stands in as an empty string (`type: string` holds for it)."""
    if isinstance(value, list):
        return [_stand_in(item) for item in value]
    return "" if isinstance(value, SpooledFile) else value


def _typed(text: str, schema: dict[str, Any]) -> Any:
    """A text part as the schema's type: an integer from its digits; anything else stays text (and may fail)."""
    if schema.get("type") == "integer" and INTEGER.fullmatch(text):
        return int(text)
    return text


def _parser(boundary: bytes, callbacks: dict[str, Any]) -> MultipartParser:
    """python-multipart's parser; a boundary it will not take (over 256 bytes) is the client's error, a 400."""
    try:
        return MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    except FormParserError as error:
        raise BadRequestProblem(detail=f"Invalid multipart/form-data body: {error}") from None


def _boundary(scope: Scope) -> bytes:
    content_type = next((value for name, value in scope["headers"] if name.lower() == b"content-type"), b"")
    _kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequestProblem(detail="Invalid multipart/form-data body: the Content-Type names no boundary")
    return bytes(boundary)
