"""The proxy's client of its upstream: one pool of connections, the key it sends, the bounds it reads within.

Used by the proxy's message calls (backend.py) and its batch routes
(batches.py) alike: a call goes out with the client's headers less hop-by-hop
ones and with the gateway's key in place of the client's when it holds one;
its answer comes back as a Reply, or as the API error a client should see,
with every secret of the gateway masked (`redaction.py`). httpcore's pool is
used directly: a gateway needs none of httpx's conveniences (URL merging,
cookies, redirects, decoding), which cost some 40% of a call's CPU time.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any
from urllib.parse import urlencode

import httpcore

from backends.exchange import Reply
from backends.proxy.redaction import Secrets
from backends.state.scopes import SCOPE_HEADER
from backends.wire import ADMIN_KEY_HEADER, JSON, ApiError, ConnectionAbort, compact_json

#: Connection-level headers, which belong to one hop and are never forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
     "trailer", "transfer-encoding", "upgrade"}
)  # fmt: skip
#: Request headers the gateway sets itself, or that must not travel upstream (this server's own: the admin key,
#: the scope the request works in here).
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "accept-encoding", ADMIN_KEY_HEADER, SCOPE_HEADER}
CLIENT_KEYS = frozenset({"x-api-key", "authorization"})
#: Response headers this server sets itself.
NOT_RETURNED = HOP_BY_HOP | {"content-length", "content-encoding", "content-type", "server", "date", "set-cookie"}

logger = logging.getLogger("understudy")


class UpstreamError(ApiError):
    """An API error that came from the upstream or from the way to it; `kind` says which, for the metrics:
    `timeout`, `unreachable`, `api_error` (the upstream's own), `error_answer` (an error that is not the API's),
    `bad_answer` (not JSON, a malformed event, a stream cut short) or `too_large`."""

    def __init__(self, status: int, message: str, *, kind: str, **details: Any) -> None:
        super().__init__(status, message, **details)
        self.kind = kind


@contextmanager
def upstream_errors(secrets: Secrets) -> Iterator[None]:
    """Turn the HTTP client's failures into the API errors a client should see (quoting no secret)."""
    try:
        yield
    except httpcore.TimeoutException as error:
        raise UpstreamError(
            504, f"The upstream did not answer in time ({type(error).__name__})", kind="timeout"
        ) from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
        reason = secrets.redacted(f"{type(error).__name__}: {error}")  # h11 may quote what the upstream sent
        raise UpstreamError(502, f"The upstream could not be reached ({reason})", kind="unreachable") from None


def query_string(**parameters: Any) -> str:
    """The query of a forwarded GET: the parameters given (not None), a list as one parameter per item."""
    return urlencode({name: value for name, value in parameters.items() if value is not None}, doseq=True)


def upstream_fault(message: str, kind: str = "bad_answer") -> UpstreamError:
    """A 502 for an answer the gateway will not pass on, logged in one line (it quotes nothing of the answer)."""
    logger.warning("%s", message)
    return UpstreamError(502, message, kind=kind)


