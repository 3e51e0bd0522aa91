"""Every door the Python SDK knows, through its own client class, against a real server.

`AnthropicBedrock` (InvokeModel, its streams in AWS's event-stream framing, decoded by botocore),
`AnthropicBedrockMantle`, `AnthropicVertex`, `AnthropicFoundry`, `AnthropicAWS` and `AnthropicGoogleCloud`,
each sync and async, each given this server as its `base_url`, as a user of that cloud would: create, stream,
a forced tool, and a 4xx raised as the SDK's own error class. Then what each door does its own way: Bedrock's
model ids and headers, its errors before and after a stream has begun, AWS signatures; Vertex AI's model ids
and count-tokens; the scripted backend's `door` match and a 529 retried at every door.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic import (
    AnthropicAWS,
    AnthropicBedrock,
    AnthropicBedrockMantle,
    AnthropicVertex,
)
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from door_clients import AMBIENT, DOORS, IDS, SECRET, Door, aws_keys

from app.launcher.server_process import ServerProcess

from builders import API_KEY, weather_tool


@pytest.fixture(autouse=True)
def no_ambient_cloud_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients read keys and regions from the environment first: none of the machine's may leak in."""
    for name in AMBIENT:
        monkeypatch.delenv(name, raising=False)


def ask(door: Door, client: Any, text: str, **fields: Any) -> Any:
    return client.messages.create(
        model=door.model, max_tokens=64, messages=[{"role": "user", "content": text}], **fields
    )


@pytest.mark.parametrize("door", DOORS, ids=IDS)
def test_create_stream_a_forced_tool_and_a_refusal_through_each_door(server, door: Door) -> None:
    client = door.sync(**door.arguments(server.base_url, API_KEY), max_retries=0)

    created = ask(door, client, f"Hello from {door.name}")
    assert created.content[0].text == f"Hello from {door.name}" and created.model == door.model_id
    assert created.stop_reason == "end_turn" and created.usage.input_tokens > 0

    with client.messages.stream(
        model=door.model, max_tokens=64, messages=[{"role": "user", "content": "streamed words"}]
    ) as stream:
        assert "".join(stream.text_stream) == "streamed words"
        assert stream.get_final_message().stop_reason == "end_turn"

    called = ask(
        door, client, "Weather in Paris?", tools=[weather_tool()], tool_choice={"type": "tool", "name": "get_weather"}
    )
    assert called.stop_reason == "tool_use" and called.content[-1].name == "get_weather"

    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model=door.model, max_tokens=64, messages=[])
    assert "messages: List should have at least 1 item" in str(refused.value)


@pytest.mark.parametrize("door", DOORS, ids=IDS)
def test_the_async_clients_too(server, door: Door) -> None:
    async def calls() -> tuple[str, str]:
        async with door.asynchronous(**door.arguments(server.base_url, API_KEY), max_retries=0) as client:
            created = await client.messages.create(
                model=door.model, max_tokens=64, messages=[{"role": "user", "content": "async hello"}]
            )
            async with client.messages.stream(
                model=door.model, max_tokens=64, messages=[{"role": "user", "content": "async stream"}]
            ) as stream:
                streamed = await stream.get_final_text()
            return created.content[0].text, streamed

    assert asyncio.run(calls()) == ("async hello", "async stream")


@pytest.mark.parametrize("door", DOORS, ids=IDS)
def test_a_key_the_server_does_not_take_is_refused_as_the_platform_refuses_it(server, door: Door) -> None:
    client = door.sync(**door.arguments(server.base_url, "not-a-key-of-this-server"), max_retries=0)
    # Bedrock answers a credential it does not know with a 403 (UnrecognizedClientException); the others a 401.
    raised = anthropic.PermissionDeniedError if door.sync is AnthropicBedrock else anthropic.AuthenticationError
    with pytest.raises(raised):
        ask(door, client, "hello")


# ------------------------------------------------------------------------------------------------ Bedrock


