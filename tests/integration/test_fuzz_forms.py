"""Fuzzing what test_fuzz.py cannot state as a schema: raw multipart uploads and the list routes' query strings.

schemathesis (test_fuzz.py) sends the bodies a schema describes, and builds every multipart body itself, well
formed. Here hypothesis builds the bytes, so that what only a broken or hostile client sends reaches a real
gunicorn server:
- uploads, to POST /v1/files and to the admin route POST /_understudy/files, each framed by Content-Length or
  chunked: boundaries of 0-400 characters, odd ones, quoted or not, or not the body's; parts without a
  Content-Disposition, with two, with odd names; filenames with control characters, DEL, C1 controls, U+2028,
  path separators, 300 characters; part Content-Types with control characters, commas, 4,000 characters,
  empty; `expires_in_seconds` of up to 5,000 digits, negative, a float, text; bodies cut before their closing
  boundary, junk before the first boundary or after the last, up to 130 parts; a Content-Type that is not
  multipart (JSON, text, none) or names no boundary;
- the query string of every list route (GET /v1/files, /v1/messages/batches, /v1/models and the admin
  /_understudy/requests), its parameters read from openapi.yaml (`ids[]`, `lifecycle[]` repeated): numbers
  huge, negative or not numbers, ids that exist or nearly, `page_` cursors that decode to a number past 2^63
  or to thousands of digits, non-ASCII text, percent-encoded junk, names the route does not know.

Every answer must hold:
- no 5xx, ever, and no traceback in the server's log;
- an error is the API's error object {"type":"error","error":{type,message},"request_id"}, its type the one
  for its status (answers.ERROR_TYPES), its request_id the request-id header's;
- an accepted upload (200) is FileMetadata (the server checks its own replies against the spec too) whose
  `mime_type` is a clean MIME type — `type/subtype` of HTTP token characters, so no control character and no
  comma, at most 255 characters: the download sends it as its Content-Type header — and whose `filename` has
  no control character (U+0000-U+001F, U+007F-U+009F) nor U+2028/U+2029; a file the admin route added
  downloads, a 200 with the bytes of the part that carried it;
- once an upload is answered, the spool folder (`incoming/` in the files directory, FileStore.spool_directory)
  is empty: no part of any upload is left behind, refused or kept.
gunicorn's own refusals (text/plain, before any of Understudy runs: a request line over 4094 bytes, a header
it will not parse) are counted apart, as in test_fuzz.py.

The uploads go to one server, the query strings to another: an upload the server should have refused (a
mime_type over 255 characters, say) would otherwise break every later listing of the files, and the query
fuzz would report the upload's defect. hypothesis stops generating at a test's first failure and shrinks it,
so that one defect met often hides the rest: hence a test per hostile aspect of an upload (and one with them
all at once), per route, and a test per query parameter (alone: one refused parameter hides what the others
would do) beside one per route that mixes them. A 5xx is raised as a ServerError named for what the server
logged (`ServerError[KeyError]`), so that distinct defects found in one test are reported apart.

Budget: UNDERSTUDY_FUZZ_FORM_EXAMPLES (60) cases a test, a third as many a query parameter; some 2,000
requests, derandomized (the same cases every run, no example database), about 30 s on two cores when
nothing fails (shrinking a failure costs more). A failure prints its smallest case as `Draw 1 (upload):
Upload(...)` or `Draw 1 (listing): Listing(...)` (the "Failing test case" line above it shows no values:
every case is drawn from st.data()). UNDERSTUDY_FUZZ_SEED=N makes the run random, seeded with N, to look
somewhere new; `-s` prints each server's answers by status. A longer run:

    UNDERSTUDY_FUZZ_FORM_EXAMPLES=1000 python -m pytest tests/integration/test_fuzz_forms.py -s
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import secrets
import socket
import string
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from app.launcher.server_process import ServerProcess
from app.spec.loading import load_spec
from app.spec.references import lookup
from backends.files.store import default_files_dir

from answers import ERROR_TYPES, Answer

EXAMPLES = int(os.environ.get("UNDERSTUDY_FUZZ_FORM_EXAMPLES", "60"))
#: Cases for each parameter of a list route alone: there are some twenty, so a third as many as other tests run.
PARAMETER_EXAMPLES = max(1, EXAMPLES // 3)
SEED = os.environ.get("UNDERSTUDY_FUZZ_SEED")
API_KEY = "forms-" + secrets.token_hex(8)
ADMIN_KEY = "forms-admin-" + secrets.token_hex(8)
#: Small, so that a generated file can pass it (a 413 whose spool must go too); the bodies stay a few KB.
MAX_FILE_BYTES = 4096
UPLOAD_ROUTES = ("/v1/files", "/_understudy/files")
ADMIN_ROUTE = "/_understudy/files"
#: The list routes: every GET that pages (their query parameters come from the spec).
LIST_ROUTES = ("/v1/files", "/v1/messages/batches", "/v1/models", "/_understudy/requests")
SPEC = load_spec(admin=True)

FuzzTest = TypeVar("FuzzTest", bound=Callable[..., Any])


def fuzzed(examples: int = EXAMPLES) -> Callable[[FuzzTest], FuzzTest]:
    """hypothesis's settings for every test here: `examples` cases, the same ones every run unless a seed is given.

    No example database (a case found once must not change what CI sends), no deadline (a server under the
    suite's parallel load answers in its own time), no health checks (the strategies draw large values on purpose).
    """

    def configure(test: FuzzTest) -> FuzzTest:
        configured = settings(
            max_examples=examples,
            derandomize=SEED is None,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
            # Not the explain phase: it runs a failure's case again and again to say which lines it ran.
            phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
        )(test)
        return seed(int(SEED))(configured) if SEED is not None else configured

    return configure


# ------------------------------------------------------------------------------------------------- the servers


@dataclass
class Served:
    """A server started for this module, where its uploads spool, and its answers counted by status."""

    server: ServerProcess
    spool: Path
    answers: Counter[str] = field(default_factory=Counter)
    #: How many lines the server had logged when the last request went out: its own lines come after.
    mark: int = 0

    def call(self, request: bytes) -> Answer:
        """Send the bytes as they are (to 127.0.0.1) and read the one response."""
        self.mark = len(self.server.lines)
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=30) as sock:
            sock.sendall(request)
            response = http.client.HTTPResponse(sock)
            response.begin()
            return Answer(response)


def _served(folder: Path) -> Iterator[Served]:
    """A gunicorn server with the admin routes on, its state (and so its files) in `folder`; checked as it stops."""
    state_file = folder / "state.sqlite3"
    env = {
        "UNDERSTUDY_API_KEYS": API_KEY,
        "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY,
        "UNDERSTUDY_STATE_FILE": str(state_file),
        "UNDERSTUDY_JOURNAL": "true",  # so that the journal's list route has entries to page through
        "UNDERSTUDY_VALIDATE_RESPONSES": "true",
        "UNDERSTUDY_MAX_FILE_BYTES": str(MAX_FILE_BYTES),
    }
    # No UNDERSTUDY_FILES_DIR: the files directory is the default one, beside the state file.
    with ServerProcess(env, workers=1) as server:
        served = Served(server, default_files_dir(state_file) / "incoming")
        assert served.spool.is_dir(), f"the file store spools elsewhere than {served.spool}"
        yield served
    print(f"\nanswers: {dict(sorted(served.answers.items()))}")
    logged: dict[str, list[str]] = {}
    for exception in _exceptions(server.lines):
        logged.setdefault(exception.split(":", 1)[0], []).append(exception[:200])
    summary = {kind: f"{len(every)} times, first {every[0]!r}" for kind, every in logged.items()}
    assert not logged, f"the server logged tracebacks: {summary}"
    assert _spooled(served) == [], "an upload was left in the spool folder"


@pytest.fixture(scope="module")
def upload_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _served(tmp_path_factory.mktemp("fuzz-forms"))


@pytest.fixture(scope="module")
def list_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _served(tmp_path_factory.mktemp("fuzz-queries"))


def _spooled(served: Served) -> list[str]:
    return sorted(path.name for path in served.spool.iterdir())


def _exceptions(lines: list[str]) -> Iterator[str]:
    """The exception line (`KeyError: 'x'`) of each traceback in `lines` that has come whole."""
    inside = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            inside = True
        elif inside and line.strip() and not line.startswith(" "):
            inside = line.startswith("During handling") or line.startswith("The above exception")
            if not inside:
                yield line.strip()


def request_bytes(method: str, target: bytes, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method.encode(), target), b"host: 127.0.0.1", b"connection: close", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def key_header(route: str) -> bytes:
    """The key the route takes: the admin key for the /_understudy routes, an API key for the rest."""
    if route.startswith("/_understudy/"):
        return b"x-understudy-admin-key: " + ADMIN_KEY.encode()
    return b"x-api-key: " + API_KEY.encode()


API_HEADERS = [b"anthropic-version: 2023-06-01"]


# ------------------------------------------------------------------------------------------------- the checks


class ServerError(AssertionError):
    """A 5xx, raised as a subclass named for the exception the server logged for it (`ServerError[KeyError]`).

    hypothesis reports one failure per kind of exception and place it was raised from, and shrinks every
    case of one failure to the simplest: raised from one line as one type, every 500 of a run would be a
    single failure, and the server's distinct defects would come to light one fix at a time.
    """

    kinds: ClassVar[dict[str, type[ServerError]]] = {}

    @classmethod
    def of(cls, kind: str) -> type[ServerError]:
        return cls.kinds.setdefault(kind, type(f"ServerError[{kind}]", (cls,), {}))


def fail_for_5xx(served: Served, answer: Answer, what: str) -> None:
    """Raise a ServerError for a 5xx, typed by what went wrong in the server, with its message."""
    if answer.status < 500:
        return
    kind = _said(answer) or _logged_exception(served)
    raise ServerError.of(kind.split(":", 1)[0])(f"{what}: a {answer.status}: {answer.body[:300]!r}; cause: {kind}")


def _said(answer: Answer) -> str | None:
    """What the 500 itself says went wrong, when it says more than "Internal server error": a reply that broke the
    spec (UNDERSTUDY_VALIDATE_RESPONSES), say, logged as no traceback. Its first words, without the details."""
    try:
        message = str(answer.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return None
    return None if message.lower().startswith("internal server error") else re.split(r"[.(]", message, maxsplit=1)[0]


def _logged_exception(served: Served) -> str:
    """The exception the server logged after the last request went out; it may log it after it answers (Starlette
    sends the 500 before it re-raises), so it is waited for, briefly."""
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while not (logged := list(_exceptions(served.server.lines[served.mark :]))):
        if time.monotonic() > deadline:
            return "no exception logged"
        time.sleep(0.01)
    return logged[-1]


LOG_WAIT_SECONDS = 2.0


def refused_by_gunicorn(answer: Answer) -> bool:
    """gunicorn's own answer to a request it will not parse: text/plain, without a request id (test_fuzz.py)."""
    plain = answer.headers.get("content-type", "").startswith("text/plain")
    return answer.status in (400, 414, 431) and plain and "request-id" not in answer.headers


def check_answer(served: Served, answer: Answer, what: str) -> Any:
    """No 5xx, and an error in the API's shape; the answer's JSON, or None for gunicorn's own refusal."""
    if refused_by_gunicorn(answer):
        served.answers[f"{answer.status} from gunicorn"] += 1
        return None
    served.answers[str(answer.status)] += 1
    fail_for_5xx(served, answer, what)
    assert answer.headers.get("content-type") == "application/json", answer.headers
    body = answer.json()
    if answer.status >= 400:
        assert set(body) == {"type", "error", "request_id"} and body["type"] == "error", body
        assert set(body["error"]) >= {"type", "message"} and isinstance(body["error"]["message"], str), body
        assert body["request_id"] == answer.headers["request-id"], body
        assert body["error"]["type"] == ERROR_TYPES.get(answer.status, body["error"]["type"]), body
    return body


#: A MIME type as an HTTP header carries one: type/subtype, each of token characters (RFC 9110).
MIME_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: What no filename may hold: C0 and C1 controls, DEL, and the line and paragraph separators.
CONTROL_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_mime_type(metadata: dict[str, Any]) -> None:
    mime = metadata["mime_type"]
    assert len(mime) <= 255 and MIME_TYPE.fullmatch(mime), f"a mime_type that is no clean MIME type: {mime!r}"


def check_filename(metadata: dict[str, Any]) -> None:
    name = metadata["filename"]
    assert not CONTROL_IN_NAME.search(name), f"a filename with a control character: {name!r}"


# ------------------------------------------------------------------------------------------------- uploads


@dataclass(frozen=True)
class Part:
    """One part of a multipart body: its header lines (each ending CRLF) and its bytes."""

    head: bytes
    data: bytes


@dataclass(frozen=True)
class Upload:
    """An upload as it goes on the wire: what hypothesis prints for a failing case (`Draw 1 (upload): ...`)."""

    content_type: bytes | None  # the request's Content-Type header; None: no such header
    boundary: bytes  # what the body's delimiters use (the header's, unless the case says otherwise)
    parts: tuple[Part, ...]
    preamble: bytes = b""
    epilogue: bytes = b"\r\n"
    cut: int | None = None  # the body ends after this many bytes
    chunk: int | None = None  # chunked framing, in chunks of this many bytes; None: Content-Length

    def body(self) -> bytes:
        delimiter = b"--" + self.boundary
        parts = b"".join(delimiter + b"\r\n" + part.head + b"\r\n" + part.data + b"\r\n" for part in self.parts)
        whole = self.preamble + parts + delimiter + b"--" + self.epilogue
        return whole if self.cut is None else whole[: self.cut]

    def request(self, route: str) -> bytes:
        body = self.body()
        headers = [key_header(route), *API_HEADERS]
        if self.content_type is not None:
            headers.append(b"content-type: " + self.content_type)
        if self.chunk is None:
            return request_bytes("POST", route.encode(), [*headers, b"content-length: %d" % len(body)], body)
        pieces = [body[start : start + self.chunk] for start in range(0, len(body), self.chunk)]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
        return request_bytes("POST", route.encode(), [*headers, b"transfer-encoding: chunked"], chunked)


#: What RFC 2046 allows in a boundary (a space too, but not last).
BOUNDARY_CHARS = string.ascii_letters + string.digits + "'()+_,-./:=?"
#: Characters that mean something in a header's parameters, or that no header expects.
ODD = "\"';,= \t\\<>@[]{}%*&#|~`^é€\u00a0\u0085\u2028\u2029\U0001f600"
#: Every control character but CR and LF, which would end a header line: not a character of its value.
CONTROLS = "".join(chr(code) for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if code not in (0x0A, 0x0D))
#: Characters of part headers' values: controls, odd ones, separators of paths and lines, the API's forbidden.
HOSTILE = CONTROLS + ODD + "/\\<>:|?*."


def sometimes(chance: int) -> SearchStrategy[bool]:
    """True about one time in `chance` (hypothesis shrinks it to False)."""
    return st.integers(0, chance - 1).map(lambda drawn: drawn == chance - 1)


def repeated(pieces: SearchStrategy[str], lengths: SearchStrategy[int]) -> SearchStrategy[str]:
    """A string of a drawn length, a short drawn piece over and over: long values for a few draws (hypothesis
    bounds the choices a case may make), shrinking to their shortest failing length."""
    return st.builds(lambda piece, length: (piece * (length // len(piece) + 1))[:length], pieces, lengths)


def digits(most: int) -> SearchStrategy[str]:
    """Numbers of 1 to `most` digits, as text: as many short ones as long ones, and `most` digits now and then."""
    lengths = st.one_of(st.integers(0, 40), st.integers(0, most - 1), st.just(most - 1))
    rest = repeated(st.text("0123456789", min_size=1, max_size=8), lengths)
    return st.builds(lambda first, then: first + then, st.sampled_from("123456789"), rest)


def quoted(value: str, quote: bool) -> str:
    return f'"{value}"' if quote else value


def clean_boundaries() -> SearchStrategy[str]:
    return st.text(string.ascii_letters + string.digits, min_size=1, max_size=70)


def hostile_boundaries() -> SearchStrategy[str]:
    return st.one_of(
        st.text(BOUNDARY_CHARS, min_size=1, max_size=70),  # every character RFC 2046 allows
        repeated(st.text(BOUNDARY_CHARS + ODD, min_size=1, max_size=8), st.integers(0, 400)),  # 0-400, odd
        st.text(BOUNDARY_CHARS + ODD + CONTROLS, max_size=12),  # gunicorn refuses most controls in a header
    )


@st.composite
def request_content_types(draw: st.DrawFn, boundary: str) -> bytes | None:
    """The request's Content-Type, hostile: the media type's case, parameters around the boundary, a second
    boundary; or one the upload routes cannot take (JSON, text, none, no boundary)."""
    if draw(sometimes(3)):
        return draw(other_content_types())
    kind = draw(
        st.sampled_from(["multipart/form-data", "Multipart/Form-Data", "MULTIPART/FORM-DATA", "multipart/form-data "])
    )
    params = [f"boundary={boundary}"]
    if draw(sometimes(4)):
        params.insert(draw(st.integers(0, 1)), "charset=utf-8")
    if draw(sometimes(6)):
        params.append(f"boundary={draw(clean_boundaries())}")  # a second boundary, another one
    return draw(st.sampled_from(["; ", ";", " ; "])).join([kind, *params]).encode()


def other_content_types() -> SearchStrategy[bytes | None]:
    """A Content-Type the upload routes cannot take, or none at all."""
    return st.sampled_from(
        [
            None,
            b"",
            b"application/json",
            b"text/plain",
            b"application/x-www-form-urlencoded",
            b"application/octet-stream",
            b"multipart/form-data",
            b"multipart/form-data; boundary=",
            b'multipart/form-data; boundary=""',
            b"multipart/mixed; boundary=xyz",
            b"multipart/form-data; charset=utf-8",
        ]
    )


def clean_filenames() -> SearchStrategy[str | None]:
    return st.sampled_from([None, "notes.txt", "report.pdf", "chart.csv", "pixel.png", "data"])


def hostile_filenames() -> SearchStrategy[str | None]:
    return st.one_of(
        clean_filenames(),
        st.text(HOSTILE + "abc", max_size=12),  # control characters, DEL, C1, U+2028, separators, …
        st.builds(lambda stem, odd: stem + odd + ".txt", st.text("abc", max_size=3), st.sampled_from(HOSTILE)),
        st.sampled_from(["", ".", "..", "../../etc/passwd", "C:\\temp\\a.txt", "dir/", "a/b/c.pdf", "a\\"]),
        repeated(st.text("abé/\u2028", min_size=1, max_size=4), st.integers(250, 300)),  # about 255, and 300
    )


def clean_part_types() -> SearchStrategy[str | None]:
    return st.sampled_from(
        [None, "text/plain", "application/pdf", "image/png", "text/csv; charset=utf-8", "application/octet-stream"]
    )


def hostile_part_types() -> SearchStrategy[str | None]:
    return st.one_of(
        clean_part_types(),
        st.sampled_from(["", " ", "TEXT/Plain", "text/plain, image/png", "text", "/", "text/", "/plain", ";", "a/b/c"]),
        st.builds(  # a clean type with control characters, commas or odd characters in it
            lambda before, odd, after: before + odd + after,
            st.sampled_from(["", "text/", "text/plain", "image/png;"]),
            st.text(CONTROLS + ODD + ",", min_size=1, max_size=4),
            st.sampled_from(["", "plain", "/x", "; charset=utf-8"]),
        ),
        repeated(st.text("ab/,;\x01", min_size=1, max_size=6), st.integers(200, 4000)),  # up to 4,000 characters
        st.text(HOSTILE, max_size=12),
    )


def file_data() -> SearchStrategy[bytes]:
    """A file's bytes: short, a known type's signature, or about the server's limit (MAX_FILE_BYTES), over it too."""
    return st.one_of(
        st.binary(max_size=64),
        st.sampled_from([b"", b"%PDF-1.7\n", b"\x89PNG\r\n\x1a\n\0\0", b"GIF89a", b"RIFF\0\0\0\0WEBPVP8 "]),
        st.builds(
            lambda byte, size: byte * size, st.binary(min_size=1, max_size=1), st.integers(1, MAX_FILE_BYTES + 64)
        ),
    )


def header_text(text: str, latin_1: bool) -> bytes:
    """A part header's text as bytes: UTF-8, or Latin-1 when asked and possible (a C1 control as one byte)."""
    if latin_1:
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            pass
    return text.encode("utf-8", "surrogatepass")


@st.composite
def file_parts(draw: st.DrawFn, aspects: frozenset[str]) -> Part:
    """The `file` part, hostile in the named aspects: its Content-Disposition ("disposition": missing, doubled, of
    another kind, unquoted, in Latin-1), its "filename", its Content-Type ("part type")."""
    filename = draw(hostile_filenames() if "filename" in aspects else clean_filenames())
    part_type = draw(hostile_part_types() if "part type" in aspects else clean_part_types())
    hostile = "disposition" in aspects
    quote = not hostile or draw(st.booleans())
    fields = ["form-data", f"name={quoted('file', quote)}"]
    if filename is not None:
        fields.append(f"filename={quoted(filename, quote)}")
    disposition = "Content-Disposition: " + "; ".join(fields)
    lines = [disposition]
    if hostile:
        shape = draw(st.sampled_from(["as is", "missing", "doubled", "another name", "attachment", "filename*"]))
        lines = _disposition_variant(shape, disposition, filename, lambda: draw(names()))
    if part_type is not None:
        lines.append(f"Content-Type: {part_type}")
    # Latin-1 now and then where a header is hostile: a C1 control as one byte, not UTF-8's two.
    latin_1 = bool(aspects & {"disposition", "filename", "part type"}) and draw(st.booleans())
    head = b"".join(header_text(line, latin_1) + b"\r\n" for line in lines)
    return Part(head, draw(file_data()))


def _disposition_variant(shape: str, disposition: str, filename: str | None, name: Callable[[], str]) -> list[str]:
    if shape == "missing":
        return []
    if shape == "doubled":
        return [disposition, disposition]
    if shape == "another name":
        return [disposition, f'Content-Disposition: form-data; name="{name()}"']
    if shape == "attachment":
        return [disposition.replace("form-data", "attachment", 1)]
    if shape == "filename*":  # RFC 5987's form, which the SDKs do not send
        encoded = urllib.parse.quote(filename or "", safe="")
        return [f"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''{encoded}"]
    return [disposition]


def names() -> SearchStrategy[str]:
    """A part's name: one the form knows, or odd (empty, quotes, semicolons, controls, non-ASCII)."""
    known = st.sampled_from(["file", "expires_in_seconds", "purpose", ""])
    return st.one_of(known, st.text(HOSTILE + "ab", max_size=10))


def clean_expiries() -> SearchStrategy[str | None]:
    return st.sampled_from([None, "3600", "86400", "7776000"])


def hostile_expiries() -> SearchStrategy[str | None]:
    return st.one_of(
        clean_expiries(),
        st.integers(-(2**70), 2**70).map(str),
        st.sampled_from(["3599", "7776001", "0", "-0", "-3600", "", " ", " 3600", "3600 ", "+3600", "0x1000", "1e4"]),
        st.sampled_from(["3600.0", "3600.5", "NaN", "inf", "-inf", "３６００", "٣٦٠٠", "true", "null", "[]", "{}"]),
        digits(5000),  # up to 5,000 digits: past Python's 4,300-digit limit on int()
        digits(5000).map(lambda number: "-" + number),
        st.builds(lambda number, fraction: f"{number}.{fraction}", digits(30), digits(5)),
        st.text(HOSTILE + "0123456789", max_size=12),
    )


def text_part(name: str, value: str, *, quote: bool = True) -> Part:
    return Part(f"Content-Disposition: form-data; name={quoted(name, quote)}\r\n".encode(), value.encode())


#: What of an upload can be hostile (`uploads`); each has a test of its own, and one has them all at once.
ASPECTS = ("boundary", "disposition", "filename", "part type", "expiry", "framing")


@st.composite
def uploads(draw: st.DrawFn, aspects: frozenset[str]) -> Upload:
    """An upload hostile in the named aspects, the rest as a client sends it; chunked or not, always.

    boundary: the boundary, quoted or not, now and then not the body's; disposition, filename, part type: the
    file part's headers (file_parts), disposition with odd extra parts too; expiry: `expires_in_seconds`;
    framing: the request's Content-Type, a body cut short, junk around the parts, many parts.
    """
    chosen = draw(hostile_boundaries() if "boundary" in aspects else clean_boundaries())
    parts = [draw(file_parts(aspects))]
    hostile_expiry = "expiry" in aspects
    expires = draw(hostile_expiries() if hostile_expiry else clean_expiries())
    if expires is not None:
        parts.append(text_part("expires_in_seconds", expires, quote=not hostile_expiry or draw(st.booleans())))
    if "disposition" in aspects:
        extra = draw(st.lists(st.tuples(names(), st.text(HOSTILE + "ab", max_size=8)), max_size=3))
        parts += [text_part(name, value) for name, value in extra]
    if "framing" in aspects and draw(sometimes(4)):  # many parts: up to 130, over the 100 allowed
        parts += [text_part(f"extra{index}", "x") for index in range(draw(st.integers(0, 130)))]
    parts = draw(st.permutations(parts)) if len(parts) > 1 else parts
    quote = "boundary" in aspects and draw(st.booleans())
    content_type: bytes | None = f"multipart/form-data; boundary={quoted(chosen, quote)}".encode()
    if "framing" in aspects:
        content_type = draw(request_content_types(chosen))
    in_body = chosen.encode()
    if "boundary" in aspects and draw(sometimes(8)):  # the body delimited by another boundary than the header's
        in_body = draw(hostile_boundaries()).encode()
    upload = Upload(content_type, in_body, tuple(parts), chunk=draw(st.one_of(st.none(), st.integers(1, 2048))))
    # A boundary inside a file's bytes ends the file there: a case whose download could not be told right.
    assume(not any(b"\r\n--" + in_body in part.data for part in parts))
    return draw(cut_and_padded(upload)) if "framing" in aspects else upload


@st.composite
def cut_and_padded(draw: st.DrawFn, upload: Upload) -> Upload:
    """The upload with junk before its first boundary and after its last, or cut short."""
    junk = st.one_of(st.just(b""), st.binary(max_size=32), st.sampled_from([b"\r\n", b"--", b"--\r\n", b"junk\r\n"]))
    padded = Upload(**{**upload.__dict__, "preamble": draw(junk), "epilogue": draw(junk)})
    if not draw(sometimes(3)):
        return padded
    return Upload(**{**padded.__dict__, "cut": draw(st.integers(0, max(0, len(padded.body()) - 1)))})


def fuzz_upload(served: Served, route: str, upload: Upload) -> None:
    """Send one upload and hold its answer to every rule (module docstring)."""
    answer = served.call(upload.request(route))
    assert _spooled(served) == [], f"the upload's spool was left behind: {_spooled(served)}"
    metadata = check_answer(served, answer, f"POST {route}")
    if answer.status != 200 or metadata is None:
        return
    check_filename(metadata)
    if route == ADMIN_ROUTE:
        # Before the mime type's check: what a client meets downloading the file is a finding of its own.
        download(served, metadata, upload)
    check_mime_type(metadata)


def download(served: Served, metadata: dict[str, Any], upload: Upload) -> None:
    """A file the admin route added downloads whole: a 200 with the bytes of one of the upload's parts."""
    target = f"/v1/files/{metadata['id']}/content".encode()
    answer = served.call(request_bytes("GET", target, [key_header("/v1/files"), *API_HEADERS]))
    served.answers[f"{answer.status} download"] += 1
    fail_for_5xx(served, answer, f"downloading {metadata}")
    assert answer.status == 200, f"downloading {metadata}: a {answer.status}: {answer.body[:300]!r}"
    assert len(answer.body) == metadata["size_bytes"], f"{len(answer.body)} bytes of {metadata}"
    assert answer.body in [part.data for part in upload.parts], f"the download is not the part's bytes: {metadata}"


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
@pytest.mark.parametrize("hostile", [*ASPECTS, "everything"])
@fuzzed()
@given(data=st.data())
def test_uploads(upload_server: Served, hostile: str, route: str, data: st.DataObject) -> None:
    aspects = frozenset(ASPECTS if hostile == "everything" else [hostile])
    fuzz_upload(upload_server, route, data.draw(uploads(aspects), label="upload"))


# ------------------------------------------------------------------------------------------------- list routes


@dataclass(frozen=True)
class Listing:
    """A GET of a list route as it goes on the wire, its query string as sent: what hypothesis prints."""

    route: str
    query: str

    def request(self) -> bytes:
        target = f"{self.route}?{self.query}" if self.query else self.route
        return request_bytes("GET", target.encode("ascii"), [key_header(self.route), *API_HEADERS])


def query_parameters(route: str) -> dict[str, dict[str, Any]]:
    """The query parameters the spec gives the route's GET, each with its schema (`$ref`s followed)."""
    given_ = SPEC["paths"][route]["get"].get("parameters", [])
    parameters = [lookup(SPEC, item["$ref"]) if "$ref" in item else item for item in given_]
    return {parameter["name"]: parameter["schema"] for parameter in parameters if parameter["in"] == "query"}


def cursor(text: str) -> str:
    """A `page_` cursor as the file store makes them: the URL-safe base64 of `text`, unpadded."""
    return "page_" + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def cursors() -> SearchStrategy[str]:
    """`page_` cursors of numbers about 2^63 and past it (of either sign), of thousands of digits, of no number."""
    edges = [2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 0, -1]
    numbers_ = st.one_of(
        st.sampled_from([str(edge) for edge in edges]),
        st.integers(-(2**70), 2**70).map(str),
        digits(5000),  # past some 2,900 digits the request line is over gunicorn's limit: its refusal
        st.text(max_size=8),
    )
    junk = st.sampled_from(["page", "page_", "page_=", "page_===", "page_!!", "PAGE_MTI", "page_" + "A" * 100])
    return st.one_of(numbers_.map(cursor), numbers_.map(cursor), junk)


def numbers() -> SearchStrategy[str]:
    """Numbers as text: huge, negative, floats, and what only looks like a number."""
    return st.one_of(
        st.integers().map(str),
        st.integers(-(2**70), 2**70).map(str),
        digits(3000),
        st.floats().map(repr),
        st.sampled_from(["", "0", "-0", "+1", "1e3", "0x10", "1_000", " 5", "NaN", "inf", "１２", "٣", "true"]),
    )


def values(name: str, schema: dict[str, Any], known: list[str]) -> SearchStrategy[str]:
    """A value for the parameter: mostly of the kind it takes (a cursor, a number, an id, one of its enum), or any."""
    ids = st.sampled_from(known)
    near = st.builds(lambda known_id, tail: known_id + tail, ids, st.sampled_from(["x", "\x00", " ", "é", "%"]))
    anything = st.one_of(numbers(), cursors(), ids, near, st.text(max_size=20))
    items = schema.get("items", schema)
    if name == "page":
        return st.one_of(cursors(), cursors(), anything)
    if items.get("type") == "integer":
        return st.one_of(numbers(), anything)
    if "enum" in items:
        return st.one_of(st.sampled_from(items["enum"]), anything)
    return st.one_of(ids, near, anything)


#: What goes into a query string as it is: broken escapes, escaped controls, separators, non-ASCII escaped.
RAW_JUNK = ["%", "%z", "%zz", "%00", "%ff%fe", "%E2%80%A8", "%C2%85", "%2", "+", "&", "=", "==", ";", "%25%32%35", "[]"]
#: Names no list route takes, or takes spelled otherwise.
ODD_NAMES = ["ids", "ids[0]", "limit[]", "", "LIMIT", "é", "page_", "after_id[]"]


@st.composite
def pairs(draw: st.DrawFn, name: str, schema: dict[str, Any], known: list[str]) -> str:
    """`name=value` as a query string has it: the value percent-encoded, or raw junk now and then, or no value."""
    key = urllib.parse.quote(name, safe="[]")
    if draw(sometimes(10)):
        return key
    if draw(sometimes(6)):
        return f"{key}={draw(st.sampled_from(RAW_JUNK))}"
    return f"{key}={urllib.parse.quote(draw(values(name, schema, known)), safe='')}"


@st.composite
def one_parameter(draw: st.DrawFn, route: str, name: str, known: list[str]) -> Listing:
    """A GET of `route` with the one parameter, given once or (an array's items, or a repeated scalar) many times."""
    schema = query_parameters(route)[name]
    most = 101 if schema.get("type") == "array" else 3  # one past an array's maxItems (100)
    count = draw(st.one_of(st.just(1), st.integers(2, most)))
    # A few values drawn, repeated to the count: a hundred drawn one by one cost more than they find.
    given_ = draw(st.lists(pairs(name, schema, known), min_size=1, max_size=min(count, 3)))
    return Listing(route, "&".join((given_ * count)[:count]))


@st.composite
def listings(draw: st.DrawFn, route: str, known: list[str]) -> Listing:
    """A GET of `route` with several of its parameters, and names it does not take."""
    own = query_parameters(route)
    names_ = st.one_of(st.sampled_from(sorted(own)), st.sampled_from(ODD_NAMES))
    chosen = draw(st.lists(names_, max_size=8))
    return Listing(route, "&".join(draw(pairs(name, own.get(name, {}), known)) for name in chosen))


@pytest.fixture(scope="module")
def known_ids(list_server: Served) -> list[str]:
    """Ids that exist on the list server, after a few clean uploads and a batch: files, a batch, models, requests."""
    for name in ("a.txt", "b.pdf", "c.csv"):
        upload = Upload(b"multipart/form-data; boundary=xyz", b"xyz", (text_part("file", name),))
        check_answer(list_server, list_server.call(upload.request("/v1/files")), "an upload")
    check_answer(list_server, list_server.call(batch_request()), "a batch")
    found = set()
    for route in LIST_ROUTES:
        page = check_answer(list_server, list_server.call(Listing(route, "limit=5").request()), route)
        found |= {str(item[key]) for item in page["data"] for key in ("id", "request_id") if item.get(key)}
    return sorted(found)


def batch_request() -> bytes:
    message = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    body = json.dumps({"requests": [{"custom_id": "a", "params": message}]}).encode()
    headers = [key_header("/v1/messages/batches"), *API_HEADERS, b"content-type: application/json"]
    return request_bytes("POST", b"/v1/messages/batches", [*headers, b"content-length: %d" % len(body)], body)


#: Every query parameter of every list route.
LIST_PARAMETERS = [(route, name) for route in LIST_ROUTES for name in query_parameters(route)]


@pytest.mark.parametrize(("route", "name"), LIST_PARAMETERS)
@fuzzed(PARAMETER_EXAMPLES)
@given(data=st.data())
def test_each_query_parameter(
    list_server: Served, known_ids: list[str], route: str, name: str, data: st.DataObject
) -> None:
    listing = data.draw(one_parameter(route, name, known_ids), label="listing")
    check_answer(list_server, list_server.call(listing.request()), f"GET {route}")


@pytest.mark.parametrize("route", LIST_ROUTES)
@fuzzed()
@given(data=st.data())
def test_query_strings(list_server: Served, known_ids: list[str], route: str, data: st.DataObject) -> None:
    listing = data.draw(listings(route, known_ids), label="listing")
    check_answer(list_server, list_server.call(listing.request()), f"GET {route}")
