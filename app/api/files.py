"""The Files API: POST/GET /v1/files, GET/DELETE /v1/files/{file_id}, GET /v1/files/{file_id}/content.

The stable and the beta SDK namespaces call these same paths; the beta
header and the 0.x SDKs' `?beta=true` are accepted and change nothing. An
upload reaches `upload` already streamed to disk and checked against its
schema (app/spec/multipart.py); the file store (backends/files/) keeps it.

Lists are newest first and page both ways the SDKs do: the 2.x SDKs by
cursor (`page`, answered with `next_page`, null on the last page), the 0.x
SDKs by id (`after_id` / `before_id`, answered with `has_more`, `first_id`
and `last_id`); every answer carries all five fields. `ids[]` picks files
(those that exist), always one page.

Uploads are never downloadable, as in the API, where only files a tool made
(the code execution tool's outputs) are: `POST /_understudy/files`, an admin
route, adds such a file for tests of download code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

from flask import Response, request

from app.api import file_store
from app.api.responses import json_response
from app.http.parsed_body import parsed_body
from app.spec.multipart import SpooledFile
from backends.exchange import Reply

#: How much of a file one chunk of a download carries.
DOWNLOAD_CHUNK_BYTES = 1024 * 1024


def upload() -> Response:
    """Keep the uploaded file; its metadata."""
    return json_response(Reply(_keep_upload(downloadable=False)))


def add_generated() -> Response:
    """Admin: keep the uploaded file as if a tool had made it, so that it can be downloaded."""
    return json_response(Reply(_keep_upload(downloadable=True)))


def list_files(
    limit: int = 20,
    page: str | None = None,
    ids: list[str] | None = None,
    scope_id: str | None = None,
    after_id: str | None = None,
    before_id: str | None = None,
) -> Response:
    """One page of files, newest first (`ids[]` arrives as `ids`: Connexion drops the brackets)."""
    listed = file_store().page(
        limit=limit, page=page, ids=ids, scope_id=scope_id, after_id=after_id, before_id=before_id
    )
    return json_response(Reply(listed))


def retrieve_metadata(file_id: str) -> Response:
    """One file's metadata."""
    return json_response(Reply(file_store().get(file_id)))


def delete(file_id: str) -> Response:
    """Delete a file: its metadata and bytes, for every worker at once."""
    return json_response(Reply(file_store().delete(file_id)))


def download(file_id: str) -> Response:
    """A downloadable file's bytes, streamed as they are read (an upload is a 400 file_not_downloadable)."""
    metadata, content = file_store().download(file_id)
    disposition = f"attachment; filename*=UTF-8''{quote(metadata['filename'], safe='')}"
    return Response(_chunks(content), content_type=metadata["mime_type"], headers={"content-disposition": disposition})


def _keep_upload(*, downloadable: bool) -> dict[str, Any]:
    box = parsed_body(request.environ["asgi.scope"])  # the route takes only a validated form: always there
    form = box.value if box is not None else {}
    spooled: SpooledFile = form["file"]
    try:
        return file_store().add(
            spooled.path,
            filename=spooled.filename,
            declared_type=spooled.content_type,
            expires_in_seconds=form.get("expires_in_seconds"),
            downloadable=downloadable,
        )
    finally:
        spooled.discard()  # nothing, once the store has moved the spool into place


def _chunks(content: BinaryIO) -> Iterator[bytes]:
    with content:
        while chunk := content.read(DOWNLOAD_CHUNK_BYTES):
            yield chunk
