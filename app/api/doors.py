"""The doors' operations (doors/*.yaml): each turns its platform's request into a Messages request through the
door's codec (app/doors/), has the backend answer it, and answers in the door's shape.

The Messages request keeps every rule a first-party one keeps (messages.checked):
the per-model rules apply at every door. It carries the first-party headers the
door's request stands for, and the client's key when it sent one as the
first-party API takes it (a bearer token, x-api-key), for a proxy that holds
none of its own; an AWS signature goes no further than the key check.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Response

from app.api import backend, request_headers, request_id, rules
from app.api.messages import answered, checked
from app.api.responses import json_response
from app.api.streaming import stream_response
from app.doors import bedrock, openai, vertex
from backends.exchange import Reply


def bedrock_invoke(modelId: str, body: dict[str, Any]) -> Response:
    """InvokeModel: the message, with Bedrock's headers."""
    started = time.monotonic()
    request = checked(*_bedrock_request(modelId, body), counting=False)
    reply = backend().create_message(request)
    return json_response(Reply(reply.body, {**reply.headers, **bedrock.reply_headers(reply.body, _id(), started)}))


def bedrock_invoke_stream(modelId: str, body: dict[str, Any]) -> Response:
    """InvokeModelWithResponseStream: the message's events as event-stream chunks."""
    message_body, headers = _bedrock_request(modelId, body)
    request = checked({**message_body, "stream": True}, headers, counting=False)
    return stream_response(backend().stream_message(request), bedrock.EventStreamFraming(_id()))


def _bedrock_request(model_id: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    model = bedrock.model_name(model_id, rules().catalogue)
    headers = request_headers()
    return bedrock.message_body(model, body), {**bedrock.message_headers(body, headers), **_client_key(headers)}


def vertex_raw_predict(project: str, location: str, model: str, body: dict[str, Any]) -> Response:
    """rawPredict: the message, or (`"stream": true` in the body) its events."""
    return _vertex_message(model, body, stream=None)


def vertex_stream_raw_predict(project: str, location: str, model: str, body: dict[str, Any]) -> Response:
    """streamRawPredict: the message's events."""
    return _vertex_message(model, body, stream=True)


def _vertex_message(model: str, body: dict[str, Any], *, stream: bool | None) -> Response:
    message_body = vertex.message_body(vertex.model_name(model, rules().catalogue), body, stream=stream)
    return answered(checked(message_body, _vertex_headers(body), counting=False))


def vertex_count_tokens(project: str, location: str, body: dict[str, Any]) -> Response:
    """count-tokens:rawPredict: the count, the model named in the body."""
    message_body = vertex.message_body(vertex.model_name(body["model"], rules().catalogue), body)
    return json_response(backend().count_tokens(checked(message_body, _vertex_headers(body), counting=True)))


def _vertex_headers(body: Mapping[str, Any]) -> dict[str, str]:
    headers = request_headers()
    return {**vertex.message_headers(body, headers), **_client_key(headers)}


def chat_completions(body: dict[str, Any]) -> Response:
    """A chat completion, whole or as chunks."""
    headers = request_headers()
    request = checked(
        openai.message_body(body), {**openai.message_headers(headers), **_client_key(headers)}, counting=False
    )
    created = int(time.time())
    if request.body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        framing = openai.ChunkFraming(created, include_usage=include_usage, functions=openai.uses_functions(body))
        return stream_response(backend().stream_message(request), framing)
    reply = backend().create_message(request)
    completion = openai.completion(reply.body, created, functions=openai.uses_functions(body))
    return json_response(Reply(completion, reply.headers))


def _client_key(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's key as the first-party API takes it, if it sent one (request_headers has left out an AWS
    signature and Foundry's key header)."""
    return {name: headers[name] for name in ("x-api-key", "authorization") if name in headers}


def _id() -> str:
    return request_id() or ""
