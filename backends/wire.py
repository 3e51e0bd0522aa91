"""The vocabulary every layer shares: API errors, ids, compact JSON, server-sent events, scope keys, header names.

It sits in the lowest layer and imports nothing of the project, so that the
HTTP plumbing, the API handlers and every backend speak the same words
without importing each other:

- `ApiError` is a failure the API reports (status, error type, message),
  `ConnectionAbort` a connection cut on purpose, and `error_body` the JSON
  shape every error has on the wire;
- `new_id` makes ids in the API's style (msg_…, toolu_…, req_…), `opaque_digest` stand-ins for its opaque values;
- `compact_json` writes JSON as the API does;
- `encode_event` and `decode_events` are the two directions of the SSE codec
  (`MalformedEvent` what the second raises for an event it cannot read);
- the ASGI scope keys and header names that cross layers are named once here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

JSON = dict[str, Any]

# ---------------------------------------------------------------------------------------------- errors

#: The error type the API documents for each status; any other 4xx is an
#: invalid_request_error and any other 5xx an api_error.
ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for(status: int) -> str:
    """The API's error type for an HTTP status."""
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


class ApiError(Exception):
    """A failure the API reports to its client: a status, an error type, a message, and maybe a code for the cause."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or error_type_for(status)
        self.headers = dict(headers or {})
        #: The error body exactly as an upstream sent it, passed on unchanged instead of one built here.
        self.body = body
        #: The stable code naming the cause, sent as `error.details.error_code` (the SDK's `error.error_code`).
        self.error_code = error_code


class ConnectionAbort(Exception):
    """Raised by a backend to cut the client's connection, as a network fault would.

    Before the response starts the client gets a truncated response; during a
    stream, the stream just stops without its end. Nothing else reports it.
    """


def error_body(error: ApiError, request_id: str | None) -> JSON:
    """The JSON body of an error response (an upstream's own body, when it sent one)."""
    if error.body is not None:
        return dict(error.body)
    inner: JSON = {"type": error.error_type, "message": error.message}
    if error.error_code is not None:
        inner["details"] = {"error_code": error.error_code}
    return {"type": "error", "error": inner, "request_id": request_id}


def error_json(error: ApiError, request_id: str | None) -> bytes:
    """The error body as compact JSON bytes."""
    return compact_json(error_body(error, request_id)).encode()


# ------------------------------------------------------------------------------------------------- ids

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 24  # "01" and 22 random characters, as in the real API's ids

#: Each random byte names a character: bytes 0–247 fall evenly on the 62, 248–255 on the first eight.
#: So a character carries 5.95 bits, not quite log2(62) = 5.954, and an id some 130: plenty for ids,
#: which need to be unique, not secret. One C call rather than a Python step per character (an id is
#: made twice per request: the message's and the request's).
_CHARACTER_OF_BYTE = bytes(ALPHABET.encode()[byte % len(ALPHABET)] for byte in range(256))


def new_id(prefix: str) -> str:
    """A fresh id such as `msg_01Xy…`; random, so unique across workers and restarts without shared state."""
    return f"{prefix}_01{secrets.token_bytes(ID_LENGTH - 2).translate(_CHARACTER_OF_BYTE).decode()}"


def opaque_digest(seed: str) -> str:
    """A deterministic stand-in for an opaque value the API returns (a signature, encrypted content): base64 SHA-256."""
    return base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()


# ------------------------------------------------------------------------------------------------ JSON


#: Made once: `json.dumps` given any argument makes an encoder per call, for every reply and every event.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def compact_json(value: Any) -> str:
    """JSON as the API writes it: no spaces, non-ASCII kept."""
    return _COMPACT.encode(value)


# ----------------------------------------------------------------------------------- server-sent events


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One event in the wire format: `event:` its type (the SDKs' parsers drop events without one), `data:` it."""
    return f"event: {event['type']}\ndata: {compact_json(event)}\n\n".encode()


class MalformedEvent(ValueError):
    """A server-sent event that cannot be passed on; the message says why, quoting nothing of it."""


def decode_events(chunks: Iterable[bytes], *, max_event_bytes: int | None = None) -> Iterator[JSON]:
    """Server-sent events from raw byte chunks: each event's JSON data, as soon as the event is complete.

    Each chunk is searched once, for the blank line that ends an event (so a long event costs time in
    proportion to its length, not to its length squared); raises MalformedEvent for an event longer
    than `max_event_bytes`, or whose data is not UTF-8 JSON with a `type`.
    """
    buffer = bytearray()
    carried_cr = False  # a chunk ended in "\r", which may be half of a "\r\n"
    for chunk in chunks:
        if carried_cr:
            chunk = b"\r" + chunk
        carried_cr = chunk.endswith(b"\r")
        searched = max(len(buffer) - 1, 0)  # all before it holds no "\n\n"; the last "\n" may begin one
        buffer += (chunk[:-1] if carried_cr else chunk).replace(b"\r\n", b"\n")
        start = 0
        while (end := buffer.find(b"\n\n", max(start, searched))) != -1:
            frame = buffer[start:end]
            start = end + 2
            if max_event_bytes is not None and len(frame) > max_event_bytes:
                raise _too_long(max_event_bytes)
            event = _event_data(frame)
            if event is not None:
                yield event
        del buffer[:start]
        if max_event_bytes is not None and len(buffer) > max_event_bytes:
            raise _too_long(max_event_bytes)


def _event_data(frame: bytes | bytearray) -> JSON | None:
    """The JSON of one event's `data:` lines (None for an event without data: a comment, a keep-alive)."""
    data = b"\n".join(line[5:].lstrip() for line in frame.split(b"\n") if line.startswith(b"data:"))
    if not data:
        return None
    try:
        event = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedEvent("its data is not UTF-8") from None
    except (ValueError, RecursionError):
        raise MalformedEvent("its data is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise MalformedEvent("its data is not a JSON object with a type")
    return event


def _too_long(limit: int) -> MalformedEvent:
    return MalformedEvent(f"it is longer than the limit of {limit} bytes")


# ------------------------------------------------------------------------------ scope keys and headers

#: Where the request's id travels in the ASGI scope (set by the outermost middleware).
REQUEST_ID_KEY = "understudy.request_id"
#: Where the server's settings travel in the ASGI scope, for the security handlers.
SETTINGS_KEY = "understudy.settings"
#: The WSGI environ key of the callbacks to run the moment the client disconnects.
ON_DISCONNECT_KEY = "understudy.on_disconnect"

#: The response header that names the scripted rule that answered (read by the journal).
RULE_HEADER = "x-understudy-rule"
#: The request header that carries the admin key.
ADMIN_KEY_HEADER = "x-understudy-admin-key"
#: Request headers whose values are secrets: never journaled, stored or logged.
SECRET_HEADERS = frozenset(
    {"x-api-key", "api-key", "authorization", "proxy-authorization", "cookie", "x-amz-security-token", ADMIN_KEY_HEADER}
)


#: The headers a client's API key comes in, besides a bearer token: the first-party API's, and Azure AI Foundry's.
KEY_HEADERS = ("x-api-key", "api-key")


def client_key(headers: Mapping[str, str]) -> str:
    """The client's API key (`headers` named in lower case): x-api-key, api-key or a bearer token; "" for none
    (an AWS-signed request's)."""
    for name in KEY_HEADERS:
        if headers.get(name):
            return headers[name]
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