@pytest.fixture
def bedrock(server) -> Iterator[AnthropicBedrock]:
    with AnthropicBedrock(base_url=server.base_url, max_retries=0, **aws_keys(API_KEY)) as client:
        yield client


@pytest.mark.parametrize(
    "model_id",
    [
        "anthropic.claude-opus-5-5",
        "global.anthropic.claude-opus-5-5",
        "jp.anthropic.claude-opus-5-5",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-5-5",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-opus-5-5",
    ],
)
def test_bedrock_model_ids_resolve_through_the_catalogue_and_its_rules_apply(bedrock, model_id: str) -> None:
    created = bedrock.messages.create(model=model_id, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert created.model == "claude-opus-5-5"
    # Claude Opus 5.5 thinks when the request says nothing (its defaults), and refuses a forced tool (its rules).
    assert [block.type for block in created.content] == ["thinking", "text"]
    with pytest.raises(anthropic.BadRequestError) as refused:
        bedrock.messages.create(
            model=model_id,
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            tools=[weather_tool()],
            tool_choice={"type": "any"},
        )
    assert refused.value.response.json() == {
        "message": 'tool_choice: type "tool" and "any" are not supported for this model.'
    }


def test_a_bedrock_error_has_bedrocks_shape_and_headers(server, bedrock) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        bedrock.messages.create(model="anthropic.claude-haiku-4-5-20251001-v1:0", max_tokens=0.5, messages=[])  # type: ignore[arg-type]
    response = refused.value.response
    assert response.headers["x-amzn-errortype"].startswith("ValidationException:")
    assert response.headers["x-amzn-requestid"] == response.headers["request-id"]
    assert list(response.json()) == ["message"]

    # Under its version's schema: 2026-10-21 took temperature out of the Messages body, Bedrock's own version did not.
    body = {"anthropic_version": "2026-10-21", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    url = f"{server.base_url}/model/anthropic.claude-haiku-4-5-20251001-v1:0/invoke"
    headers = {"authorization": f"Bearer {API_KEY}"}
    newest = httpx2.post(url, json={**body, "temperature": 0.5}, headers=headers)
    assert newest.status_code == 400 and newest.json() == {"message": "temperature: Extra inputs are not permitted"}
    oldest = httpx2.post(
        url, json={**body, "temperature": 0.5, "anthropic_version": "bedrock-2023-05-31"}, headers=headers
    )
    assert oldest.status_code == 200 and oldest.headers["x-amzn-bedrock-input-token-count"] == "1"
    unversioned = httpx2.post(
        url, json={key: value for key, value in body.items() if key != "anthropic_version"}, headers=headers
    )
    assert unversioned.status_code == 400 and unversioned.json() == {"message": "anthropic_version: Field required"}


def test_a_bedrock_stream_is_event_stream_frames_ending_with_invocation_metrics(server, bedrock) -> None:
    raw = bedrock.messages.with_raw_response.create(
        model="anthropic.claude-haiku-4-5-20251001-v1:0",
        max_tokens=64,
        messages=[{"role": "user", "content": "count me"}],
        stream=True,
    )
    assert raw.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert raw.headers["x-amzn-bedrock-content-type"] == "application/json"
    events = [event.to_dict() for event in raw.parse()]
    assert [event["type"] for event in events][:2] == ["message_start", "content_block_start"]
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert events[-1]["type"] == "message_stop" and metrics["inputTokenCount"] == 2
    assert metrics["outputTokenCount"] == events[-2]["usage"]["output_tokens"] > 0


def test_a_failure_after_a_bedrock_stream_began_is_an_exception_message(understudy) -> None:
    error = {"status": 429, "type": "rate_limit_error", "message": "Slow down"}
    server = understudy(
        [{"reply": {"text": "a b c d", "fault": {"kind": "error_event", "after_events": 4, "error": error}}}]
    )
    with AnthropicBedrock(base_url=server.base_url, max_retries=0, api_key="k", aws_region="us-east-1") as client:
        stream = client.messages.create(
            model="anthropic.claude-haiku-4-5-20251001-v1:0",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
        seen = []
        with pytest.raises(anthropic.APIStatusError) as failed:
            for event in stream:
                seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta"]  # the ping is not Bedrock's
    assert failed.value.body == {"type": "error", "error": {"type": "throttlingException", "message": "Slow down"}}


def test_bedrock_signatures_are_checked_for_form(server) -> None:
    url = f"{server.base_url}/model/anthropic.claude-haiku-4-5-20251001-v1:0/invoke"
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    malformed = httpx2.post(url, json=body, headers={"authorization": "AWS4-HMAC-SHA256 Credential=nonsense"})
    assert malformed.status_code == 403 and malformed.headers["x-amzn-errortype"].startswith("UnrecognizedClient")
    missing = httpx2.post(url, json=body)
    assert missing.status_code == 403 and "x-amzn-errortype" in missing.headers


# ------------------------------------------------------------------------------------------------ Vertex AI


def test_vertex_counts_tokens_and_answers_googles_shape_for_a_model_it_lacks(server) -> None:
    with AnthropicVertex(
        base_url=f"{server.base_url}/v1", region="global", project_id="p", access_token=API_KEY, max_retries=0
    ) as client:
        counted = client.messages.count_tokens(
            model="claude-opus-5-5", messages=[{"role": "user", "content": "Count these four words"}]
        )
        assert counted.input_tokens == 4
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.messages.create(
                model="claude-nonesuch@20990101", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
    assert missing.value.response.json()["error"]["status"] == "NOT_FOUND"


# ------------------------------------------------------------------------------------------------ every door, scripted


def test_a_scripted_rule_matches_the_door_and_a_529_is_retried_at_each(understudy) -> None:
    server = understudy(
        [
            {"match": {"door": "bedrock"}, "reply": {"text": "hello, Bedrock"}},
            {"match": {"door": "vertex"}, "reply": {"text": "hello, Vertex"}},
            {
                "match": {"door": {"regex": "^(mantle|foundry|aws|google-cloud)$"}},
                "replies": [{"error": {"status": 529, "message": "Overloaded"}}, {"text": "after a retry"}],
                "when_exhausted": "cycle",
            },
        ]
    )
    answers = {}
    for door in DOORS:
        with door.sync(**door.arguments(server.base_url, server.api_key), max_retries=1) as client:
            answers[door.name] = ask(door, client, "hi").content[0].text
    assert answers == {
        "bedrock (SigV4)": "hello, Bedrock",
        "bedrock (API key)": "hello, Bedrock",
        "mantle": "after a retry",
        "vertex": "hello, Vertex",
        "foundry": "after a retry",
        "aws": "after a retry",
        "google-cloud": "after a retry",
    }
    journal = server.journal()
    paths = [entry["path"] for entry in journal]
    assert "/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke" in paths
    assert (
        "/anthropic/v1/messages" in paths
        and "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5@20251001:rawPredict"
        in paths
    )


def test_a_key_or_signature_presented_at_a_door_is_not_journaled(understudy) -> None:
    server = understudy([{"reply": {"text": "ok"}}])
    secret_key = "secret-bedrock-key-" + base64.b16encode(b"xyz").decode()
    with AnthropicBedrock(
        base_url=server.base_url, api_key=secret_key, aws_region="us-east-1", max_retries=0
    ) as client:
        client.messages.create(
            model="anthropic.claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    with AnthropicBedrock(base_url=server.base_url, max_retries=0, **aws_keys("AKIDSECRETSIGNER")) as client:
        client.messages.create(
            model="anthropic.claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    recorded = repr(server.journal())
    assert secret_key not in recorded and "Signature=" not in recorded


# ------------------------------------------------------------------------------------------------ signatures


@pytest.fixture(scope="module")
def verifying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that knows one AWS secret and verifies every signature made with it."""
    env = {"UNDERSTUDY_AWS_CREDENTIALS": f"AKIDUNDERSTUDY:{SECRET}", "UNDERSTUDY_API_KEYS": API_KEY}
    with ServerProcess(env) as running:
        yield running


@pytest.mark.parametrize(
    ("client_class", "suffix", "model"),
    [
        (AnthropicBedrock, "", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        (
            AnthropicBedrock,
            "",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0",
        ),
        (AnthropicBedrockMantle, "/anthropic", "anthropic.claude-haiku-4-5"),
        (AnthropicAWS, "", "claude-haiku-4-5"),
    ],
)
def test_with_credentials_configured_signatures_are_verified(verifying, client_class, suffix: str, model: str) -> None:
    extra = {"workspace_id": "wrkspc_1"} if client_class is AnthropicAWS else {}

    def client(secret: str) -> Any:
        keys = {"aws_access_key": "AKIDUNDERSTUDY", "aws_secret_key": secret, "aws_region": "us-west-2"}
        return client_class(base_url=verifying.base_url + suffix, max_retries=0, **keys, **extra)

    messages = [{"role": "user", "content": "signed, sealed"}]
    with client(SECRET) as signed:
        assert signed.messages.create(model=model, max_tokens=16, messages=messages).content[0].text == "signed, sealed"
        with signed.messages.stream(model=model, max_tokens=16, messages=messages) as stream:
            assert stream.get_final_text() == "signed, sealed"
    refused = anthropic.PermissionDeniedError if client_class is AnthropicBedrock else anthropic.AuthenticationError
    with client("not-the-secret") as forged, pytest.raises(refused, match="signature we calculated does not match"):
        forged.messages.create(model=model, max_tokens=16, messages=messages)


def test_a_signed_get_is_verified_too(verifying) -> None:
    keys = {"aws_access_key": "AKIDUNDERSTUDY", "aws_region": "us-west-2", "workspace_id": "wrkspc_1"}
    with AnthropicAWS(base_url=verifying.base_url, aws_secret_key=SECRET, max_retries=0, **keys) as signed:
        assert signed.models.retrieve("claude-opus-5-5").id == "claude-opus-5-5"
        assert len(signed.models.list(limit=3).data) == 3
    forged = AnthropicAWS(base_url=verifying.base_url, aws_secret_key="wrong", max_retries=0, **keys)
    with forged, pytest.raises(anthropic.AuthenticationError, match="signature we calculated does not match"):
        forged.models.list()


def test_a_signature_for_another_aws_service_is_refused(server) -> None:
    # The TypeScript Bedrock client sends its count_tokens call to /v1/messages/count_tokens, signed for
    # `bedrock`: Claude Platform on AWS's endpoint, which that path is, takes only `aws-external-anthropic`.
    request = AWSRequest(
        method="POST",
        url=f"{server.base_url}/v1/messages/count_tokens",
        data=b'{"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}',
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
    )
    SigV4Auth(Credentials(API_KEY, SECRET), "bedrock", "us-east-1").add_auth(request)
    refused = httpx2.post(request.url, content=request.body, headers=dict(request.headers))
    assert refused.status_code == 403
    assert (
        refused.json()["error"]["message"]
        == "Credential should be scoped to correct service: 'aws-external-anthropic'."
    )


def test_a_529_then_a_reply_at_every_door(understudy) -> None:
    server = understudy(
        [
            {
                "replies": [{"error": {"status": 529, "message": "Overloaded"}}, {"text": "after a retry"}],
                "when_exhausted": "cycle",
            }
        ]
    )
    for door in DOORS:
        with door.sync(**door.arguments(server.base_url, server.api_key), max_retries=1) as client:
            assert ask(door, client, "hi").content[0].text == "after a retry", door.name
    with openai.OpenAI(api_key=server.api_key, base_url=f"{server.base_url}/v1/", max_retries=1) as chat:
        answer = chat.chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "after a retry"
    # Bedrock sends an overloaded model's 529 as a 503 ServiceUnavailableException; the SDKs retry either.
    overloaded = [503 if door.sync is AnthropicBedrock else 529 for door in DOORS] + [529]
    assert [entry["status"] for entry in server.journal()] == [
        status for first in overloaded for status in (first, 200)
    ]
