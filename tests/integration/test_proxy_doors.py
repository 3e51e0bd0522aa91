"""Every door through the proxy: an app written for a cloud, run against the first-party API through Understudy.

The gateway holds the upstream's key; the upstream is a real Understudy (echo) that takes only that key and
journals what it receives. Whichever door a client comes in by (Bedrock with a signature or a key, Mantle, Vertex
AI, Foundry, Claude Platform on AWS and on Google Cloud, the OpenAI-compatible endpoint), its request goes
upstream as a first-party Messages call and the answer comes back in the door's shape, streams included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import openai
import pytest
from door_clients import AMBIENT, DOORS, IDS, Door

from app.launcher.server_process import ServerProcess

from builders import gateway_env, upstream_env

UPSTREAM_KEY = "sk-upstream-secret-for-doors"
CLIENT_KEY = "client-key-of-the-door-gateway"
ADMIN_KEY = "admin-key-for-door-tests"


@pytest.fixture(autouse=True)
def no_ambient_cloud_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AMBIENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerProcess]:
    with ServerProcess(upstream_env(UPSTREAM_KEY, ADMIN_KEY)) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(upstream: ServerProcess) -> Iterator[ServerProcess]:
    with ServerProcess(gateway_env(upstream.base_url, UPSTREAM_KEY, CLIENT_KEY)) as running:
        yield running


def last_upstream_request(upstream: ServerProcess) -> dict:
    with anthropic.Anthropic(base_url=upstream.base_url, api_key="unused") as client:
        page = client.get(
            "/_understudy/requests?limit=1000",
            cast_to=object,
            options={"headers": {"x-understudy-admin-key": ADMIN_KEY}},
        )
    return page["data"][-1]


@pytest.mark.parametrize("door", DOORS, ids=IDS)
def test_each_door_goes_upstream_as_a_messages_call_and_answers_in_its_shape(upstream, gateway, door: Door) -> None:
    with door.sync(**door.arguments(gateway.base_url, CLIENT_KEY), max_retries=0) as client:
        created = client.messages.create(
            model=door.model, max_tokens=32, messages=[{"role": "user", "content": f"upstream via {door.name}"}]
        )
        assert created.content[0].text == f"upstream via {door.name}"
        sent = last_upstream_request(upstream)
        assert sent["method"] == "POST" and sent["path"] == "/v1/messages"
        assert sent["body"]["model"] == door.model_id and "anthropic_version" not in sent["body"]
        assert sent["headers"]["x-api-key"] == "[masked]" and "x-amz-date" not in sent["headers"]

        with client.messages.stream(
            model=door.model, max_tokens=32, messages=[{"role": "user", "content": "streamed upstream"}]
        ) as stream:
            assert "".join(stream.text_stream) == "streamed upstream"
        assert last_upstream_request(upstream)["body"]["stream"] is True


def test_an_upstream_error_comes_back_in_the_doors_shape(gateway) -> None:
    bedrock = next(door for door in DOORS if door.name == "bedrock (API key)")
    client = bedrock.sync(**bedrock.arguments(gateway.base_url, CLIENT_KEY), max_retries=0)
    with client, pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(
            model="anthropic.claude-nonesuch", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    response = missing.value.response
    assert response.json() == {"message": "model: anthropic.claude-nonesuch"}
    assert response.headers["x-amzn-errortype"].startswith("ResourceNotFoundException:")


def test_the_openai_endpoint_through_the_proxy(upstream, gateway) -> None:
    with openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{gateway.base_url}/v1/", max_retries=0) as client:
        completion = client.chat.completions.create(
            model="claude-haiku-4-5",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "openai upstream"}],
        )
        assert completion.choices[0].message.content == "openai upstream"
        sent = last_upstream_request(upstream)
        assert sent["path"] == "/v1/messages" and sent["body"]["system"] == "Be brief."
        assert sent["headers"]["anthropic-version"] == "2023-06-01"
        chunks = client.chat.completions.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "chunks upstream"}], stream=True
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == "chunks upstream"
    assert json.dumps(sent).count(CLIENT_KEY) == 0
