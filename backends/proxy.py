"""The proxy backend: a gateway to the real API, or to any upstream that speaks it.

Requests arrive already validated against openapi.yaml, so a malformed call
never leaves the server. Then:
- **keys**: with UNDERSTUDY_UPSTREAM_API_KEY the gateway holds the upstream key
  (clients use keys of their own) and it never reaches a client, a log, the
  journal or a recording; without it, the client's own key passes through;
- **headers**: anthropic-version, anthropic-beta and the rest go upstream;
  hop-by-hop headers are dropped both ways; the upstream's request-id is kept;
- **streams** pass through event by event as they arrive; when the client
  goes away, the upstream socket is shut at once, so nobody pays for tokens
  nobody reads;
- **faults** become errors the SDKs understand (`upstream_errors`): unreachable
  or reset → 502 api_error, too slow → 504 timeout_error, a stream cut short →
  an `error` event; the upstream's own error responses pass through unchanged;
- **pooling**: one bounded keep-alive pool per worker, shared by its threads;
- **recording** (UNDERSTUDY_RECORD): every exchange is added to a script the
  scripted backend replays (`recording.py`).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import httpx

from backends.base import JSON, ApiError, Backend, EventStream, MessageRequest, Reply
from backends.recording import Recorder

if TYPE_CHECKING:
    from app.config import Settings
    from backends.catalogue import ModelCatalogue

#: Connection-level headers, which belong to one hop and are never forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
     "trailer", "transfer-encoding", "upgrade"}
)  # fmt: skip
#: Request headers the gateway sets itself, or that must not travel upstream.
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "accept-encoding", "x-understudy-admin-key"}
CLIENT_KEYS = frozenset({"x-api-key", "authorization"})
#: Response headers this server sets itself.
NOT_RETURNED = HOP_BY_HOP | {"content-length", "content-encoding", "content-type", "server", "date", "set-cookie"}


@contextmanager
def upstream_errors() -> Iterator[None]:
    """Turn the HTTP client's failures into the API errors a client should see."""
    try:
        yield
    except httpx.TimeoutException as error:
        raise ApiError(504, f"The upstream did not answer in time ({type(error).__name__})") from None
    except httpx.TransportError as error:
        raise ApiError(502, f"The upstream could not be reached ({type(error).__name__}: {error})") from None


