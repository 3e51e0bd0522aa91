"""The limiter in front of the backend and the batches: the same contracts, each call admitted first.

`LimitedBackend` is a Backend whose create_message, stream_message and
count_tokens are admitted by the limiter before the backend answers, settled
when the answer is complete (a stream's when it ends, however it ends), and
answered with the rate limit headers. `LimitedBatches` admits every Message
Batches call against their own request limit. create_app puts them where the
handlers find the backend and the batches, so every door (Bedrock, Vertex AI,
the OpenAI-compatible endpoint) is limited alike and no handler changes; the
batch processor keeps the backend itself, since a batch's requests are not
Messages calls of the client's (the API gives batches their own limits).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from app.ratelimits.limiter import Admission, RateLimiter
from app.settings import SETTINGS, ConfigError, Settings
from backends.base import Backend, BackendInFront
from backends.batches import Batches
from backends.catalogue import ModelCatalogue
from backends.exchange import ByteStream, EventStream, MessageRequest, Reply
from backends.state import StateStore
from backends.wire import JSON, ApiError


class LimitedBackend(BackendInFront):
    """`backend`, behind the rate limits (most takes spend a lease, in memory: it answers in memory if it does)."""

    def __init__(self, backend: Backend, limiter: RateLimiter) -> None:
        super().__init__(backend)
        self.limiter = limiter

    def create_message(self, request: MessageRequest) -> Reply:
        admission = self.limiter.admit_message(request.body, request.headers)
        if admission is None:
            return self.backend.create_message(request)
        try:
            reply = self.backend.create_message(request)
        except BaseException as error:  # an API error, a connection cut on purpose, a bug: no output either way
            self.limiter.settle(admission, None)
            _add_headers(error, admission)
            raise
        self.limiter.settle(admission, reply.body.get("usage"))
        return Reply(reply.body, {**reply.headers, **admission.headers})

    def stream_message(self, request: MessageRequest) -> EventStream:
        admission = self.limiter.admit_message(request.body, request.headers)
        if admission is None:
            return self.backend.stream_message(request)
        try:
            stream = self.backend.stream_message(request)
        except BaseException as error:
            self.limiter.settle(admission, None)
            _add_headers(error, admission)
            raise
        return EventStream(
            self._settled(stream, admission), {**stream.headers, **admission.headers}, stream.on_disconnect
        )

    def _settled(self, stream: EventStream, admission: Admission) -> Iterator[JSON]:
        """The stream's events; when it ends (or fails, or the client goes), its usage so far settles it."""
        usage: dict[str, Any] = {}
        failed = False
        try:
            for event in stream.events:
                if event.get("type") == "message_start":
                    usage.update(event.get("message", {}).get("usage") or {})
                elif event.get("type") == "message_delta":
                    usage.update(event.get("usage") or {})
                yield event
        except ApiError as error:
            failed = not usage
            _add_headers(error, admission)
            raise
        finally:
            stream.close()
            self.limiter.settle(admission, None if failed else usage)

    def count_tokens(self, request: MessageRequest) -> Reply:
        admission = self.limiter.admit_count_tokens(request.headers)
        if admission is None:
            return self.backend.count_tokens(request)
        try:
            reply = self.backend.count_tokens(request)
        except ApiError as error:
            _add_headers(error, admission)
            raise
        return Reply(reply.body, {**reply.headers, **admission.headers})

    def close(self) -> None:
        self.limiter.close()
        self.backend.close()


class LimitedBatches(Batches):
    """`batches`, every call behind the Message Batches request limit."""

    def __init__(self, batches: Batches, limiter: RateLimiter) -> None:
        self.batches = batches
        self.limiter = limiter

    def create(self, requests: Sequence[Mapping[str, Any]], headers: Mapping[str, str]) -> Reply:
        return self._reply(headers, lambda: self.batches.create(requests, headers))

    def retrieve(self, batch_id: str, headers: Mapping[str, str]) -> Reply:
        return self._reply(headers, lambda: self.batches.retrieve(batch_id, headers))

    def page(self, *, after_id: str | None, before_id: str | None, limit: int, headers: Mapping[str, str]) -> Reply:
        return self._reply(
            headers, lambda: self.batches.page(after_id=after_id, before_id=before_id, limit=limit, headers=headers)
        )

    def cancel(self, batch_id: str, headers: Mapping[str, str]) -> Reply:
        return self._reply(headers, lambda: self.batches.cancel(batch_id, headers))

    def delete(self, batch_id: str, headers: Mapping[str, str]) -> Reply:
        return self._reply(headers, lambda: self.batches.delete(batch_id, headers))

    def results(self, batch_id: str, headers: Mapping[str, str]) -> ByteStream:
        admission = self.limiter.admit_batches(headers)
        try:
            stream = self.batches.results(batch_id, headers)
        except ApiError as error:
            _add_headers(error, admission)
            raise
        return ByteStream(stream.chunks, {**stream.headers, **(admission.headers if admission else {})})

    def _reply(self, headers: Mapping[str, str], call: Any) -> Reply:
        admission = self.limiter.admit_batches(headers)
        try:
            reply: Reply = call()
        except ApiError as error:
            _add_headers(error, admission)
            raise
        return reply if admission is None else Reply(reply.body, {**reply.headers, **admission.headers})

    def __getattr__(self, name: str) -> Any:
        if "batches" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["batches"], name)


def rate_limited(
    settings: Settings, store: StateStore, catalogue: ModelCatalogue, backend: Backend, batches: Batches
) -> tuple[Backend, Batches]:
    """The backend and the batches behind the rate limits, when UNDERSTUDY_RATE_LIMITS sets any; else as they are,
    and nothing of this package runs."""
    if settings.rate_limits is None:
        return backend, batches
    try:
        limiter = RateLimiter(settings.rate_limits, store, catalogue)
    except ValueError as error:
        raise ConfigError(f"{SETTINGS['rate_limits']['variable']}: {error}") from None
    return LimitedBackend(backend, limiter), LimitedBatches(batches, limiter)


def _add_headers(error: BaseException, admission: Admission | None) -> None:
    """Have `error`, when it is an API error, carry the rate limit headers too (its own win)."""
    if admission is not None and isinstance(error, ApiError):
        error.headers = {**admission.headers, **error.headers}
