"""The doors' codecs (app/doors/) as pure functions, and the spec and catalogue facts they stand on."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from app.doors import bedrock, error_answer, eventstream, openai, vertex
from app.doors.base import DOOR_KEY, SENT_PATH_KEY
from app.doors.mounts import DoorMiddleware
from app.http.sigv4 import SIGV4, signature
from app.spec.loading import load_spec
from backends.catalogue import DEFAULT_FILE, PLATFORMS, ModelCatalogue
from backends.wire import ApiError

CATALOGUE = ModelCatalogue.from_file(DEFAULT_FILE)
SPEC = load_spec()
SCHEMAS = SPEC["components"]["schemas"]


# ------------------------------------------------------------------------------------------------ the spec


@pytest.mark.parametrize(
    ("door_schema", "messages_schema", "left_out", "added"),
    [
        (
            "BedrockInvokeParams",
            "MessageCreateParams",
            {"model", "stream"},
            {"anthropic_version", "anthropic_beta"},
        ),
        (
            "BedrockInvokeParams20230601",
            "MessageCreateParams20230601",
            {"model", "stream"},
            {"anthropic_version", "anthropic_beta"},
        ),
        ("VertexRawPredictParams", "MessageCreateParams", {"model"}, {"anthropic_version"}),
        ("VertexCountTokensParams", "MessageCountTokensParams", set(), {"anthropic_version"}),
    ],
)
def test_a_door_body_is_the_messages_body_less_what_it_lacks_plus_its_own(
    door_schema: str, messages_schema: str, left_out: set[str], added: set[str]
) -> None:
    door, messages = SCHEMAS[door_schema], SCHEMAS[messages_schema]
    assert set(door["properties"]) == set(messages["properties"]) - left_out | added
    assert door["additionalProperties"] is False and "anthropic_version" in door["required"]
    assert all(
        door["properties"][name] == messages["properties"][name] for name in set(messages["properties"]) - left_out
    )


def test_every_door_operation_names_its_door_and_its_handler() -> None:
    doors = {
        operation["x-understudy-door"]
        for operations in SPEC["paths"].values()
        for operation in operations.values()
        if "x-understudy-door" in operation
    }
    assert doors == {"bedrock", "vertex", "openai"}


# ------------------------------------------------------------------------------------------------ the catalogue


def test_every_model_has_its_cloud_names_and_each_resolves_to_it() -> None:
    for model in CATALOGUE.models:
        entry = CATALOGUE.model(model["id"])
        assert {"bedrock", "vertex"} <= set(entry.platform_ids), model["id"]
        for platform, name in entry.platform_ids.items():
            assert platform in PLATFORMS and CATALOGUE.find_on(platform, name) is entry


def test_a_platform_id_given_twice_is_a_mistake() -> None:
    twice = [
        {"id": "a", "display_name": "A", "created_at": "2026-01-01T00:00:00Z", "platform_ids": {"vertex": "x"}},
        {"id": "b", "display_name": "B", "created_at": "2026-01-01T00:00:00Z", "platform_ids": {"vertex": "x"}},
    ]
    with pytest.raises(ValueError, match="vertex ids must be unique"):
        ModelCatalogue(twice)


# ------------------------------------------------------------------------------------------------ Bedrock


@pytest.mark.parametrize(
    "model_id",
    [
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "us-gov.anthropic.claude-haiku-4-5-20251001-v1:0",
        "global.anthropic.claude-haiku-4-5-20251001-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0",
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-haiku-4-5-20251001-v1:0",
    ],
)
def test_bedrock_names_resolve_to_the_catalogue_id(model_id: str) -> None:
    assert bedrock.model_name(model_id, CATALOGUE) == "claude-haiku-4-5-20251001"


@pytest.mark.parametrize(
    "model_id",
    ["claude-haiku-4-5", "eu.claude-haiku-4-5", "arn:aws:bedrock:us-east-1:1:application-inference-profile/abc"],
)
def test_a_name_bedrock_does_not_give_is_passed_on_as_given(model_id: str) -> None:
    assert bedrock.model_name(model_id, CATALOGUE) == model_id


def test_an_invoke_body_becomes_a_messages_request() -> None:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["b1", "b2"],
        "user_profile_id": "up_1",
        "max_tokens": 8,
        "messages": [],
    }
    assert bedrock.message_body("claude-x", body) == {
        "model": "claude-x",
        "user_profile_id": "up_1",
        "max_tokens": 8,
        "messages": [],
    }
    assert bedrock.message_headers(body, {"anthropic-beta": "b2, b3"}) == {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "b1,b2,b3",
    }


@pytest.mark.parametrize(
    ("status", "exception", "sent"),
    [
        (400, "ValidationException", 400),
        (401, "UnrecognizedClientException", 403),
        (404, "ResourceNotFoundException", 404),
        (413, "ValidationException", 400),
        (429, "ThrottlingException", 429),
        (500, "InternalServerException", 500),
        (529, "ServiceUnavailableException", 503),
        (502, "InternalServerException", 500),
    ],
)
def test_a_bedrock_error_names_its_exception(status: int, exception: str, sent: int) -> None:
    answer = error_answer("bedrock", ApiError(status, "why", headers={"retry-after": "3"}), "req_1")
    assert answer.status == sent and json.loads(answer.body) == {"message": "why"}
    assert answer.headers["x-amzn-ErrorType"].split(":")[0] == exception
    assert answer.headers["retry-after"] == "3" and answer.headers["x-amzn-RequestId"] == "req_1"


def decoded(frames: bytes) -> list[dict[str, Any]]:
    """Event-stream messages as botocore reads them: it checks both checksums of each."""
    buffer = EventStreamBuffer()
    buffer.add_data(frames)
    return [{"headers": message.headers, "payload": message.payload} for message in buffer]


def test_bedrock_chunks_are_event_stream_messages_botocore_reads() -> None:
    framing = bedrock.EventStreamFraming("req_1")
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 7}}},
        {"type": "ping"},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]
    messages = decoded(b"".join(framing.event(event) for event in events))
    assert [message["headers"][":event-type"] for message in messages] == ["chunk"] * 3  # no ping
    payloads = [json.loads(base64.b64decode(json.loads(message["payload"])["bytes"])) for message in messages]
    assert payloads[0] == events[0]
    metrics = payloads[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["inputTokenCount"] == 7 and metrics["outputTokenCount"] == 3


def test_a_bedrock_stream_fails_with_an_exception_message() -> None:
    (message,) = decoded(bedrock.EventStreamFraming("req_1").error(ApiError(529, "Overloaded"), "req_1"))
    assert message["headers"][":message-type"] == "exception"
    assert message["headers"][":exception-type"] == "serviceUnavailableException"
    assert json.loads(message["payload"]) == {"message": "Overloaded"}


def test_an_event_stream_message_with_a_long_header_value_and_no_payload() -> None:
    (message,) = decoded(eventstream.message({"name": "é" * 1000}, b""))
    assert message == {"headers": {"name": "é" * 1000}, "payload": b""}


# ------------------------------------------------------------------------------------------------ Vertex AI


def test_vertex_names_resolve_and_its_body_becomes_a_messages_request() -> None:
    assert vertex.model_name("claude-haiku-4-5@20251001", CATALOGUE) == "claude-haiku-4-5-20251001"
    assert vertex.model_name("claude-opus-5-5", CATALOGUE) == "claude-opus-5-5"
    body = {"anthropic_version": "vertex-2023-10-16", "model": "claude-haiku-4-5@20251001", "messages": []}
    assert vertex.message_body("claude-haiku-4-5-20251001", body, stream=True) == {
        "model": "claude-haiku-4-5-20251001",
        "messages": [],
        "stream": True,
    }
    assert vertex.message_headers(body, {"anthropic-beta": "b1", "x-other": "y"}) == {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "b1",
    }


@pytest.mark.parametrize(
    ("status", "google_status"), [(401, "UNAUTHENTICATED"), (404, "NOT_FOUND"), (429, "RESOURCE_EXHAUSTED")]
)
def test_vertex_answers_what_googles_front_end_refuses_in_googles_shape(status: int, google_status: str) -> None:
    body = json.loads(error_answer("vertex", ApiError(status, "why"), "req_1").body)
    assert body["error"]["code"] == status and body["error"]["status"] == google_status


def test_vertex_passes_claudes_own_errors_on_in_the_messages_shape() -> None:
    body = json.loads(error_answer("vertex", ApiError(400, "messages: Field required"), "req_1").body)
    assert body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "messages: Field required"},
        "request_id": "req_1",
    }


# ------------------------------------------------------------------------------------------------ OpenAI


def test_a_chat_completion_becomes_a_messages_request() -> None:
    body = {
        "model": "claude-haiku-4-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
                    {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "one"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "two"}]},
        ],
        "max_completion_tokens": 50,
        "temperature": 1.7,
        "stop": ["  ", "END"],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "seed": 7,
        "response_format": {"type": "json_object"},
    }
    assert openai.message_body(body) == {
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
        "system": "Be brief.\nBe kind.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                    {"type": "tool_use", "id": "call_2", "name": "f", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "two"},
                ],
            },
        ],
        "temperature": 1.0,
        "stop_sequences": ["END"],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"role": "system", "content": "x"}, "messages: at least one message besides system and developer messages"),
        (
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
            },
            "messages.0.tool_calls: function.arguments must be a JSON object",
        ),
    ],
)
def test_what_a_chat_completion_cannot_mean_is_a_400(message: dict[str, Any], error: str) -> None:
    with pytest.raises(ApiError, match=error.replace(".", r"\.")):
        openai.message_body({"model": "m", "messages": [message]})


MESSAGE = {
    "id": "msg_1",
    "model": "claude-haiku-4-5",
    "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 3},
}


def test_a_message_becomes_a_chat_completion() -> None:
    completion = openai.completion(MESSAGE, created=1)
    (choice,) = completion["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Let me look."
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]
    assert completion["usage"] == {"prompt_tokens": 15, "completion_tokens": 3, "total_tokens": 18}


def test_a_stream_becomes_chunks_ending_in_done() -> None:
    framing = openai.ChunkFraming(1, include_usage=True)
    events = [
        {"type": "message_start", "message": {**MESSAGE, "content": [], "usage": {"input_tokens": 10}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        },
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a"'}},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    ]
    sent = b"".join(framing.event(event) for event in events) + framing.end()
    frames = [frame.removeprefix(b"data: ") for frame in sent.split(b"\n\n") if frame]
    assert frames[-1] == b"[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks[:-1]]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {"tool_calls": [{"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 4,
        "total_tokens": 14,
    }


def test_an_openai_error_has_openais_shape() -> None:
    message = "n: Input should be less than or equal to 1"
    answer = error_answer("openai", ApiError(400, message), "req_1")
    assert json.loads(answer.body) == {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }


# ------------------------------------------------------------------------------------------------ mounts


def routed(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {"type": "http", "path": path, "raw_path": path.encode(), "headers": headers or []}
    asyncio.run(DoorMiddleware(app, spec=SPEC)(scope, None, None))  # type: ignore[arg-type]
    return seen


@pytest.mark.parametrize(
    ("path", "headers", "door", "routed_as"),
    [
        ("/v1/messages", [], "anthropic", "/v1/messages"),
        ("/v1/messages", [(b"authorization", b"AWS4-HMAC-SHA256 Credential=x")], "aws", "/v1/messages"),
        ("/anthropic/v1/messages", [], "mantle", "/v1/messages"),
        ("/anthropic/v1/messages", [(b"api-key", b"k")], "foundry", "/v1/messages"),
        ("/v1/projects/p/locations/global/workspaces/w/invoke/v1/models", [], "google-cloud", "/v1/models"),
        ("/model/arn:aws:bedrock:x:1:inference-profile/y/invoke", [], "bedrock", None),
        ("/v1/projects/p/locations/l/publishers/anthropic/models/m:rawPredict", [], "vertex", None),
        ("/v1/chat/completions", [], "openai", None),
        ("/anthropicx/v1/messages", [], "anthropic", None),
    ],
)
def test_each_request_is_given_its_door(path: str, headers: list[Any], door: str, routed_as: str | None) -> None:
    scope = routed(path, headers)
    assert scope[DOOR_KEY] == door and scope["path"] == (routed_as or path)
    if routed_as is not None and routed_as != path:
        assert scope["raw_path"] == routed_as.encode() and scope[SENT_PATH_KEY] == path.encode()


# ------------------------------------------------------------------------------------------------ signatures


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/model/arn:aws:bedrock:us-east-1:1:inference-profile%2Fus.anthropic.claude-x-v1:0/invoke", ""),
        ("/v1/models", "limit=3&after_id=claude-opus-5"),
    ],
)
def test_a_signature_is_made_as_botocore_makes_it(path: str, query: str) -> None:
    url = f"http://127.0.0.1:8000{path}" + (f"?{query}" if query else "")
    body = b'{"max_tokens": 8}'
    request = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(Credentials("AKID", "secret"), "bedrock", "us-east-1").add_auth(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers["host"] = "127.0.0.1:8000"
    scope = {"method": "POST", "raw_path": path.encode(), "path": path, "query_string": query.encode()}
    signed = SIGV4.fullmatch(headers["authorization"])
    assert signed is not None
    payload = hashlib.sha256(body).hexdigest()
    assert signature(scope, headers, signed, "secret", payload) == signed["signature"]
