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
- **pooling**: one bounded keep-alive pool per worker, shared by its threads,
  in the upstream client every call goes through (`upstream.py`);
- **recording** (UNDERSTUDY_RECORD): every exchange is added to a script the
  scripted backend replays (`recording.py`);
- **Message Batches** run upstream: their routes are forwarded the same way
  (`batches.py`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpcore

from backends.base import Backend
from backends.exchange import EventStream, MessageRequest, Reply
from backends.proxy.batches import UpstreamBatches
from backends.proxy.recording import Recorder
from backends.proxy.upstream import Upstream, UpstreamError, cut, query_string, upstream_errors, upstream_fault
from backends.wire import JSON, ApiError, MalformedEvent, decode_events

if TYPE_CHECKING:
    from backends.batches import Batches
    from backends.catalogue import ModelCatalogue


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
        self.upstream = Upstream(
            upstream_url,
            key=upstream_key,
            secrets=secrets,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_connections=max_connections,
            max_body_bytes=max_body_bytes,
        )
        self.max_event_bytes = max_event_bytes
        self.recorder = recorder

    # ------------------------------------------------------------------ calls
    def create_message(self, request: MessageRequest) -> Reply:
        try:
            reply = self.upstream.call(
                "POST", "/v1/messages", request.headers, body=request.body, gone=request.client_gone
            )
        except ApiError as error:
            self._record_error(request, error)
            raise
        if self.recorder:
            self.recorder.record(request.body, reply.body)
        return reply

    def stream_message(self, request: MessageRequest) -> EventStream:
        started = time.monotonic()
        upstream = self.upstream
        held = ExitStack()  # the upstream response, open until its last event is passed on
        with upstream_errors(upstream.secrets):
            response = held.enter_context(upstream.stream("POST", "/v1/messages", request.headers, request.body))
        if response.status != 200:
            with held, upstream_errors(upstream.secrets):
                error = upstream.error(response, upstream.read(response, request.client_gone))
            self._record_error(request, error)
            raise error
        events = self._events(response, held, request.body, started)
        return EventStream(events, upstream.returned_headers(response.headers), on_disconnect=lambda: cut(response))

    def count_tokens(self, request: MessageRequest) -> Reply:
        return self.upstream.call("POST", "/v1/messages/count_tokens", request.headers, body=request.body)

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
        return self.upstream.call("GET", f"/v1/models?{query}", headers or {})

    def get_model(self, model_id: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self.upstream.call("GET", f"/v1/models/{quote(model_id, safe='')}", headers or {})

    def own_batches(self) -> Batches:
        """Message Batches run upstream: every batch route is forwarded (batches.py)."""
        return UpstreamBatches(self.upstream, max_line_bytes=self.max_event_bytes)

    def close(self) -> None:
        self.upstream.close()

    # -------------------------------------------------------------- plumbing
    def _record_error(self, request: MessageRequest, error: ApiError) -> None:
        if self.recorder and error.body is not None:  # the upstream's own error, not a fault on the way
            self.recorder.record_error(request.body, error)

    def _events(
        self, response: httpcore.Response, held: ExitStack, body: Mapping[str, Any], started: float
    ) -> Iterator[JSON]:
        """The upstream's events, each passed on the moment its last line arrives."""
        secrets = self.upstream.secrets
        seen: list[tuple[float, JSON]] = []
        try:
            with upstream_errors(secrets):
                for event in decode_events(response.iter_stream(), max_event_bytes=self.max_event_bytes):
                    event = secrets.redacted(event)
                    seen.append((time.monotonic() - started, event))
                    yield event
            if not seen or seen[-1][1]["type"] not in ("message_stop", "error"):
                raise UpstreamError(502, "The upstream ended the stream before message_stop", kind="bad_answer")
            if self.recorder:
                self.recorder.record_stream(body, seen)
        except MalformedEvent as error:
            raise upstream_fault(f"The upstream sent a malformed event: {error}") from None
        finally:
            held.close()
