"""The file store, the Files API's naming rules and the resolution of files named in messages (backends/files/)."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys

import pytest

from backends.files import FileStore, default_files_dir, resolve_file_sources, spool_prefix
from backends.files.naming import filename, mime_type
from backends.files.store import ABANDONED_SPOOL_SECONDS
from backends.wire import ApiError

from builders import state_store


@pytest.fixture
def files(tmp_path, clock) -> FileStore:
    return FileStore(tmp_path / "files", state_store(tmp_path / "state.sqlite3"), clock=clock)


def add(files: FileStore, data: bytes = b"hello", name: str | None = "a.txt", kind: str | None = "text/plain", **how):
    spooled = files.spool_directory / f"spool-{len(list(files.spool_directory.iterdir()))}"
    spooled.write_bytes(data)
    return files.add(spooled, filename=name, declared_type=kind, **how)


def test_an_added_file_is_moved_into_place_and_described(files):
    metadata = add(files, b"hello world", expires_in_seconds=3600)
    assert metadata["id"].startswith("file_") and metadata["type"] == "file"
    assert (metadata["filename"], metadata["mime_type"], metadata["size_bytes"]) == ("a.txt", "text/plain", 11)
    assert metadata["created_at"] == "2027-01-15T08:00:00.000000Z"
    assert metadata["expires_at"] == "2027-01-15T09:00:00.000000Z"
    assert metadata["downloadable"] is False and metadata["scope"] is None
    assert list(files.spool_directory.iterdir()) == []
    assert files.get(metadata["id"]) == metadata
    with files.open(metadata["id"]) as content:
        assert content.read() == b"hello world"


def test_a_second_store_on_the_same_directory_and_state_sees_the_file(files, tmp_path):
    metadata = add(files)
    other_worker = FileStore(tmp_path / "files", state_store(tmp_path / "state.sqlite3"))
    assert other_worker.get(metadata["id"]) == metadata


def test_delete_forgets_the_file_and_its_bytes(files):
    file_id = add(files)["id"]
    assert files.delete(file_id) == {"id": file_id, "type": "file_deleted"}
    assert not (files.directory / file_id).exists()
    for call in (files.get, files.delete, files.open):
        with pytest.raises(ApiError) as error:
            call(file_id)
        assert (error.value.status, error.value.message) == (404, f"File not found: {file_id}")


def test_uploads_are_not_downloadable_and_tool_files_are(files):
    upload = add(files)["id"]
    with pytest.raises(ApiError) as error:
        files.download(upload)
    assert (error.value.status, error.value.error_code) == (400, "file_not_downloadable")
    made = add(files, b"a,b\n", "out.csv", "text/csv", downloadable=True)["id"]
    metadata, content = files.download(made)
    with content:
        assert content.read() == b"a,b\n" and metadata["downloadable"] is True


def test_an_expired_file_is_listed_but_its_bytes_are_gone(files, clock):
    file_id = add(files, downloadable=True, expires_in_seconds=3600)["id"]
    clock.now += 3600
    assert files.get(file_id)["id"] == file_id
    for call in (files.download, files.usable):
        with pytest.raises(ApiError) as error:
            call(file_id)
        assert (error.value.status, error.value.error_code) == (404, "file_expired")


def test_cursor_pages_are_newest_first_and_end_with_null(files):
    ids = [add(files, name=f"{n}.txt")["id"] for n in range(5)]
    seen, page = [], None
    while True:
        listed = files.page(limit=2, page=page)
        seen += [item["id"] for item in listed["data"]]
        page = listed["next_page"]
        assert listed["has_more"] == (page is not None)
        if page is None:
            break
        assert page.startswith("page_")
    assert seen == ids[::-1]


def test_cursors_survive_the_deletion_of_the_file_they_follow(files):
    ids = [add(files)["id"] for _ in range(4)]
    first = files.page(limit=2)
    files.delete(first["last_id"])
    assert [item["id"] for item in files.page(limit=2, page=first["next_page"])["data"]] == [ids[1], ids[0]]


def test_id_pages_as_the_0x_sdks_read_them(files):
    ids = [add(files)["id"] for _ in range(5)][::-1]  # newest first
    older = files.page(limit=2, after_id=ids[1])
    assert ([item["id"] for item in older["data"]], older["has_more"]) == (ids[2:4], True)
    assert (older["first_id"], older["last_id"]) == (ids[2], ids[3])
    newer = files.page(limit=2, before_id=ids[4])
    assert ([item["id"] for item in newer["data"]], newer["has_more"]) == (ids[2:4], True)
    newest = files.page(limit=2, before_id=ids[2])
    assert ([item["id"] for item in newest["data"]], newest["has_more"]) == (ids[0:2], False)
    with pytest.raises(ApiError, match="after_id: no file with id 'file_nope'"):
        files.page(after_id="file_nope")


def test_ids_pick_existing_files_in_one_page_and_scopes_hold_no_uploads(files):
    kept, gone = add(files)["id"], add(files)["id"]
    files.delete(gone)
    listed = files.page(ids=[kept, gone, "file_nope", kept], limit=1, page="page")
    assert ([item["id"] for item in listed["data"]], listed["next_page"], listed["has_more"]) == ([kept], None, False)
    assert files.page(scope_id="sesn_1")["data"] == []


def test_a_cursor_not_made_here_is_the_first_page(files):
    file_id = add(files)["id"]
    for cursor in ("page", "page_!!!", "page_bm90IGEgbnVtYmVy"):
        assert files.page(page=cursor)["first_id"] == file_id


def test_a_spool_abandoned_long_ago_is_removed_when_a_worker_starts(tmp_path, clock):
    state = state_store(tmp_path / "state.sqlite3")
    files = FileStore(tmp_path / "files", state, clock=clock)
    abandoned, current = files.spool_directory / "upload-old", files.spool_directory / "upload-now"
    abandoned.write_bytes(b"x")
    current.write_bytes(b"y")
    os.utime(abandoned, (clock.now - ABANDONED_SPOOL_SECONDS - 1,) * 2)
    os.utime(current, (clock.now,) * 2)
    FileStore(tmp_path / "files", state, clock=clock)
    assert sorted(path.name for path in files.spool_directory.iterdir()) == ["upload-now"]


def test_the_spool_of_a_worker_killed_mid_upload_is_removed_when_its_replacement_starts(tmp_path, clock):
    state = state_store(tmp_path / "state.sqlite3")
    files = FileStore(tmp_path / "files", state, clock=clock)
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()  # its pid now names no process
    here = socket.gethostname()
    spools = {
        "dead": f"upload-{killed.pid}@{here}-abc123",
        "alive": f"{spool_prefix()}def456",
        "elsewhere": f"upload-{killed.pid}@another-host.example-ghi789",
    }
    for name in spools.values():
        (files.spool_directory / name).write_bytes(b"x")
        os.utime(files.spool_directory / name, (clock.now,) * 2)  # all fresh: only the maker's death tells
    FileStore(tmp_path / "files", state, clock=clock)
    assert sorted(path.name for path in files.spool_directory.iterdir()) == sorted(
        [spools["alive"], spools["elsewhere"]]
    )


def test_a_cursor_past_any_file_number_is_the_first_page(files):
    file_id = add(files)["id"]
    for number in (2**63, 10**40, -5):
        cursor = "page_" + base64.urlsafe_b64encode(str(number).encode()).decode().rstrip("=")
        assert files.page(page=cursor)["first_id"] == file_id


@pytest.mark.parametrize(
    ("declared", "name", "head", "expected"),
    [
        ("text/plain; charset=utf-8", "a.pdf", b"", "text/plain"),
        ("application/octet-stream", "report.pdf", b"", "application/pdf"),
        (None, "notes.txt", b"", "text/plain"),
        (None, None, b"%PDF-1.7\n", "application/pdf"),
        ("application/octet-stream", None, b"\x89PNG\r\n\x1a\n\0\0", "image/png"),
        (None, "photo", b"\xff\xd8\xff\xe0", "image/jpeg"),
        (None, None, b"GIF89a", "image/gif"),
        (None, None, b"RIFF\x10\0\0\0WEBPVP8 ", "image/webp"),
        (None, None, b"Example data", "application/octet-stream"),
    ],
)
def test_mime_type_from_the_part_then_the_name_then_the_bytes(declared, name, head, expected):
    assert mime_type(declared, name, head) == expected


@pytest.mark.parametrize(
    ("given", "mime", "expected"),
    [
        ("a.txt", "text/plain", "a.txt"),
        ("/home/me/docs/report.pdf", "application/pdf", "report.pdf"),
        ("C:\\Users\\me\\report.pdf", "application/pdf", "report.pdf"),
        ("../../etc/passwd", "text/plain", "passwd"),
        (None, "application/pdf", "unnamed.pdf"),
        ("", "image/jpeg", "unnamed.jpg"),
        ("dir/", "text/plain", "unnamed.txt"),
        (None, "application/octet-stream", "unnamed"),
        ("héllo wörld.txt", "text/plain", "héllo wörld.txt"),
    ],
)
def test_filenames_keep_their_last_component(given, mime, expected):
    assert filename(given, mime) == expected


@pytest.mark.parametrize("given", ["a<b.txt", 'say"hi".txt', "tab\there", "a" * 256, "what?.txt", "x:y"])
def test_filenames_the_api_refuses(given):
    with pytest.raises(ApiError) as error:
        filename(given, "text/plain")
    assert error.value.status == 400 and error.value.message.startswith("Invalid filename")


def message_body(*blocks):
    return {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": list(blocks)}]}


def test_a_text_document_is_inlined_and_nothing_else_changes(files):
    text_id = add(files, "Bonjour, ça va?".encode())["id"]
    pdf_id = add(files, b"%PDF-1.7", "a.pdf", None)["id"]
    body = message_body(
        {"type": "document", "source": {"type": "file", "file_id": text_id}, "title": "T"},
        {"type": "document", "source": {"type": "file", "file_id": pdf_id}},
        {"type": "text", "text": "hi"},
    )
    resolved = resolve_file_sources(body, files)
    blocks = resolved["messages"][0]["content"]
    assert blocks[0] == {
        "type": "document",
        "title": "T",
        "source": {"type": "text", "media_type": "text/plain", "data": "Bonjour, ça va?"},
    }
    assert blocks[1] is body["messages"][0]["content"][1] and blocks[2] is body["messages"][0]["content"][2]
    assert body["messages"][0]["content"][0]["source"]["type"] == "file"  # the request itself is left as it came


def test_a_body_naming_no_file_comes_back_as_it_was(files):
    body = message_body({"type": "text", "text": "hi"})
    body["messages"].append({"role": "assistant", "content": "plain"})
    assert resolve_file_sources(body, files) is body


def test_files_in_tool_results_and_container_uploads_are_checked(files):
    image_id = add(files, b"\x89PNG\r\n\x1a\n", "i.png", None)["id"]
    data_id = add(files, b"a,b", "d.csv", "text/csv")["id"]
    body = message_body(
        {
            "type": "tool_result",
            "tool_use_id": "t",
            "content": [{"type": "image", "source": {"type": "file", "file_id": image_id}}],
        },
        {"type": "container_upload", "file_id": data_id},
    )
    assert resolve_file_sources(body, files) is body
    files.delete(image_id)
    with pytest.raises(ApiError, match=f"File not found: {image_id}"):
        resolve_file_sources(body, files)


@pytest.mark.parametrize(
    ("block", "kind"),
    [
        ({"type": "image", "source": {"type": "file", "file_id": "{text}"}}, "text/plain"),
        ({"type": "document", "source": {"type": "file", "file_id": "{image}"}}, "image/png"),
    ],
)
def test_a_file_of_the_wrong_type_for_its_block_is_a_400(files, block, kind):
    ids = {"text": add(files)["id"], "image": add(files, b"\x89PNG\r\n\x1a\n", "i.png", None)["id"]}
    block["source"]["file_id"] = block["source"]["file_id"].format(**ids)
    with pytest.raises(ApiError) as error:
        resolve_file_sources(message_body(block), files)
    assert error.value.status == 400 and error.value.message.startswith("Invalid file type: file file_")
    assert kind in error.value.message


def test_an_expired_file_named_in_a_message_is_a_404(files, clock):
    file_id = add(files, expires_in_seconds=3600)["id"]
    clock.now += 7200
    with pytest.raises(ApiError) as error:
        resolve_file_sources(message_body({"type": "container_upload", "file_id": file_id}), files)
    assert (error.value.status, error.value.error_code) == (404, "file_expired")


def test_files_live_beside_the_state_file_by_default(tmp_path):
    # Not state.sqlite3.files: a glob of the state file's own files (state.sqlite3*) must not take it in.
    assert default_files_dir(tmp_path / "state.sqlite3") == tmp_path / "state-files"