class Upstream:
    """The upstream API, as the gateway calls it: every method quotes no secret of the gateway."""

    def __init__(
        self,
        url: str,
        *,
        key: str | None = None,
        secrets: Iterable[str] = (),
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        max_connections: int = 100,
        max_body_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.pool = httpcore.ConnectionPool(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.url = url.rstrip("/")
        #: httpcore's per-request options: connect, read, write, and waiting for a pooled connection.
        self.extensions = {
            "timeout": {
                "connect": connect_timeout,
                "read": read_timeout,
                "write": read_timeout,
                "pool": connect_timeout,
            }
        }
        self.key = key
        #: The upstream key and the gateway's other secrets (its clients' keys, the admin key), masked in answers.
        self.secrets = Secrets([key, *secrets])
        self.max_body_bytes = max_body_bytes

    def call(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: Mapping[str, Any] | None = None,
        gone: threading.Event | None = None,
    ) -> Reply:
        """One call, its whole answer read: a Reply, or the ApiError the upstream's answer or fault amounts to."""
        with upstream_errors(self.secrets), self.stream(method, path, headers, body) as response:
            answer = self.read(response, gone)
        if response.status >= 400:
            raise self.error(response, answer)
        try:
            parsed = json.loads(answer)
        except (ValueError, RecursionError):
            raise upstream_fault(f"The upstream answered {response.status} with a body that is not JSON") from None
        return Reply(self.secrets.redacted(parsed), self.returned_headers(response.headers))

    def stream(
        self, method: str, path: str, headers: Mapping[str, str], body: Mapping[str, Any] | None = None
    ) -> AbstractContextManager[httpcore.Response]:
        """The upstream's response, open while the block runs, its body not read yet (wrap in upstream_errors)."""
        content = None if body is None else compact_json(body).encode()
        return self.pool.stream(
            method,
            f"{self.url}{path}",
            headers=self.request_headers(headers),
            content=content,
            extensions=self.extensions,
        )

    def read(self, response: httpcore.Response, gone: threading.Event | None) -> bytes:
        """The upstream's whole body, given up (a 502) as soon as it is longer than the limit, declared or read.

        Read chunk by chunk, so that a client that goes away stops the read too: nobody waits for the answer.
        """
        declared = next((value for name, value in response.headers if name.lower() == b"content-length"), b"0")
        if int(declared) > self.max_body_bytes:  # h11 has checked that it is digits
            raise self._too_long()
        chunks, size = [], 0
        for chunk in response.iter_stream():
            if gone is not None and gone.is_set():
                raise ConnectionAbort()  # the client left: the connection to it is already gone
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_long()
            chunks.append(chunk)
        return b"".join(chunks)

    def request_headers(self, client_headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
        """The headers to send upstream: the client's, less hop-by-hop ones, with the right key."""
        named = _named_in_connection([client_headers.get("connection", "")])
        headers = {
            name: value
            for name, value in client_headers.items()
            if name not in NOT_FORWARDED and name not in named and (self.key is None or name not in CLIENT_KEYS)
        }
        if self.key is not None:
            headers["x-api-key"] = self.key
        headers["content-type"] = "application/json"
        headers["accept-encoding"] = "identity"  # events must arrive as sent, not in compressed blocks
        # Header values came in as bytes read as latin-1 (WSGI's rule): sent on as those same bytes.
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

    def returned_headers(self, headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
        """The upstream's response headers worth passing on: request-id, rate limits, retry hints…"""
        named = _named_in_connection(
            value.decode("latin-1") for name, value in headers if name.lower() == b"connection"
        )
        returned: dict[str, str] = {}
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1").lower()
            if name not in NOT_RETURNED and name not in named:
                value = raw_value.decode("latin-1")
                returned[name] = f"{returned[name]}, {value}" if name in returned else value
        return self.secrets.redacted(returned)

    def error(self, response: httpcore.Response, content: bytes) -> ApiError:
        """An upstream error response: an API error passes on as sent (secrets masked); of anything else, the status."""
        headers = self.returned_headers(response.headers)
        body = _api_error_body(content)
        if body is None:  # an error page, a proxy's text: nothing of it reaches the client
            return UpstreamError(
                response.status,
                f"The upstream answered {response.status}, not with an API error",
                kind="error_answer",
                headers=headers,
            )
        body = self.secrets.redacted(body)
        error = body["error"]
        return UpstreamError(
            response.status, error["message"], kind="api_error", error_type=error["type"], headers=headers, body=body
        )

    def close(self) -> None:
        self.pool.close()

    def _too_long(self) -> ApiError:
        return upstream_fault(
            f"The upstream sent an answer longer than the gateway's limit of {self.max_body_bytes} bytes", "too_large"
        )


def _api_error_body(content: bytes) -> JSON | None:
    """The body as JSON if it is shaped as the API's errors are (`{"error": {"type": …, "message": …}}`), else None."""
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("type"), str) and isinstance(error.get("message"), str):
        return body
    return None


def _named_in_connection(values: Iterable[str]) -> set[str]:
    """The header names `Connection` header values list: options of this hop, never forwarded (RFC 9110 §7.6.1)."""
    return {name.strip().lower() for value in values for name in value.split(",")} - {""}


def cut(response: httpcore.Response) -> None:
    """Shut the upstream socket, waking a thread blocked reading it; called when the client leaves."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)
