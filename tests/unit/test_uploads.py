"""The Files routes in-process: uploads streamed and checked against the spec, a body limit of their own, messages.

Connexion's test client drives every layer, the body limit and the multipart
validator (app/spec/multipart.py) included; each test's files live in its own
directory, which must hold no spooled upload once a request is answered.
"""

from __future__ import annotations

import asyncio
import base64

import pytest

from app import create_app
from app.http.body_limit import BodyLimitMiddleware, RequestTooLarge
from app.spec.multipart import MAX_PARTS, FileTooLarge, MultipartBodyValidator
from backends.files import FileStore, sources
from backends.files.naming import INVALID_FILENAME, INVALID_TYPE
from backends.wire import ApiError

from builders import HEADERS, message_body

BOUNDARY = "b0undary"
open_file = FileStore.open


#: The module's server: small limits, so that a test can pass them.
MAX_BODY_BYTES = 20_000
MAX_FILE_BYTES = 2 * 2**20


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def app(server_dir):
    return create_app(
        {
            "state_file": str(server_dir / "state.sqlite3"),
            "files_dir": str(server_dir / "files"),
            "validate_responses": True,
            "admin_key": "admin-key",
            "max_body_bytes": MAX_BODY_BYTES,
            "max_file_bytes": MAX_FILE_BYTES,
        }
    )


@pytest.fixture
def files_dir(server_dir):
    return server_dir / "files"


@pytest.fixture
def client(app, files_dir):
    with app.test_client() as test_client:
        yield test_client
        assert list((files_dir / "incoming").iterdir()) == []  # no request left a spooled upload behind
        for listed in test_client.get("/v1/files?limit=1000", headers=HEADERS).json()["data"]:
            test_client.delete(f"/v1/files/{listed['id']}", headers=HEADERS)


