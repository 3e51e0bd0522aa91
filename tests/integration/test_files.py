"""The Files API against a real server with two workers, driven by the official SDK and by raw sockets.

A file uploaded through one worker is seen by the other (the directory and
the state store are shared); a message names it; it is deleted. Bad uploads —
over the limit, broken, cut off mid-body, without a file part — each get the
API's 4xx, never a 500, leave no spooled upload behind, and lose nothing
already stored.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from app.launcher.server_process import ServerProcess

from builders import API_KEY, ended

ADMIN_KEY = "files-admin-key"
#: Small, so that a test can pass it; the route's body limit is this plus 1 MiB.
MAX_FILE_BYTES = 2 * 2**20
MODEL = "claude-sonnet-4-5"


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


@pytest.fixture(scope="module")
def server(files_dir: Path) -> Iterator[ServerProcess]:
    env = {
        "UNDERSTUDY_API_KEYS": API_KEY,
        "UNDERSTUDY_VALIDATE_RESPONSES": "true",
        "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY,
        "UNDERSTUDY_JOURNAL": "true",  # how a test learns that the server has answered a client already gone
        "UNDERSTUDY_FILES_DIR": str(files_dir),
        "UNDERSTUDY_MAX_FILE_BYTES": str(MAX_FILE_BYTES),
    }
    with ServerProcess(env, workers=2) as running:
        yield running
    assert "Traceback" not in running.output, running.output


@pytest.fixture
def sdk(server: ServerProcess, files_dir: Path) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=30) as client:
        yield client
    assert spooled(files_dir) == [], "a request left a spooled upload behind"


def spooled(files_dir: Path) -> list[str]:
    """The uploads being written now; none once every request is answered (deletion is immediate on failure)."""
    return sorted(path.name for path in (files_dir / "incoming").iterdir())


def ask(sdk: anthropic.Anthropic, *blocks: dict) -> anthropic.types.Message:
    return sdk.messages.create(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": list(blocks)}])


def document(file_id: str) -> dict:
    return {"type": "document", "source": {"type": "file", "file_id": file_id}}


# ------------------------------------------------------------------------------------------------ the SDK


def test_upload_use_in_a_message_then_delete(sdk):
    uploaded = sdk.files.upload(file=("notes.txt", b"The meeting is at noon.", "text/plain"))
    assert uploaded.id.startswith("file_") and uploaded.type == "file"
    assert (uploaded.filename, uploaded.mime_type, uploaded.size_bytes) == ("notes.txt", "text/plain", 23)
    assert uploaded.downloadable is False and uploaded.expires_at is None

    message = ask(sdk, document(uploaded.id), {"type": "text", "text": "When?"})
    assert message.content[0].text == "[document: The meeting is at noon.]\nWhen?"
    counted = sdk.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": [document(uploaded.id), {"type": "text", "text": "When?"}]}]
    )
    assert message.usage.input_tokens == counted.input_tokens == 12  # [ document : The meeting is at noon . ] When ?

    deleted = sdk.files.delete(uploaded.id)
    assert (deleted.id, deleted.type) == (uploaded.id, "file_deleted")
    with pytest.raises(anthropic.NotFoundError) as error:
        ask(sdk, document(uploaded.id))
    assert error.value.body["error"]["message"] == f"File not found: {uploaded.id}"


def test_the_beta_namespace_and_the_0x_query(sdk):
    betas = ["files-api-2025-04-14"]
    uploaded = sdk.beta.files.upload(file=("pixel.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "image/png"), betas=betas)
    assert uploaded.scope is None and uploaded.mime_type == "image/png"
    again = sdk.beta.files.retrieve_metadata(uploaded.id, betas=betas, extra_query={"beta": "true"})
    assert again == uploaded
    image = {"type": "image", "source": {"type": "file", "file_id": uploaded.id}}
    reply = sdk.beta.messages.create(
        model=MODEL,
        max_tokens=50,
        betas=betas,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "Describe"}]}],
    )
    assert reply.content[0].text == "[image]\nDescribe"
    sdk.beta.files.delete(uploaded.id, betas=betas)


def test_bare_bytes_and_a_path_as_the_sdk_sends_them(sdk, tmp_path):
    bare = sdk.files.upload(file=b"Example data", expires_in_seconds=3600)
    assert (bare.filename, bare.mime_type) == ("unnamed", "application/octet-stream")
    assert bare.expires_at is not None and 3599 <= (bare.expires_at - bare.created_at).total_seconds() <= 3600
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.7\n...")
    from_path = sdk.files.upload(file=report)
    assert (from_path.filename, from_path.mime_type, from_path.size_bytes) == ("report.pdf", "application/pdf", 12)
    for file_id in (bare.id, from_path.id):
        sdk.files.delete(file_id)


def test_paging_newest_first_by_cursor_and_by_id(sdk, server):
    tag = uuid.uuid4().hex[:8]
    ids = [sdk.files.upload(file=(f"{tag}-{n}.txt", b"x", "text/plain")).id for n in range(5)][::-1]
    try:
        paged = [item.id for item in sdk.files.list(limit=2) if item.filename.startswith(tag)]
        assert paged == ids  # the SDK followed next_page to the last page, whose next_page is null
        first = sdk.files.list(limit=2)
        assert first.next_page is not None and [item.id for item in first.data] == ids[:2]
        picked = sdk.files.list(ids=[ids[3], ids[1], "file_nope"])
        assert [item.id for item in picked.data] == [ids[1], ids[3]] and picked.next_page is None
        older = get_json(server, f"/v1/files?limit=2&after_id={ids[1]}&beta=true")  # as the 0.x SDKs page
        assert [item["id"] for item in older["data"]] == ids[2:4] and older["has_more"] is True
        assert older["first_id"] == ids[2] and older["last_id"] == ids[3]
    finally:
        for file_id in ids:
            sdk.files.delete(file_id)


def test_every_worker_sees_every_file(sdk, server):
    uploaded = sdk.files.upload(file=("shared.txt", b"shared", "text/plain"))
    # Fresh connections, so that both workers answer some of these.
    for _ in range(12):
        assert get_json(server, f"/v1/files/{uploaded.id}")["id"] == uploaded.id
    sdk.files.delete(uploaded.id)
    for _ in range(6):
        assert get_json(server, f"/v1/files/{uploaded.id}", status=404)["error"]["type"] == "not_found_error"


def test_uploads_cannot_be_downloaded_and_a_tools_file_can(sdk, server):
    uploaded = sdk.files.upload(file=("a.txt", b"mine", "text/plain"))
    with pytest.raises(anthropic.BadRequestError) as error:
        sdk.files.download(uploaded.id)
    assert error.value.error_code == "file_not_downloadable"
    made = admin_upload(server, "chart.csv", b"x,y\n1,2\n")
    assert made["downloadable"] is True
    content = sdk.files.download(made["id"])
    assert content.read() == b"x,y\n1,2\n" and content.headers["content-type"] == "text/csv"
    for file_id in (uploaded.id, made["id"]):
        sdk.files.delete(file_id)


@pytest.mark.parametrize("call", ["retrieve_metadata", "delete", "download"])
def test_an_unknown_file_id_is_a_404(sdk, call):
    with pytest.raises(anthropic.NotFoundError) as error:
        getattr(sdk.files, call)("file_011CNha8iCJcU1wXNR6q4V8w")
    assert error.value.body["error"]["message"] == "File not found: file_011CNha8iCJcU1wXNR6q4V8w"


def test_a_file_of_the_wrong_type_for_its_block_is_a_400(sdk):
    uploaded = sdk.files.upload(file=("a.txt", b"text", "text/plain"))
    with pytest.raises(anthropic.BadRequestError) as error:
        ask(sdk, {"type": "image", "source": {"type": "file", "file_id": uploaded.id}})
    assert error.value.body["error"]["message"].startswith(f"Invalid file type: file {uploaded.id} is text/plain")
    sdk.files.delete(uploaded.id)


def test_a_batch_request_names_files_as_a_message_does(sdk):
    # Each request of a batch is answered as POST /v1/messages would answer it: its text file quoted, an unknown
    # file an errored result (the real API checks a batch's params as it answers them, not when it is created).
    uploaded = sdk.files.upload(file=("notes.txt", b"Batch me.", "text/plain"))
    requests = [
        {
            "custom_id": named,
            "params": {
                "model": MODEL,
                "max_tokens": 100,
                "messages": [{"role": "user", "content": [document(file_id), {"type": "text", "text": "Go"}]}],
            },
        }
        for named, file_id in (("known", uploaded.id), ("unknown", "file_nope"))
    ]
    batch = ended(sdk, sdk.messages.batches.create(requests=requests).id)
    results = {line.custom_id: line.result for line in sdk.messages.batches.results(batch.id)}
    assert (
        results["known"].type == "succeeded" and results["known"].message.content[0].text == "[document: Batch me.]\nGo"
    )
    assert results["unknown"].type == "errored"
    assert results["unknown"].error.error.type == "not_found_error"
    assert results["unknown"].error.error.message == "File not found: file_nope"
    sdk.files.delete(uploaded.id)


# ------------------------------------------------------------------------------------------------ bad input


def test_a_file_over_the_limit_is_a_413_the_client_reads(sdk):
    kept = sdk.files.upload(file=("kept.txt", b"already here", "text/plain"))
    with pytest.raises(anthropic.APIStatusError) as error:
        sdk.files.upload(file=("big.bin", b"x" * (MAX_FILE_BYTES + 1), "application/octet-stream"))
    assert error.value.status_code == 413
    assert error.value.body["error"] == {"type": "request_too_large", "message": "File exceeds the 2 MB limit"}
    assert sdk.files.retrieve_metadata(kept.id).size_bytes == 12  # nothing already accepted is lost
    sdk.files.delete(kept.id)


def test_a_declared_length_over_the_route_limit_is_refused_before_the_body_is_sent(server):
    limit = MAX_FILE_BYTES + 2**20
    answer = raw(server, upload_head(limit + 1), read_timeout=10)
    assert answer["status"] == 413 and answer["connection"] == "close"
    assert answer["body"]["error"]["message"] == f"Request exceeds the maximum allowed size of {limit} bytes"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nno end',
            "Invalid multipart/form-data body: it ends before its closing boundary",
        ),
        (b'--xyz\r\nContent-Disposition: form-data; name="other"\r\n\r\n1\r\n--xyz--\r\n', "file: Field required"),
        (b"\x00\xff garbage", "Invalid multipart/form-data body: Expected boundary character 45, got 0 at index 2"),
    ],
)
def test_a_broken_or_fileless_multipart_body_is_a_400(server, files_dir, body, message):
    answer = raw(server, upload_head(len(body)) + body)
    assert (answer["status"], answer["body"]["error"]["message"]) == (400, message)
    assert answer["body"]["error"]["type"] == "invalid_request_error"
    assert spooled(files_dir) == []


def test_a_client_that_stops_mid_upload_leaves_nothing_behind(sdk, server, files_dir):
    kept = sdk.files.upload(file=("kept.txt", b"already here", "text/plain"))
    head = upload_part_head("cut.bin")
    refused_before = len(journaled(server, "path=/v1/files&status=400"))
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(upload_head(len(head) + 1_000_000) + head + b"y" * 300_000)  # then the client is gone
    # Each cut upload is answered (a 400 nobody hears, journaled) only once its spool is removed: wait for the five
    # answers, not for a moment the spool directory happens to be empty (a later upload's spool may not exist yet).
    deadline = time.monotonic() + 60  # a hang guard, not a timing check
    while len(journaled(server, "path=/v1/files&status=400")) < refused_before + 5:
        assert time.monotonic() < deadline, "the server did not answer the five cut uploads"
        time.sleep(0.05)
    assert spooled(files_dir) == []
    assert [item.id for item in sdk.files.list(ids=[kept.id]).data] == [kept.id]
    assert sdk.files.upload(file=("after.txt", b"fine", "text/plain")).size_bytes == 4  # the workers serve on
    sdk.files.delete(kept.id)


def test_a_chunked_upload_is_streamed(sdk, server):
    body = upload_part_head("chunked.txt") + b"z" * 1_500_000 + b"\r\n--xyz--\r\n"
    head = upload_head(None)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in split(body, 65536)) + b"0\r\n\r\n"
    answer = raw(server, head + chunks)
    assert answer["status"] == 200, answer
    assert (answer["body"]["filename"], answer["body"]["size_bytes"]) == ("chunked.txt", 1_500_000)
    sdk.files.delete(answer["body"]["id"])


# ------------------------------------------------------------------------------------------------ helpers


def get_json(server: ServerProcess, path: str, status: int = 200, key: dict | None = None) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        connection.request("GET", path, headers={**(key or {"x-api-key": API_KEY}), "anthropic-version": "2023-06-01"})
        response = connection.getresponse()
        assert response.status == status
        return json.loads(response.read())
    finally:
        connection.close()


def journaled(server: ServerProcess, filters: str) -> list[dict]:
    """The journal's entries that match `filters` (a query string; the test's requests are far fewer than 1,000)."""
    page = get_json(server, f"/_understudy/requests?limit=1000&{filters}", key={"x-understudy-admin-key": ADMIN_KEY})
    return list(page["data"])


def admin_upload(server: ServerProcess, filename: str, data: bytes) -> dict:
    body = upload_part_head(filename, "text/csv") + data + b"\r\n--xyz--\r\n"
    head = upload_head(len(body), path="/_understudy/files", key_header=f"x-understudy-admin-key: {ADMIN_KEY}")
    answer = raw(server, head + body)
    assert answer["status"] == 200, answer
    return answer["body"]


def upload_head(length: int | None, *, path: str = "/v1/files", key_header: str = f"x-api-key: {API_KEY}") -> bytes:
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "content-type: multipart/form-data; boundary=xyz",
        key_header,
        "anthropic-version: 2023-06-01",
        framing,
        "connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def upload_part_head(filename: str, content_type: str = "application/octet-stream") -> bytes:
    return (
        f'--xyz\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def split(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def raw(server: ServerProcess, data: bytes, *, read_timeout: float = 20) -> dict:
    """Send bytes as they are; the one response's status, connection header and JSON body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=read_timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return {
            "status": response.status,
            "connection": response.getheader("connection"),
            "body": json.loads(response.read()),
        }


