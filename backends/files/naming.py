"""What an uploaded file is called and what type it is: the Files API's filename rules and MIME detection.

Filename (the SDK's documented rule): only the last path component of the
part's filename is kept (`/`, and `\\` for Windows paths, both separate
components); an absent or empty one becomes `unnamed` plus the extension of
the file's MIME type, when there is one (`unnamed.pdf`). What is left must be
1-255 characters with none of `< > : " | ? *` or a control character
(U+0000-U+001F, U+007F-U+009F, and the line breaks U+2028, U+2029), or the
upload is a 400 (the Files guide's "Invalid filename").

MIME type: the part's own Content-Type (a 400 unless it is a MIME type,
`type/subtype`; parameters such as `charset` are dropped), unless it is missing or says only
`application/octet-stream` (what a client sends when it does not know); then
the filename's extension; then the first bytes, for the types a message can
use as a document or an image (PDF, PNG, JPEG, GIF, WebP); else
`application/octet-stream`. Any type is accepted: a type that does not fit a
content block is refused when a message uses the file (`sources.py`).
"""

from __future__ import annotations

import mimetypes
import re

from backends.wire import ApiError

OCTET_STREAM = "application/octet-stream"
UNNAMED = "unnamed"
MAX_FILENAME_LENGTH = 255
#: The characters a filename may not hold: the guide's, every control character (C0, DEL, C1) and the two line
#: breaks of Unicode (U+2028, U+2029), which would break a log line or a header that shows the name.
FORBIDDEN = re.compile(r'[<>:"|?*\x00-\x1f\x7f-\x9f\u2028\u2029]')
#: A MIME type as a Content-Type gives it (RFC 6838's type/subtype, of RFC 9110's token characters).
MIME_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,127}/[A-Za-z0-9!#$%&'*+.^_`|~-]{1,127}")
#: How many leading bytes `mime_type` looks at.
SNIFF_BYTES = 16
#: Leading bytes of the types a message can use, each with its MIME type.
SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
#: Python's own table only, never the machine's /etc/mime.types: the same answer on every machine.
_TYPES = mimetypes.MimeTypes()
#: The extension `unnamed` takes for the types messages use (mimetypes would give `.jpe` for image/jpeg).
EXTENSIONS = {
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
}

INVALID_FILENAME = (
    'Invalid filename: it must be 1-255 characters, with none of < > : " | ? * \\ / or control characters'
)
INVALID_TYPE = "file: the part's Content-Type is not a MIME type (type/subtype)"


def mime_type(declared: str | None, filename: str | None, head: bytes) -> str:
    """The file's MIME type, from its part's Content-Type, its filename or its first bytes (`head`)."""
    given = (declared or "").split(";", 1)[0].strip().lower()
    if given and not MIME_TYPE.fullmatch(given):
        raise ApiError(400, INVALID_TYPE)
    if given and given != OCTET_STREAM:
        return given
    guessed, _encoding = _TYPES.guess_type(filename or "", strict=False)
    if guessed:
        return guessed
    return _sniffed(head) or OCTET_STREAM


def _sniffed(head: bytes) -> str | None:
    for signature, kind in SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def filename(given: str | None, mime: str) -> str:
    """The name the file is stored under: the last path component of `given`, or `unnamed` + an extension."""
    name = re.split(r"[/\\]", given or "")[-1]
    if name in ("", ".", ".."):
        return UNNAMED + _extension(mime)
    if len(name) > MAX_FILENAME_LENGTH or FORBIDDEN.search(name):
        raise ApiError(400, INVALID_FILENAME)
    return name


def _extension(mime: str) -> str:
    if mime == OCTET_STREAM:
        return ""
    return EXTENSIONS.get(mime) or _TYPES.guess_extension(mime, strict=False) or ""
