"""The official TypeScript SDK (pinned in tests/node/package.json) against a real server, under Node.

tests/node/sdk_calls.mjs makes the everyday calls — create, stream,
countTokens, a forced tool, and one through the beta client — and prints
what came back as JSON; this test runs it against the suite's echo server
and checks each answer. The server checks its replies against openapi.yaml
(UNDERSTUDY_VALIDATE_RESPONSES), and the SDK parses them as its types.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import API_KEY
from node_clients import NODE_DIR, offline_env, run_node_script

pytestmark = pytest.mark.usefixtures("node_clients")


def test_create_stream_count_and_a_tool_as_claude_opus_5_5_answers(server, tmp_path: Path) -> None:
    results = run_node_script(NODE_DIR / "sdk_calls.mjs", offline_env(server.base_url, API_KEY, tmp_path))

    # Claude Opus 5.5 thinks when the request says nothing, its thinking omitted: an empty text and a signature.
    created = results["created"]
    assert created["id"].startswith("msg_") and created["stop_reason"] == "end_turn"
    assert created["blocks"] == ["thinking", "text"] and created["thinking"] == "" and created["signed"]
    assert created["text"] == "Hello from TypeScript"
    # Claude Opus 5.5 counts by the newer tokenizer: Hello · from · TypeS · cript.
    assert created["usage"]["input_tokens"] == 4 and created["usage"]["output_tokens"] > 4

    streamed = results["streamed"]
    assert streamed["text"] == streamed["final_text"] == "Streamed from TypeScript"
    assert streamed["stop_reason"] == "end_turn"

    assert results["counted"] == {"input_tokens": 4}

    assert results["refusedForced"] == {
        "status": 400,
        "message": 'tool_choice: type "tool" and "any" are not supported for this model.',
        "isBadRequest": True,
    }
    called = results["called"]
    assert called["stop_reason"] == "tool_use" and called["name"] == "get_weather"
    assert isinstance(called["input"]["city"], str) and 1 <= called["input"]["days"] <= 7

    assert results["beta"] == {"text": "Hello from the beta client", "stop_reason": "end_turn"}


def test_the_new_error_codes_raise_the_typescript_sdks_own_classes(understudy, tmp_path: Path) -> None:
    errors = [
        {"status": 400, "message": "URL fetching is off", "details": {"error_code": "organization_url_fetch_disabled"}},
        {"status": 503, "message": "Try again in a minute", "details": {"error_code": "storage_not_ready"}},
    ]
    server = understudy([{"replies": [{"error": error} for error in errors]}])
    raised = run_node_script(NODE_DIR / "error_codes.mjs", offline_env(server.base_url, server.api_key, tmp_path))
    assert raised == [
        {
            "status": 400,
            "errorCode": "organization_url_fetch_disabled",
            "organizationUrlFetchDisabled": True,
            "storageNotReady": False,
        },
        {
            "status": 503,
            "errorCode": "storage_not_ready",
            "organizationUrlFetchDisabled": False,
            "storageNotReady": True,
        },
    ]