# ------------------------------------------------------------------------------------------------ the proxy


def test_the_proxy_keeps_files_itself_and_forwards_a_text_document_inline(tmp_path):
    upstream_env = {
        "UNDERSTUDY_API_KEYS": "upstream-key",
        "UNDERSTUDY_JOURNAL": "true",
        "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY,
    }
    with ServerProcess(upstream_env) as upstream:
        gateway_env = {
            "UNDERSTUDY_BACKEND": "proxy",
            "UNDERSTUDY_UPSTREAM_URL": upstream.base_url,
            "UNDERSTUDY_UPSTREAM_API_KEY": "upstream-key",
            "UNDERSTUDY_API_KEYS": API_KEY,
            "UNDERSTUDY_FILES_DIR": str(tmp_path / "gateway-files"),
        }
        with (
            ServerProcess(gateway_env) as gateway,
            anthropic.Anthropic(base_url=gateway.base_url, api_key=API_KEY, max_retries=0, timeout=30) as sdk,
        ):
            uploaded = sdk.files.upload(file=("brief.txt", b"Keep it short.", "text/plain"))
            assert ask(sdk, document(uploaded.id)).content[0].text == "[document: Keep it short.]"
        admin = {"x-understudy-admin-key": ADMIN_KEY}
        with anthropic.Anthropic(base_url=upstream.base_url, api_key="unused") as client:
            page = client.get("/_understudy/requests?path=/v1/messages", cast_to=object, options={"headers": admin})
    (forwarded,) = [block for entry in page["data"] for block in entry["body"]["messages"][0]["content"]]
    assert forwarded["source"] == {"type": "text", "media_type": "text/plain", "data": "Keep it short."}


# ------------------------------------------------------------------------------------------------ a full disk


def test_a_disk_with_no_room_for_the_file_is_a_503_and_keeps_nothing(small_disk):
    env = {"UNDERSTUDY_API_KEYS": API_KEY, "UNDERSTUDY_FILES_DIR": str(small_disk / "files")}
    with (
        ServerProcess(env) as server,
        anthropic.Anthropic(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=30) as sdk,
    ):
        kept = sdk.files.upload(file=("kept.txt", b"already here", "text/plain"))
        body = upload_part_head("big.bin") + b"b" * 3 * 2**20 + b"\r\n--xyz--\r\n"  # the disk holds 2 MB
        answer = raw(server, upload_head(len(body)) + body)
        assert answer["status"] == 503 and answer["body"]["error"]["type"] == "api_error"
        assert answer["body"]["error"]["message"].startswith("There is no room on disk for the file")
        assert spooled(small_disk / "files") == []
        assert [item.id for item in sdk.files.list().data] == [kept.id]
        assert sdk.files.upload(file=("small.txt", b"fits", "text/plain")).size_bytes == 4  # room again: it serves
    assert "Traceback" not in server.output, server.output
