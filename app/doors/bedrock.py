"""Amazon Bedrock's InvokeModel door (doors/bedrock.yaml): Bedrock's wire shape in, a Messages request out, and back.

In: the model named in the path as Bedrock names it, the API version and the
betas in the body. Out: the message as the first-party API has it, with
Bedrock's token-count headers; a stream as AWS event-stream messages, each
event a `chunk` whose payload is `{"bytes": <the event's JSON, base64>}`, the
last with Bedrock's invocation metrics; a failure as Bedrock reports one: the
exception's name in `x-amzn-ErrorType` (or, once a stream has begun, in an
exception message's `:exception-type`), its message in the body.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping
from typing import Any

from app.doors import eventstream
from app.doors.base import ErrorAnswer
from backends.catalogue import ModelCatalogue
from backends.wire import JSON, ApiError, compact_json

#: A cross-region inference profile's geography, before the base id (`us.anthropic.claude-opus-5-5`).
PROFILE_PREFIX = re.compile(r"^(?:us-gov|global|us|eu|jp|apac|au|ca)\.(?=anthropic\.)")
#: An ARN that names a model: a foundation model's or an inference profile's (its resource after the slash).
MODEL_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]*:\d*:(?:foundation-model|inference-profile)/(.+)$")
#: The body fields of Bedrock's own, which the Messages request carries in its headers.
OWN_FIELDS = ("anthropic_version", "anthropic_beta")
#: Bedrock's body versions of the Messages API of 2023-06-01 (the first-party version each stands for).
FIRST_PARTY_VERSIONS = {"bedrock-2023-05-31": "2023-06-01"}

#: Each status a Messages request fails with, as Bedrock's exception and the status Bedrock sends it with.
EXCEPTIONS: dict[int, tuple[str, int]] = {
    400: ("ValidationException", 400),
    401: ("UnrecognizedClientException", 403),
    403: ("AccessDeniedException", 403),
    404: ("ResourceNotFoundException", 404),
    405: ("UnknownOperationException", 405),
    408: ("ModelTimeoutException", 408),
    413: ("ValidationException", 400),
    429: ("ThrottlingException", 429),
    500: ("InternalServerException", 500),
    503: ("ServiceUnavailableException", 503),
    529: ("ServiceUnavailableException", 503),
}
#: The exception messages a stream may end with, by the status of the failure (others: modelStreamErrorException).
STREAM_EXCEPTIONS = {
    400: "validationException",
    408: "modelTimeoutException",
    429: "throttlingException",
    500: "internalServerException",
    503: "serviceUnavailableException",
    529: "serviceUnavailableException",
}
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
CHUNK_HEADERS = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}


def model_name(model_id: str, catalogue: ModelCatalogue) -> str:
    """The catalogue's id for the model `model_id` names as Bedrock does (an inference profile or ARN resolved
    to its base id first); a name the catalogue lacks is passed on as given, for the backend to answer."""
    arn = MODEL_ARN.match(model_id)
    base_id = PROFILE_PREFIX.sub("", arn.group(1) if arn else model_id)
    model = catalogue.find_on("bedrock", base_id)
    return model.id if model is not None else model_id


def message_body(model: str, body: Mapping[str, Any]) -> JSON:
    """The Messages body an InvokeModel body stands for: the model added, Bedrock's own fields taken out."""
    return {"model": model, **{name: value for name, value in body.items() if name not in OWN_FIELDS}}


def message_headers(body: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, str]:
    """The first-party headers an InvokeModel request stands for: its version and its betas (the body's
    `anthropic_beta` and the header's, as the SDKs send both)."""
    version = str(body["anthropic_version"])
    betas = dict.fromkeys([*body.get("anthropic_beta", ()), *_listed(headers.get("anthropic-beta", ""))])
    message_headers = {"anthropic-version": FIRST_PARTY_VERSIONS.get(version, version)}
    if betas:
        message_headers["anthropic-beta"] = ",".join(betas)
    return message_headers


def _listed(header: str) -> list[str]:
    return [name.strip() for name in header.split(",") if name.strip()]


def reply_headers(message: Mapping[str, Any], request_id: str, started: float) -> dict[str, str]:
    """The headers InvokeModel answers with: the request's id, the tokens counted, the time taken (ms)."""
    usage = message.get("usage") or {}
    return {
        "x-amzn-RequestId": request_id,
        "X-Amzn-Bedrock-Input-Token-Count": str(usage.get("input_tokens", 0)),
        "X-Amzn-Bedrock-Output-Token-Count": str(usage.get("output_tokens", 0)),
        "X-Amzn-Bedrock-Invocation-Latency": str(_milliseconds_since(started)),
    }


def _milliseconds_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def error_answer(error: ApiError, request_id: str | None) -> ErrorAnswer:
    """The error as Bedrock sends one: `{"message": …}`, the exception named in `x-amzn-ErrorType`."""
    name, status = EXCEPTIONS.get(error.status) or (
        ("InternalServerException", 500) if error.status >= 500 else ("ValidationException", 400)
    )
    headers = {**error.headers, "x-amzn-ErrorType": f"{name}:{ERROR_NAMESPACE}"}
    if request_id is not None:
        headers["x-amzn-RequestId"] = request_id
    return ErrorAnswer(status, compact_json({"message": _message_of(error)}).encode(), headers)


def _message_of(error: ApiError) -> str:
    """The error's message; an upstream's own error body (the proxy's) gives its own."""
    inner = (error.body or {}).get("error")
    return str(inner.get("message", error.message)) if isinstance(inner, Mapping) else error.message


class EventStreamFraming:
    """A Messages stream as InvokeModelWithResponseStream sends it (one per stream: it counts the tokens and
    times the first byte for the invocation metrics the last chunk carries)."""

    content_type = "application/vnd.amazon.eventstream"

    def __init__(self, request_id: str) -> None:
        self.headers: Mapping[str, str] = {
            "X-Amzn-Bedrock-Content-Type": "application/json",
            "x-amzn-RequestId": request_id,
        }
        self._started = time.monotonic()
        self._first_byte: int | None = None
        self._input_tokens = 0
        self._output_tokens = 0

    def event(self, event: Mapping[str, Any]) -> bytes:
        kind = event.get("type")
        if kind == "ping":  # Bedrock sends none; the SDKs would skip it
            return b""
        if self._first_byte is None:
            self._first_byte = _milliseconds_since(self._started)
        if kind == "message_start":
            self._input_tokens = int((event.get("message") or {}).get("usage", {}).get("input_tokens", 0))
        elif kind == "message_delta":
            self._output_tokens = int((event.get("usage") or {}).get("output_tokens", 0))
        elif kind == "message_stop":
            event = {**event, "amazon-bedrock-invocationMetrics": self._metrics()}
        return self._chunk(event)

    def _metrics(self) -> JSON:
        return {
            "inputTokenCount": self._input_tokens,
            "outputTokenCount": self._output_tokens,
            "invocationLatency": _milliseconds_since(self._started),
            "firstByteLatency": self._first_byte or 0,
        }

    @staticmethod
    def _chunk(event: Mapping[str, Any]) -> bytes:
        encoded = base64.b64encode(compact_json(event).encode()).decode()
        return eventstream.message(CHUNK_HEADERS, compact_json({"bytes": encoded}).encode())

    def error(self, error: ApiError, request_id: str | None) -> bytes:
        """An exception message, as Bedrock ends a stream that failed."""
        kind = STREAM_EXCEPTIONS.get(error.status, "modelStreamErrorException")
        headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
        return eventstream.message(headers, compact_json({"message": _message_of(error)}).encode())

    def end(self) -> bytes:
        return b""
