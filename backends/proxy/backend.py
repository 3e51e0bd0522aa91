"""The proxy backend: a gateway to the real API, or to any upstream that speaks it.

Requests arrive already validated against openapi.yaml, so a malformed call
never leaves the server. Then:
- **keys**: with UNDERSTUDY_UPSTREAM_API_KEY the gateway holds the upstream key
  (clients use keys of their own) and it never reaches a client, a log, the
  journal or a recording; without it, the client's own key passes through.
  Whatever the upstream sends back has every secret of the gateway masked
  (`redaction.py`), for an upstream may echo them;
- **headers**: anthropic-version, anthropic-beta and the rest go upstream;
  hop-by-hop headers, and those a `Connection` header names, are dropped both
  ways; the upstream's request-id is kept;
- **streams** pass through event by event as they arrive; when the client
  goes away, the upstream socket is shut at once, so nobody pays for tokens
  nobody reads;
- **bounds**: a whole answer is read up to UNDERSTUDY_UPSTREAM_MAX_BODY_BYTES
  and one event up to UNDERSTUDY_UPSTREAM_MAX_EVENT_BYTES; beyond, the
  upstream is left and the client gets a 502 (an `error` event in a stream);
- **faults** become errors the SDKs understand (`upstream_errors`): unreachable
  or reset → 502 api_error, too slow → 504 timeout_error, a stream cut short or
  malformed → an `error` event; the upstream's own API errors pass through
  unchanged (secrets masked), and of any other error answer only its status;
- **pooling**: one bounded keep-alive pool per worker, shared by its threads —
  httpcore's, the engine under httpx, used directly: a gateway needs none of
  httpx's conveniences (URL merging, cookies, redirects, decoding), which cost
  some 40% of a call's CPU time;
- **recording** (UNDERSTUDY_RECORD): every exchange is added to a script the
  scripted backend replays (`recording.py`);
- **Message Batches** run upstream: their routes are forwarded the same way
  (`batches.py`).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpcore

from backends.base import Backend, EventStream, MessageRequest, Reply
from backends.proxy.recording import Recorder
from backends.proxy.redaction import Secrets
from backends.wire import ADMIN_KEY_HEADER, JSON, ApiError, ConnectionAbort, MalformedEvent, compact_json, decode_events

if TYPE_CHECKING:
    from backends.batches import Batches
    from backends.catalogue import ModelCatalogue

#: Connection-level headers, which belong to one hop and are never forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
     "trailer", "transfer-encoding", "upgrade"}
)  # fmt: skip
#: Request headers the gateway sets itself, or that must not travel upstream.
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "accept-encoding", ADMIN_KEY_HEADER}
CLIENT_KEYS = frozenset({"x-api-key", "authorization"})
#: Response headers this server sets itself.
NOT_RETURNED = HOP_BY_HOP | {"content-length", "content-encoding", "content-type", "server", "date", "set-cookie"}

logger = logging.getLogger("understudy")


@contextmanager
def upstream_errors(secrets: Secrets) -> Iterator[None]:
    """Turn the HTTP client's failures into the API errors a client should see (quoting no secret)."""
    try:
        yield
    except httpcore.TimeoutException as error:
        raise ApiError(504, f"The upstream did not answer in time ({type(error).__name__})") from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
        reason = secrets.redacted(f"{type(error).__name__}: {error}")  # h11 may quote what the upstream sent
        raise ApiError(502, f"The upstream could not be reached ({reason})") from None


def query_string(**parameters: Any) -> str:
    """The query of a forwarded GET: the parameters given (not None), a list as one parameter per item."""
    return urlencode({name: value for name, value in parameters.items() if value is not None}, doseq=True)


def upstream_fault(message: str) -> ApiError:
    """A 502 for an answer the gateway will not pass on, logged in one line (it quotes nothing of the answer)."""
    logger.warning("%s", message)
    return ApiError(502, message)