def multipart(*parts: tuple[str, str | None, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (name, filename, content type, data) parts."""
    body = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        body += f"Content-Type: {content_type}\r\n".encode() if content_type else b""
        body += b"\r\n" + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def post_multipart(client, body, path="/v1/files", headers=HEADERS):
    return client.post(
        path, content=body, headers={**headers, "content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    )


def upload(client, data=b"hello file", filename="a.txt", content_type="text/plain"):
    response = client.post("/v1/files", headers=HEADERS, files={"file": (filename, data, content_type)})
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response, status, error_type, message):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["type"], error["message"]) == (error_type, message)
    return error


def test_upload_list_get_delete(client):
    metadata = upload(client, b"hello file")
    assert (metadata["filename"], metadata["mime_type"], metadata["size_bytes"]) == ("a.txt", "text/plain", 10)
    assert metadata["downloadable"] is False and metadata["expires_at"] is None
    assert client.get(f"/v1/files/{metadata['id']}", headers=HEADERS).json() == metadata
    listed = client.get("/v1/files?beta=true", headers={**HEADERS, "anthropic-beta": "files-api-2025-04-14"}).json()
    assert listed["data"] == [metadata] and listed["next_page"] is None and listed["has_more"] is False
    deleted = client.delete(f"/v1/files/{metadata['id']}", headers={**HEADERS, "content-type": "application/json"})
    assert deleted.json() == {"id": metadata["id"], "type": "file_deleted"}
    for method in (client.get, client.delete):
        assert_error(
            method(f"/v1/files/{metadata['id']}", headers=HEADERS),
            404,
            "not_found_error",
            f"File not found: {metadata['id']}",
        )


def test_bare_bytes_without_a_filename_are_a_file_named_unnamed(client):
    response = post_multipart(client, multipart(("file", None, "application/octet-stream", b"Example data")))
    assert response.status_code == 200, response.text
    assert (response.json()["filename"], response.json()["mime_type"]) == ("unnamed", "application/octet-stream")
    pdf = post_multipart(client, multipart(("file", None, None, b"%PDF-1.7 ...")))
    assert (pdf.json()["filename"], pdf.json()["mime_type"]) == ("unnamed.pdf", "application/pdf")


def test_expires_in_seconds_is_typed_and_checked_by_the_spec(client):
    ok = post_multipart(client, multipart(("expires_in_seconds", None, None, b"3600"), ("file", "a.txt", None, b"x")))
    assert ok.status_code == 200 and ok.json()["expires_at"] is not None
    for value, message in [
        (b"10", "expires_in_seconds: Input should be greater than or equal to 3600"),
        (b"7776001", "expires_in_seconds: Input should be less than or equal to 7776000"),
        (b"soon", "expires_in_seconds: Input should be a valid integer"),
    ]:
        body = multipart(("file", "a.txt", None, b"x"), ("expires_in_seconds", None, None, value))
        assert_error(post_multipart(client, body), 400, "invalid_request_error", message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (multipart(("expires_in_seconds", None, None, b"3600")), "file: Field required"),
        (b"", "file: Field required"),
        (multipart(("file", "a", None, b"1"), ("file", "b", None, b"2")), "file: Input should be a valid string"),
        (
            b'--b0undary\r\nContent-Disposition: form-data; name="file"\r\n\r\nhalf a fi',
            "Invalid multipart/form-data body: it ends before its closing boundary",
        ),
        (
            b"not multipart at all",
            "Invalid multipart/form-data body: Expected boundary character 45, got 110 at index 2",
        ),
        (
            b"--b0undary\r\nContent-Type: text/plain\r\n\r\nx\r\n--b0undary--\r\n",
            'Invalid multipart/form-data body: a part has no Content-Disposition "name"',
        ),
        (
            multipart(("file", "a", None, b"1"), ("note", None, None, b"n" * 70000)),
            "note: Part exceeds the maximum size of 64 KiB",
        ),
        (
            multipart(*[("file", "a", None, b"1")] * (MAX_PARTS + 1)),
            f"Invalid multipart/form-data body: more than {MAX_PARTS} parts",
        ),
        (
            multipart(("file", "a<b>.txt", None, b"1")),
            INVALID_FILENAME,
        ),
    ],
)
def test_bad_uploads_are_400s_and_leave_nothing_behind(client, files_dir, body, message):
    assert_error(post_multipart(client, body), 400, "invalid_request_error", message)
    assert client.get("/v1/files", headers=HEADERS).json()["data"] == []
    assert sorted(path.name for path in files_dir.iterdir()) == ["incoming"]


LONG_BOUNDARY = "b" * 300


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (
            f"multipart/form-data; boundary={LONG_BOUNDARY}",
            f"--{LONG_BOUNDARY}\r\n".encode(),
            "Invalid multipart/form-data body: Boundary length 300 exceeds maximum of 256",
        ),
        ("application/json", b'{"file": "x"}', "Content-Type must be multipart/form-data"),
        ("text/plain", b"x", "Content-Type must be multipart/form-data"),
    ],
)
def test_a_body_the_upload_parser_cannot_take_is_a_400(client, content_type, body, message):
    response = client.post("/v1/files", content=body, headers={**HEADERS, "content-type": content_type})
    assert_error(response, 400, "invalid_request_error", message)


def test_a_form_integer_too_long_to_convert_is_a_400(client):
    body = multipart(("file", "a.txt", None, b"x"), ("expires_in_seconds", None, None, b"9" * 4301))
    assert_error(
        post_multipart(client, body),
        400,
        "invalid_request_error",
        "expires_in_seconds: Input should be a valid integer",
    )


@pytest.mark.parametrize(
    "content_type",
    ["text/plain\x01", "text/plain, text/html", "text", "a" * 4000 + "/plain", "text/pl ain", "/plain", "text/"],
)
def test_a_part_content_type_that_is_no_mime_type_is_a_400(client, content_type):
    body = multipart(("file", "a.txt", content_type, b"x"))
    assert_error(post_multipart(client, body), 400, "invalid_request_error", INVALID_TYPE)


def test_a_part_content_type_keeps_its_type_and_drops_its_parameters(client):
    body = multipart(("file", "a.txt", "Text/Plain; charset=utf-8", b"x"))
    assert post_multipart(client, body).json()["mime_type"] == "text/plain"


@pytest.mark.parametrize("name", ["a\x7fb.txt", "a\x85b.txt", "a\u2028b.txt", "a\u2029b.txt", "a\x1bb.txt"])
def test_a_filename_with_a_control_character_or_line_break_is_a_400(client, name):
    body = multipart(("file", name, "text/plain", b"x"))
    assert_error(post_multipart(client, body), 400, "invalid_request_error", INVALID_FILENAME)


def test_a_page_cursor_past_any_file_number_is_the_first_page(client):
    file_id = upload(client)["id"]
    for number in (2**63, 2**63 - 1 + 10**30, -1):
        cursor = "page_" + base64.urlsafe_b64encode(str(number).encode()).decode().rstrip("=")
        response = client.get("/v1/files", params={"page": cursor}, headers=HEADERS)
        assert response.status_code == 200, response.text
        assert [listed["id"] for listed in response.json()["data"]] == [file_id]


def test_a_multipart_content_type_without_a_boundary_is_a_400(client):
    response = client.post("/v1/files", content=b"x", headers={**HEADERS, "content-type": "multipart/form-data"})
    assert_error(
        response, 400, "invalid_request_error", "Invalid multipart/form-data body: the Content-Type names no boundary"
    )


def test_an_upload_needs_a_key(client):
    response = post_multipart(client, multipart(("file", "a", None, b"1")), headers={"anthropic-version": "2023-06-01"})
    assert_error(response, 401, "authentication_error", "x-api-key header is required")


@pytest.mark.parametrize(("method", "path"), [("POST", "/_understudy/files"), ("GET", "/_understudy/requests")])
def test_an_admin_route_without_its_key_names_the_admin_header(client, method, path):
    body = multipart(("file", "a.txt", None, b"x"))
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    response = client.request(method, path, content=body if method == "POST" else None, headers=headers)
    assert_error(response, 401, "authentication_error", "x-understudy-admin-key header is required")


def test_a_file_over_the_file_limit_is_a_413_and_is_not_kept(client):
    response = client.post("/v1/files", headers=HEADERS, files={"file": ("big.bin", b"x" * (MAX_FILE_BYTES + 1))})
    assert_error(response, 413, "request_too_large", "File exceeds the 2 MB limit")
    assert upload(client, b"x" * MAX_FILE_BYTES)["size_bytes"] == MAX_FILE_BYTES  # exactly the limit is fine
    assert len(client.get("/v1/files", headers=HEADERS).json()["data"]) == 1


def test_a_file_refused_part_way_is_removed_and_the_body_read_to_its_end(tmp_path):
    # The validator itself, fed the body in pieces as a server does (the test client hands it over whole).
    schema = {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}
    validator = MultipartBodyValidator(
        schema=schema, spool_directory=tmp_path, max_file_bytes=100_000, encoding="utf-8", strict_validation=False
    )
    body = multipart(("file", "big.bin", None, b"x" * 300_000))
    pieces = [body[start : start + 65536] for start in range(0, len(body), 65536)]
    messages = [{"type": "http.request", "body": piece, "more_body": piece is not pieces[-1]} for piece in pieces]
    sent = iter(messages)

    async def receive():
        return next(sent)

    scope = {"type": "http", "headers": [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]}
    with pytest.raises(FileTooLarge):
        asyncio.run(validator.wrap_receive(receive, scope=scope))
    assert next(sent, None) is None  # every piece was read
    assert list(tmp_path.iterdir()) == []


def test_uploads_have_a_body_limit_of_their_own(client):
    assert upload(client, b"x" * 5 * MAX_BODY_BYTES)["size_bytes"] == 5 * MAX_BODY_BYTES
    response = client.post("/v1/messages", json=message_body("x" * MAX_BODY_BYTES), headers=HEADERS)
    assert_error(
        response, 413, "request_too_large", f"Request exceeds the maximum allowed size of {MAX_BODY_BYTES} bytes"
    )


def test_a_chunked_upload_streams_through_the_body_limit(client):
    body = multipart(("file", "a.txt", "text/plain", b"y" * 300_000))
    chunks = (body[start : start + 65536] for start in range(0, len(body), 65536))
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    response = client.post("/v1/files", content=chunks, headers={**HEADERS, "content-type": content_type})
    assert response.status_code == 200, response.text
    assert response.json()["size_bytes"] == 300_000


UPLOAD_LIMIT = {("POST", "/v1/files"): 1000}


def test_the_body_limit_counts_a_chunked_multipart_body_as_it_passes():
    seen: list[bytes] = []

    async def app(scope, receive, send):
        assert dict(scope["headers"]).get(b"content-length") is None  # not read whole to be given one
        while True:
            message = await receive()
            seen.append(message["body"])
            if not message["more_body"]:
                return

    messages = iter([{"type": "http.request", "body": b"a" * 600, "more_body": True}] * 3)

    async def receive():
        return next(messages)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/files",
        "headers": [(b"transfer-encoding", b"chunked"), (b"content-type", b"multipart/form-data; boundary=x")],
    }
    limited = BodyLimitMiddleware(app, limit=100, route_limits=UPLOAD_LIMIT, upload_routes=UPLOAD_LIMIT)
    with pytest.raises(RequestTooLarge, match="1000 bytes"):
        asyncio.run(limited(scope, receive, None))
    assert seen == [b"a" * 600]  # the first chunk went on before the second passed the limit


@pytest.mark.parametrize("content_type", [None, b"application/json", b"text/plain", b"multipart/mixed; boundary=x"])
@pytest.mark.parametrize("framing", [(b"transfer-encoding", b"chunked"), (b"content-length", b"400000000")])
def test_an_upload_route_refuses_a_body_that_is_not_multipart_before_reading_it(content_type, framing):
    async def app(scope, receive, send):
        raise AssertionError("the body reached the app")

    async def receive():
        raise AssertionError("a byte of the body was read")

    headers = [framing] + ([(b"content-type", content_type)] if content_type else [])
    scope = {"type": "http", "method": "POST", "path": "/v1/files", "headers": headers}
    limited = BodyLimitMiddleware(app, limit=100, route_limits=UPLOAD_LIMIT, upload_routes=UPLOAD_LIMIT)
    with pytest.raises(ApiError, match=r"^Content-Type must be multipart/form-data$") as refused:
        asyncio.run(limited(scope, receive, None))
    assert refused.value.status == 400
    assert refused.value.headers == {"connection": "close"}  # the unread body is not taken for a next request


def test_download_only_what_a_tool_made(client):
    upload_id = upload(client)["id"]
    error = assert_error(
        client.get(f"/v1/files/{upload_id}/content", headers=HEADERS),
        400,
        "invalid_request_error",
        f"File {upload_id} cannot be downloaded: only files created by a tool, such as the code execution tool, "
        "can be downloaded",
    )
    assert error["details"] == {"error_code": "file_not_downloadable"}
    made = client.post(
        "/_understudy/files",
        headers={"x-understudy-admin-key": "admin-key"},
        files={"file": ("résumé.csv", b"a,b\n1,2\n", "text/csv")},
    )
    assert made.status_code == 200 and made.json()["downloadable"] is True
    content = client.get(f"/v1/files/{made.json()['id']}/content", headers=HEADERS)
    assert content.status_code == 200 and content.content == b"a,b\n1,2\n"
    assert content.headers["content-type"] == "text/csv"
    assert content.headers["content-disposition"] == "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.csv"


def test_a_text_file_that_is_not_utf8_downloads_as_it_was_uploaded(client):
    # The module's server checks its answers against the spec: a text download is its bytes, not text to decode.
    made = client.post(
        "/_understudy/files",
        headers={"x-understudy-admin-key": "admin-key"},
        files={"file": ("latin.txt", b"caf\xe9 \x80", "text/plain")},
    )
    content = client.get(f"/v1/files/{made.json()['id']}/content", headers=HEADERS)
    assert (content.status_code, content.content) == (200, b"caf\xe9 \x80")


@pytest.mark.parametrize("media_type", ["Multipart/Form-Data", "MULTIPART/FORM-DATA"])
def test_the_media_type_is_read_whatever_its_case(client, media_type):
    body = multipart(("file", "a.txt", "text/plain", b"x"))
    response = client.post(
        "/v1/files", content=body, headers={**HEADERS, "content-type": f"{media_type}; boundary={BOUNDARY}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "a.txt"


def test_a_text_file_is_quoted_and_counted_like_an_inline_document(client):
    file_id = upload(client, b"The quick brown fox.")["id"]
    from_file = [{"type": "document", "source": {"type": "file", "file_id": file_id}}, {"type": "text", "text": "Hi"}]
    inline = [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The quick brown fox."}},
        {"type": "text", "text": "Hi"},
    ]
    reply = client.post("/v1/messages", json=message_body(from_file), headers=HEADERS).json()
    assert reply["content"][0]["text"] == "[document: The quick brown fox.]\nHi"
    assert reply == {
        **client.post("/v1/messages", json=message_body(inline), headers=HEADERS).json(),
        "id": reply["id"],
    }
    count = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": from_file}]}
    assert client.post("/v1/messages/count_tokens", json=count, headers=HEADERS).json() == {"input_tokens": 10}


def test_a_text_file_named_many_times_counts_each_time_and_is_read_once(client, monkeypatch):
    text = b"word " * 200  # 1,000 bytes: five copies inline fit in the module's body limit
    file_id = upload(client, text)["id"]
    monkeypatch.setattr(sources, "MAX_TEXT_BYTES", 5 * len(text))
    reads: list[str] = []
    monkeypatch.setattr(FileStore, "open", lambda store, named: reads.append(named) or open_file(store, named))
    document = {"type": "document", "source": {"type": "file", "file_id": file_id}}
    within = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": [document] * 5}]}
    inline = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text.decode()}}
    as_inline = {**within, "messages": [{"role": "user", "content": [inline] * 5}]}
    counted = client.post("/v1/messages/count_tokens", json=within, headers=HEADERS).json()
    assert counted == client.post("/v1/messages/count_tokens", json=as_inline, headers=HEADERS).json()
    assert counted["input_tokens"] > 5 * 200  # every copy counted
    assert reads == [file_id]
    reads.clear()
    beyond = {"role": "user", "content": [document] * 6}
    for path, body in (
        ("/v1/messages/count_tokens", {**within, "messages": [beyond]}),
        ("/v1/messages", message_body([document] * 6)),
    ):
        assert_error(
            client.post(path, json=body, headers=HEADERS),
            400,
            "invalid_request_error",
            f"prompt is too long: the text files this request names hold {6 * len(text)} bytes or more, more than "
            f"the {5 * len(text)} a request may (a file named twice counts twice)",
        )
    assert reads == [file_id, file_id]  # read once per request, and refused before a sixth copy


def test_a_message_naming_an_unknown_or_deleted_file_is_a_404(client):
    file_id = upload(client)["id"]
    client.delete(f"/v1/files/{file_id}", headers=HEADERS)
    for named in ("file_nope", file_id):
        blocks = [{"type": "container_upload", "file_id": named}, {"type": "text", "text": "go"}]
        count = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": blocks}]}
        for path, body in (("/v1/messages", message_body(blocks)), ("/v1/messages/count_tokens", count)):
            assert_error(
                client.post(path, json=body, headers=HEADERS), 404, "not_found_error", f"File not found: {named}"
            )


def test_uploads_stream_without_the_private_hooks_too(server_dir):
    # Connexion's own bridge into Flask (a2wsgi) instead of ours: the validator has used the body up either way.
    plain = create_app(
        {"state_file": str(server_dir / "plain.sqlite3"), "files_dir": str(server_dir / "plain"), "internals": False}
    )
    with plain.test_client() as client:
        file_id = upload(client, b"no hooks")["id"]
        reply = client.post("/v1/messages", json=message_body([document_block(file_id)]), headers=HEADERS).json()
        assert reply["content"][0]["text"] == "[document: no hooks]"
    assert list((server_dir / "plain" / "incoming").iterdir()) == []


def document_block(file_id):
    return {"type": "document", "source": {"type": "file", "file_id": file_id}}


def test_a_scripted_rule_matches_on_a_text_files_contents(server_dir):
    script = server_dir / "script.yaml"
    script.write_text(
        "rules:\n  - name: knows-the-word\n    match: {user_text: {contains: swordfish}}\n    reply: {text: Come in.}\n"
    )
    settings = {"backend": "scripted", "script": str(script), "files_dir": str(server_dir / "scripted")}
    with create_app({**settings, "state_file": str(server_dir / "scripted.sqlite3")}).test_client() as client:
        file_id = upload(client, b"The password is swordfish.")["id"]
        reply = client.post("/v1/messages", json=message_body([document_block(file_id)]), headers=HEADERS)
        assert reply.json()["content"] == [{"type": "text", "text": "Come in."}]
        assert reply.headers["x-understudy-rule"] == "knows-the-word"