class ProxyBackend(Backend):
    """Forwards each call to the upstream and passes its answer back."""

    name = "proxy"

    def __init__(
        self,
        catalogue: ModelCatalogue,
        client: httpx.Client,
        *,
        upstream_key: str | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        super().__init__(catalogue)
        self.client = client
        self.upstream_key = upstream_key
        self.recorder = recorder

    @classmethod
    def from_settings(cls, settings: Settings, catalogue: ModelCatalogue) -> Backend:
        timeout = httpx.Timeout(
            connect=settings.upstream_connect_timeout,
            read=settings.upstream_read_timeout,
            write=settings.upstream_read_timeout,
            pool=settings.upstream_connect_timeout,
        )
        limits = httpx.Limits(
            max_connections=settings.upstream_connections, max_keepalive_connections=settings.upstream_connections
        )
        client = httpx.Client(base_url=settings.upstream_url, timeout=timeout, limits=limits, trust_env=False)
        secrets = [key for key in (settings.upstream_api_key, *settings.api_keys) if key]
        recorder = Recorder(settings.record, secrets) if settings.record else None
        return cls(catalogue, client, upstream_key=settings.upstream_api_key, recorder=recorder)

    # ------------------------------------------------------------------ calls
    def create_message(self, request: MessageRequest) -> Reply:
        try:
            reply = self._call("POST", "/v1/messages", request.headers, body=request.body)
        except ApiError as error:
            self._record_error(request, error)
            raise
        if self.recorder:
            self.recorder.record(request.body, reply.body)
        return reply

    def stream_message(self, request: MessageRequest) -> EventStream:
        upstream = self.client.build_request(
            "POST", "/v1/messages", headers=self._headers(request.headers), content=_json(request.body)
        )
        started = time.monotonic()
        with upstream_errors():
            response = self.client.send(upstream, stream=True)
        if response.status_code != 200:
            response.read()
            response.close()
            error = _upstream_error(response)
            self._record_error(request, error)
            raise error
        events = self._events(response, request.body, started)
        return EventStream(events, _returned_headers(response.headers), on_disconnect=lambda: _cut(response))

    def count_tokens(self, request: MessageRequest) -> Reply:
        return self._call("POST", "/v1/messages/count_tokens", request.headers, body=request.body)

    def list_models(
        self, *, after_id: str | None, before_id: str | None, limit: int, headers: Mapping[str, str] | None = None
    ) -> Reply:
        query = {"limit": limit, "after_id": after_id, "before_id": before_id}
        params = {name: value for name, value in query.items() if value is not None}
        return self._call("GET", "/v1/models", headers or {}, params=params)

    def get_model(self, model_id: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self._call("GET", f"/v1/models/{model_id}", headers or {})

    def close(self) -> None:
        self.client.close()

    # -------------------------------------------------------------- plumbing
    def _record_error(self, request: MessageRequest, error: ApiError) -> None:
        if self.recorder and error.body is not None:  # the upstream's own error, not a fault on the way
            self.recorder.record_error(request.body, error)

    def _call(self, method: str, path: str, headers: Mapping[str, str], **options: Any) -> Reply:
        body = options.pop("body", None)
        content = None if body is None else _json(body)
        with upstream_errors():
            response = self.client.request(method, path, headers=self._headers(headers), content=content, **options)
        if response.status_code >= 400:
            raise _upstream_error(response)
        try:
            answer = response.json()
        except ValueError:
            raise ApiError(502, f"The upstream answered {response.status_code} with a body that is not JSON") from None
        return Reply(answer, _returned_headers(response.headers))

    def _headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        """The headers to send upstream: the client's, less hop-by-hop ones, with the right key."""
        headers = {
            name: value
            for name, value in client_headers.items()
            if name not in NOT_FORWARDED and (self.upstream_key is None or name not in CLIENT_KEYS)
        }
        if self.upstream_key is not None:
            headers["x-api-key"] = self.upstream_key
        headers["content-type"] = "application/json"
        headers["accept-encoding"] = "identity"  # events must arrive as sent, not in compressed blocks
        return headers

    def _events(self, response: httpx.Response, body: Mapping[str, Any], started: float) -> Iterator[JSON]:
        """The upstream's events, each passed on the moment its last line arrives."""
        seen: list[tuple[float, JSON]] = []
        try:
            with upstream_errors():
                for event in parse_sse(response.iter_raw()):
                    seen.append((time.monotonic() - started, event))
                    yield event
            if not seen or seen[-1][1].get("type") not in ("message_stop", "error"):
                raise ApiError(502, "The upstream ended the stream before message_stop")
            if self.recorder:
                self.recorder.record_stream(body, seen)
        finally:
            response.close()


def parse_sse(chunks: Iterator[bytes]) -> Iterator[JSON]:
    """Server-sent events from raw byte chunks: each event's JSON data, as soon as the event is complete."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            data = b"\n".join(line[5:].lstrip() for line in frame.split(b"\n") if line.startswith(b"data:"))
            if data:
                yield json.loads(data)


def _json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _returned_headers(headers: httpx.Headers) -> dict[str, str]:
    """The upstream's response headers worth passing on: request-id, rate limits, retry hints…"""
    return {name: value for name, value in headers.items() if name.lower() not in NOT_RETURNED}


def _upstream_error(response: httpx.Response) -> ApiError:
    """An upstream error response, to be passed on unchanged."""
    headers = _returned_headers(response.headers)
    try:
        body = response.json()
        error = body["error"]
        return ApiError(
            response.status_code, str(error["message"]), error_type=error["type"], headers=headers, body=body
        )
    except (ValueError, KeyError, TypeError):
        text = response.text[:200]
        return ApiError(response.status_code, f"The upstream answered {response.status_code}: {text}", headers=headers)


def _cut(response: httpx.Response) -> None:
    """Shut the upstream socket, waking a thread blocked reading it; called when the client leaves."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)
