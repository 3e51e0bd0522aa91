"""The Files API's files: their bytes on disk, one file per id in a directory; their metadata in the state store.

Every gunicorn worker serves every file: the directory and the state store
(backends/state.py) are shared. An upload arrives as a spooled file inside the
directory (`spool_directory`, written as the body streams in), and `add` moves
it into place with one rename, so a file is either wholly there or not at
all; its metadata is recorded after the rename, and a file whose metadata
could not be recorded is removed again. Deleting forgets the metadata first:
from then on every worker answers 404, and the bytes go after.

A file is never named on disk by anything the client sent: the path is the id
this module made, looked up only once the id is known.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import socket
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from backends.files import naming
from backends.state import FileRow, StateStore
from backends.wire import JSON, ApiError, new_id

#: The page cursor's prefix, as the API's (`page_…`).
CURSOR_PREFIX = "page_"
#: The largest file number (a SQLite rowid): a cursor past it was not made here.
MAX_FILE_NUMBER = 2**63 - 1
#: A spooled upload nobody has touched for this long was abandoned, whoever made it (another host's, say).
ABANDONED_SPOOL_SECONDS = 3600.0


def default_files_dir(state_file: Path) -> Path:
    """Where files live when no directory is configured: beside the state file, named after it (state-files/)."""
    return state_file.with_name(f"{state_file.stem}-files")


def shared_files_dir(shared_by: str) -> Path:
    """Where files live when the state is in Redis and no directory is configured: a directory in the temporary
    directory named after what the servers that use it share (their Redis and key prefix), so that servers on one
    machine share it. Servers on several machines share files through UNDERSTUDY_FILES_DIR on a shared mount."""
    digest = hashlib.sha256(shared_by.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"understudy-files-{digest}"


class FileStore:
    """Files in `directory`, metadata in `state`; `clock` gives the time (Unix seconds).

    A `temporary` store's directory is one process's own (beside its own state file): closing the
    store, or its being garbage-collected, or the process exiting, removes it, in that process only.
    """

    def __init__(
        self,
        directory: Path,
        state: StateStore,
        *,
        temporary: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.spool_directory = self.directory / "incoming"
        self.spool_directory.mkdir(parents=True, exist_ok=True)
        self.state = state
        self.clock = clock
        self._finalizer = weakref.finalize(self, _remove, self.directory if temporary else None, os.getpid())
        self._remove_abandoned_spools()

    def close(self) -> None:
        """Let go of the store (and remove a temporary store's directory); the state store is closed by its owner."""
        self._finalizer()

    def add(
        self,
        spooled: Path,
        *,
        filename: str | None,
        declared_type: str | None,
        expires_in_seconds: int | None = None,
        downloadable: bool = False,
    ) -> JSON:
        """Take the file at `spooled` (inside `spool_directory`) as a new file; its FileMetadata.

        `downloadable` is for files made on the API's side (by a tool); uploads are never downloadable.
        """
        with spooled.open("rb") as file:
            head = file.read(naming.SNIFF_BYTES)
        mime = naming.mime_type(declared_type, filename, head)
        now = self.clock()
        metadata: JSON = {
            "id": new_id("file"),
            "type": "file",
            "filename": naming.filename(filename, mime),
            "mime_type": mime,
            "size_bytes": spooled.stat().st_size,
            "created_at": rfc3339(now),
            "downloadable": downloadable,
            "expires_at": None if expires_in_seconds is None else rfc3339(now + expires_in_seconds),
            "scope": None,
        }
        path = self._path(metadata["id"])
        os.replace(spooled, path)
        try:
            self.state.add_file(metadata)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return metadata

    def get(self, file_id: str) -> JSON:
        """The file's metadata; a 404 when there is no such file."""
        return self._row(file_id)[1]

    def page(
        self,
        *,
        limit: int = 20,
        page: str | None = None,
        after_id: str | None = None,
        before_id: str | None = None,
        ids: Sequence[str] | None = None,
        scope_id: str | None = None,
    ) -> JSON:
        """One page of files, newest first, as a FileListResponse (both paging styles' fields).

        `ids` picks files (unknown ones left out); else the page starts after a cursor (`page`, the 2.x
        SDKs'), or after or before a file (`after_id`, `before_id`, the 0.x SDKs'; an unknown id is a 400).
        """
        if ids:
            return _page([metadata for _, metadata in self.state.files_by_id(list(dict.fromkeys(ids)))], None)
        if scope_id is not None:
            return _page([], None)  # every file here was uploaded, and an upload belongs to no scope
        if before_id is not None:
            rows = self.state.files(above=self._row(before_id, "before_id")[0], limit=limit + 1)
            return _page([metadata for _, metadata in rows[-limit:]], rows[-1][0] if rows else None, len(rows) > limit)
        below = self._row(after_id, "after_id")[0] if after_id is not None else _cursor_number(page)
        rows = self.state.files(below=below, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return _page([metadata for _, metadata in rows], rows[-1][0] if more else None, more)

    def delete(self, file_id: str) -> JSON:
        """Forget the file and remove its bytes; a 404 when there is no such file."""
        if not self.state.delete_file(file_id):
            raise not_found(file_id)
        self._path(file_id).unlink(missing_ok=True)
        return {"id": file_id, "type": "file_deleted"}

    def download(self, file_id: str) -> tuple[JSON, BinaryIO]:
        """The file's metadata and its bytes, open for reading; a 400 for a file that cannot be downloaded."""
        metadata = self.usable(file_id)
        if not metadata["downloadable"]:
            raise ApiError(
                400,
                f"File {file_id} cannot be downloaded: only files created by a tool, such as the code execution "
                "tool, can be downloaded",
                error_code="file_not_downloadable",
            )
        return metadata, self.open(file_id)

    def usable(self, file_id: str) -> JSON:
        """The metadata of a file whose bytes are still available; a 404 when it is unknown or has expired."""
        metadata = self.get(file_id)
        expires_at = metadata["expires_at"]
        if expires_at is not None and datetime.fromisoformat(expires_at).timestamp() <= self.clock():
            raise ApiError(
                404, f"File {file_id} has expired; its content is no longer available", error_code="file_expired"
            )
        return metadata

    def open(self, file_id: str) -> BinaryIO:
        """The file's bytes, open for reading (still readable should the file be deleted meanwhile)."""
        self.get(file_id)
        try:
            return self._path(file_id).open("rb")
        except FileNotFoundError:
            raise not_found(file_id) from None  # deleted between the lookup and the open

    def _row(self, file_id: str, parameter: str | None = None) -> FileRow:
        row = self.state.file(file_id)
        if row is None:
            if parameter is not None:
                raise ApiError(400, f"{parameter}: no file with id '{file_id}'")
            raise not_found(file_id)
        return row

    def _path(self, file_id: str) -> Path:
        return self.directory / file_id

    def _remove_abandoned_spools(self) -> None:
        """Remove the spool files of uploads that will never finish: made on this host by a process that is gone
        (a worker killed mid-upload; its replacement, starting, finds them), or untouched for an hour."""
        cutoff = self.clock() - ABANDONED_SPOOL_SECONDS
        for spooled in self.spool_directory.iterdir():
            try:
                if _maker_is_gone(spooled.name) or spooled.stat().st_mtime < cutoff:
                    spooled.unlink()
            except FileNotFoundError:
                pass  # another worker starting removed it first


def spool_prefix() -> str:
    """How the name of a spool file this process makes begins: `upload-<pid>@<host>-`, so that a worker starting
    later can tell an upload whose process died (names end in tempfile's letters, digits and `_`)."""
    return f"upload-{os.getpid()}@{socket.gethostname()}-"


def _maker_is_gone(name: str) -> bool:
    """Whether the spool file named `name` was made on this host by a process that no longer runs."""
    maker, _, _random = name.removeprefix("upload-").rpartition("-")
    pid, _, host = maker.partition("@")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False  # another user's process runs under that number; a number past any pid was no maker's
    return False


def _remove(directory: Path | None, made_in: int) -> None:
    """Remove a temporary store's directory, in the process that made it (a forked one leaves it to it)."""
    if directory is not None and os.getpid() == made_in:
        shutil.rmtree(directory, ignore_errors=True)


def not_found(file_id: str) -> ApiError:
    """The 404 for a file id that names no file (as the Files guide words it)."""
    return ApiError(404, f"File not found: {file_id}")


def rfc3339(moment: float) -> str:
    """A Unix time as the API writes times: RFC 3339 in UTC, with microseconds and `Z`."""
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _page(data: list[JSON], next_number: int | None, has_more: bool = False) -> JSON:
    """A FileListResponse: the 2.x SDKs page on `next_page`, the 0.x SDKs on `has_more` and `last_id`."""
    return {
        "data": data,
        "next_page": None if next_number is None else _cursor(next_number),
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def _cursor(number: int) -> str:
    """The opaque cursor of the page after the file numbered `number`: the files older than it."""
    return CURSOR_PREFIX + base64.urlsafe_b64encode(str(number).encode()).decode().rstrip("=")


def _cursor_number(page: str | None) -> int | None:
    """The file number a cursor names; None (the first page) for no cursor or one not made here.

    Lenient, as the SDK's own tests send the placeholder cursor `page`; a number no file can have (negative, or
    past SQLite's rowids) is no cursor of ours either.
    """
    if not page or not page.startswith(CURSOR_PREFIX):
        return None
    encoded = page[len(CURSOR_PREFIX) :]
    try:
        number = int(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return number if 0 <= number <= MAX_FILE_NUMBER else None
