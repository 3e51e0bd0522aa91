"""The Python SDK's platform clients, each built for a server as a user of its cloud builds one (the doors' tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anthropic import (
    AnthropicAWS,
    AnthropicBedrock,
    AnthropicBedrockMantle,
    AnthropicFoundry,
    AnthropicGoogleCloud,
    AnthropicVertex,
    AsyncAnthropicAWS,
    AsyncAnthropicBedrock,
    AsyncAnthropicBedrockMantle,
    AsyncAnthropicFoundry,
    AsyncAnthropicGoogleCloud,
    AsyncAnthropicVertex,
)

#: The environment variables the clients read keys and regions from first, which a test must clear.
AMBIENT = ("AWS_BEARER_TOKEN_BEDROCK", "ANTHROPIC_AWS_API_KEY", "AWS_PROFILE", "AWS_REGION", "CLOUD_ML_REGION")

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@dataclass(frozen=True)
class Door:
    """A platform client class pair, how to build one for a server, and the model as that platform names it."""

    name: str
    sync: Callable[..., Any]
    asynchronous: Callable[..., Any]
    arguments: Callable[[str, str], dict[str, Any]]
    model: str
    #: The catalogue's id the reply names.
    model_id: str = "claude-haiku-4-5-20251001"


def aws_keys(key: str) -> dict[str, Any]:
    return {"aws_access_key": key, "aws_secret_key": SECRET, "aws_region": "us-east-1"}


DOORS = [
    Door(
        "bedrock (SigV4)",
        AnthropicBedrock,
        AsyncAnthropicBedrock,
        lambda url, key: {"base_url": url, **aws_keys(key)},
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    Door(
        "bedrock (API key)",
        AnthropicBedrock,
        AsyncAnthropicBedrock,
        lambda url, key: {"base_url": url, "api_key": key, "aws_region": "eu-west-1"},
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    Door(
        "mantle",
        AnthropicBedrockMantle,
        AsyncAnthropicBedrockMantle,
        lambda url, key: {"base_url": f"{url}/anthropic", **aws_keys(key)},
        "anthropic.claude-haiku-4-5",
    ),
    Door(
        "vertex",
        AnthropicVertex,
        AsyncAnthropicVertex,
        lambda url, key: {"base_url": f"{url}/v1", "region": "us-east5", "project_id": "p", "access_token": key},
        "claude-haiku-4-5@20251001",
    ),
    Door(
        "foundry",
        AnthropicFoundry,
        AsyncAnthropicFoundry,
        lambda url, key: {"base_url": f"{url}/anthropic/", "api_key": key},
        "claude-haiku-4-5",
        "claude-haiku-4-5",  # a deployment name is the model's as given
    ),
    Door(
        "aws",
        AnthropicAWS,
        AsyncAnthropicAWS,
        lambda url, key: {"base_url": url, "workspace_id": "wrkspc_1", **aws_keys(key)},
        "claude-haiku-4-5-20251001",
    ),
    Door(
        "google-cloud",
        AnthropicGoogleCloud,
        AsyncAnthropicGoogleCloud,
        lambda url, key: {
            "base_url": f"{url}/v1/projects/p/locations/global/workspaces/wrkspc_1/invoke",
            "token_provider": lambda: key,
        },
        "claude-haiku-4-5-20251001",
    ),
]
IDS = [door.name for door in DOORS]