class ProxyBackend(Backend):
    """Forwards each call to the upstream and passes its answer back."""

    name = "proxy"

    def __init__(
        self,
        catalogue: ModelCatalogue,
        upstream_url: str,
        *,
        upstream_key: str | None = None,
        secrets: Iterable[str] = (),
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        max_connections: int = 100,
        max_body_bytes: int = 32 * 1024 * 1024,
        max_event_bytes: int = 16 * 1024 * 1024,
        recorder: Recorder | None = None,
    ) -> None:
        super().__init__(catalogue)
        self.pool = httpcore.ConnectionPool(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.upstream_url = upstream_url.rstrip("/")
        #: httpcore's per-request options: connect, read, write, and waiting for a pooled connection.
        self.extensions = {
            "timeout": {
                "connect": connect_timeout,
                "read": read_timeout,
                "write": read_timeout,
                "pool": connect_timeout,
            }
        }
        self.upstream_key = upstream_key
        #: The upstream key and the gateway's other secrets (its clients' keys, the admin key), masked in answers.
        self.secrets = Secrets([upstream_key, *secrets])
        self.max_body_bytes = max_body_bytes
        self.max_event_bytes = max_event_bytes
        self.recorder = recorder

    # ------------------------------------------------------------------ calls
    def create_message(self, request: MessageRequest) -> Reply:
        try:
            reply = self._call("POST", "/v1/messages", request.headers, body=request.body, gone=request.client_gone)
        except ApiError as error:
            self._record_error(request, error)
            raise
        if self.recorder:
            self.recorder.record(request.body, reply.body)
        return reply

    def stream_message(self, request: MessageRequest) -> EventStream:
        started = time.monotonic()
        held = ExitStack()  # the upstream response, open until its last event is passed on
        with upstream_errors(self.secrets):
            response = held.enter_context(
                self.pool.stream(
                    "POST",
                    self._url("/v1/messages"),
                    headers=self._headers(request.headers),
                    content=compact_json(request.body).encode(),
                    extensions=self.extensions,
                )
            )
        if response.status != 200:
            with held, upstream_errors(self.secrets):
                error = self._upstream_error(response, self._read(response, request.client_gone))
            self._record_error(request, error)
            raise error
        events = self._events(response, held, request.body, started)
        return EventStream(events, self._returned_headers(response.headers), on_disconnect=lambda: _cut(response))

    def count_tokens(self, request: MessageRequest) -> Reply:
        return self._call("POST", "/v1/messages/count_tokens", request.headers, body=request.body)

    def list_models(
        self,
        *,
        after_id: str | None,
        before_id: str | None,
        limit: int,
        lifecycle: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        query = query_string(limit=limit, after_id=after_id, before_id=before_id, **{"lifecycle[]": lifecycle})
        return self._call("GET", f"/v1/models?{query}", headers or {})

    def get_model(self, model_id: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self._call("GET", f"/v1/models/{quote(model_id, safe='')}", headers or {})

    def own_batches(self) -> Batches:
        """Message Batches run upstream: every batch route is forwarded (batches.py)."""
        from backends.proxy.batches import UpstreamBatches  # imports this module

        return UpstreamBatches(self)

    def close(self) -> None:
        self.pool.close()

    # -------------------------------------------------------------- plumbing
    def _record_error(self, request: MessageRequest, error: ApiError) -> None:
        if self.recorder and error.body is not None:  # the upstream's own error, not a fault on the way
            self.recorder.record_error(request.body, error)

    def _call(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: Mapping[str, Any] | None = None,
        gone: threading.Event | None = None,
    ) -> Reply:
        content = None if body is None else compact_json(body).encode()
        with (
            upstream_errors(self.secrets),
            self.pool.stream(
                method, self._url(path), headers=self._headers(headers), content=content, extensions=self.extensions
            ) as response,
        ):
            answer = self._read(response, gone)
        if response.status >= 400:
            raise self._upstream_error(response, answer)
        try:
            parsed = json.loads(answer)
        except (ValueError, RecursionError):
            raise upstream_fault(f"The upstream answered {response.status} with a body that is not JSON") from None
        return Reply(self.secrets.redacted(parsed), self._returned_headers(response.headers))

    def _read(self, response: httpcore.Response, gone: threading.Event | None) -> bytes:
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

    def _too_long(self) -> ApiError:
        return upstream_fault(
            f"The upstream sent an answer longer than the gateway's limit of {self.max_body_bytes} bytes"
        )

    def _url(self, path: str) -> str:
        return f"{self.upstream_url}{path}"

    def _headers(self, client_headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
        """The headers to send upstream: the client's, less hop-by-hop ones, with the right key."""
        named = _named_in_connection([client_headers.get("connection", "")])
        headers = {
            name: value
            for name, value in client_headers.items()
            if name not in NOT_FORWARDED
            and name not in named
            and (self.upstream_key is None or name not in CLIENT_KEYS)
        }
        if self.upstream_key is not None:
            headers["x-api-key"] = self.upstream_key
        headers["content-type"] = "application/json"
        headers["accept-encoding"] = "identity"  # events must arrive as sent, not in compressed blocks
        # Header values came in as bytes read as latin-1 (WSGI's rule): sent on as those same bytes.
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

    def _events(
        self, response: httpcore.Response, held: ExitStack, body: Mapping[str, Any], started: float
    ) -> Iterator[JSON]:
        """The upstream's events, each passed on the moment its last line arrives."""
        seen: list[tuple[float, JSON]] = []
        try:
            with upstream_errors(self.secrets):
                for event in decode_events(response.iter_stream(), max_event_bytes=self.max_event_bytes):
                    event = self.secrets.redacted(event)
                    seen.append((time.monotonic() - started, event))
                    yield event
            if not seen or seen[-1][1]["type"] not in ("message_stop", "error"):
                raise ApiError(502, "The upstream ended the stream before message_stop")
            if self.recorder:
                self.recorder.record_stream(body, seen)
        except MalformedEvent as error:
            raise upstream_fault(f"The upstream sent a malformed event: {error}") from None
        finally:
            held.close()

    def _returned_headers(self, headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
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

    def _upstream_error(self, response: httpcore.Response, content: bytes) -> ApiError:
        """An upstream error response: an API error passes on as sent (secrets masked); of anything else, the status."""
        headers = self._returned_headers(response.headers)
        body = _api_error_body(content)
        if body is None:  # an error page, a proxy's text: nothing of it reaches the client
            return ApiError(
                response.status, f"The upstream answered {response.status}, not with an API error", headers=headers
            )
        body = self.secrets.redacted(body)
        error = body["error"]
        return ApiError(response.status, error["message"], error_type=error["type"], headers=headers, body=body)


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


def _cut(response: httpcore.Response) -> None:
    """Shut the upstream socket, waking a thread blocked reading it; called when the client leaves."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)
