"""The TypeScript platform packages and the openai SDK for Node, each through its own door, against a real server.

tests/node/platform_calls.mjs builds each client as a user of that cloud would, given this server as its
`baseURL` (@anthropic-ai/bedrock-sdk's AnthropicBedrock, signing and with an API key, and AnthropicBedrockMantle;
vertex-sdk; foundry-sdk; aws-sdk; google-cloud-sdk), and makes the same calls with each: create, stream, a forced
tool, and a 400 raised as the SDK's BadRequestError; then the openai SDK's chat completions, whole, chunked and with
a tool. The server checks its JSON answers against the spec (UNDERSTUDY_VALIDATE_RESPONSES).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import API_KEY
from node_clients import NODE_DIR, offline_env, run_node_script

pytestmark = pytest.mark.usefixtures("node_clients")

#: The model each door's reply names: the catalogue's id where the door named the model its own way.
MODELS = {
    "bedrock (SigV4)": "claude-haiku-4-5-20251001",
    "bedrock (API key)": "claude-haiku-4-5-20251001",
    "mantle": "claude-haiku-4-5-20251001",
    "vertex": "claude-haiku-4-5-20251001",
    "foundry": "claude-haiku-4-5",
    "aws": "claude-haiku-4-5",
    "google-cloud": "claude-haiku-4-5",
}


def test_every_typescript_platform_client_and_the_openai_sdk(server, tmp_path: Path) -> None:
    env = {
        **offline_env(server.base_url, API_KEY, tmp_path),
        "UNDERSTUDY_BASE_URL": server.base_url,
        "UNDERSTUDY_API_KEY": API_KEY,
    }
    results = run_node_script(NODE_DIR / "platform_calls.mjs", env)

    for door, model in MODELS.items():
        assert results[door] == {
            "text": f"Hello from {door}",
            "model": model,
            "streamed": "streamed words",
            "finalStop": "end_turn",
            "tool": "get_weather",
            "toolStop": "tool_use",
            "refused": {"status": 400, "class": "BadRequestError"},
        }, door

    assert results["openai"] == {
        "text": "Hello from openai",
        "finish": "stop",
        "chunks": "chunked words",
        "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
        "toolCall": "get_weather",
        "toolFinish": "tool_calls",
        "refused": {"status": 400, "class": "BadRequestError", "message": "n: Input should be less than or equal to 1"},
    }
