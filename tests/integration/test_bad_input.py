"""A catalogue of bad input against a real gunicorn server: each gets the right answer, and no worker suffers.

Every case here checks the status and, for answers from Understudy, the API's
error shape ({"type":"error","error":{type,message},"request_id"}, the id the
request-id header's). After every case the server must still be whole: the
same worker processes, no traceback in its log, and a normal request served.

A few requests never reach Understudy: gunicorn's HTTP parser refuses a
header over 8190 bytes, more than 100 headers, an overlong request line or a
repeated Content-Length with a text/plain answer of its own, before there is
a request to answer in the API's shape (see gunicorn.conf.py). Those cases
check gunicorn's answer and, as everywhere, that nothing is left broken.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from app.launcher.server_process import ServerProcess
from app.spec.loading import load_spec
from app.spec.validators import CONTENT_TYPE_MESSAGE, EMPTY_BODY_MESSAGE

from answers import Answer
from builders import API_KEY, message_body

JSON_HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
SPEC = load_spec()


def post(server: ServerProcess, body: bytes | dict, headers: dict | None = None, path: str = "/v1/messages") -> Answer:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("POST", path, body=payload, headers=JSON_HEADERS if headers is None else headers)
        return Answer(connection.getresponse())
    finally:
        connection.close()


def raw(server: ServerProcess, data: bytes, *, timeout: float = 20) -> Answer:
    """Send bytes as they are and read one response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Answer(response)


def request_head(length: int, *extra: str, version: str = "2023-06-01") -> bytes:
    """The head of a POST /v1/messages with a JSON body of `length` bytes, and extra header lines."""
    lines = [
        "POST /v1/messages HTTP/1.1",
        "Host: 127.0.0.1",
        "content-type: application/json",
        f"x-api-key: {API_KEY}",
        f"anthropic-version: {version}",
        f"content-length: {length}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_api_error(answer: Answer, status: int, error_type: str, message: str | None = None) -> dict:
    """`answer` is the API's error object for `status`; the message, when given, starts with `message`."""
    assert answer.status == status, answer.body[:500]
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()
    assert set(error) == {"type", "error", "request_id"} and error["type"] == "error"
    assert error["error"]["type"] == error_type
    assert error["request_id"] == answer.headers["request-id"]
    if message is not None:
        assert error["error"]["message"].startswith(message), error["error"]["message"]
    return error


def assert_serves(server: ServerProcess) -> None:
    answer = post(server, message_body("still here"))
    assert answer.status == 200 and answer.json()["content"][0]["text"] == "still here"


@pytest.fixture(autouse=True)
def unharmed(server: ServerProcess) -> Iterator[None]:
    """After each case: the same workers, no traceback in the log, and a normal request served."""
    workers, logged = server.worker_pids(), len(server.lines)
    yield
    assert server.worker_pids() == workers
    assert_serves(server)
    assert "Traceback" not in "".join(server.lines[logged:])


# ---------------------------------------------------------------------------------------------- the body


NO_CONTENT_TYPE = {key: value for key, value in JSON_HEADERS.items() if key != "content-type"}
GOOD_BODY = json.dumps(message_body()).encode()


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        pytest.param(b'{"model": "claude-sonnet-4-5", "max_tokens": ', None, "Invalid JSON", id="malformed"),
        pytest.param(b"[1, 2", None, "Invalid JSON in request body", id="cut-json"),
        pytest.param(b'{"max_tokens": NaN}', None, "Invalid JSON in request body: NaN", id="nan"),
        pytest.param(b'{"model": "\xff\xfe"}', None, "The request body is not valid utf-8", id="invalid-utf-8"),
        pytest.param(b"", None, EMPTY_BODY_MESSAGE, id="empty"),
        pytest.param(b"   ", None, EMPTY_BODY_MESSAGE, id="blank"),
        pytest.param(b"[]", None, "body: Input should be a valid dictionary", id="a-list"),
        pytest.param(GOOD_BODY, NO_CONTENT_TYPE, CONTENT_TYPE_MESSAGE, id="no-content-type"),
        pytest.param(GOOD_BODY, {**JSON_HEADERS, "content-type": "text/plain"}, CONTENT_TYPE_MESSAGE, id="text-plain"),
        pytest.param(
            b"model=claude", {**JSON_HEADERS, "content-type": "application/x-www-form-urlencoded"}, CONTENT_TYPE_MESSAGE
        ),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(server, body, headers, message):
    assert_api_error(post(server, body, headers), 400, "invalid_request_error", message)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"messages": []}, "messages: List should have at least 1 item", id="no-messages"),
        pytest.param(
            {"messages": [{"role": "assistant", "content": "I start"}, {"role": "user", "content": "Hi"}]},
            'messages: first message must use the "user" role',
            id="assistant-first",
        ),
        pytest.param({"max_tokens": -5}, "max_tokens: Input should be greater than or equal to 0", id="negative"),
        pytest.param({"max_tokens": 1.5}, "max_tokens: Input should be a valid integer", id="max-tokens-float"),
        pytest.param({"max_tokens": 100.0}, "max_tokens: Input should be a valid integer", id="max-tokens-100.0"),
        pytest.param({"max_tokens": "100"}, "max_tokens: Input should be a valid integer", id="max-tokens-string"),
        pytest.param({"max_tokens": True}, "max_tokens: Input should be a valid integer", id="max-tokens-bool"),
        pytest.param({"temperature": 1.5}, "temperature: Input should be less than or equal to 1", id="temperature"),
        pytest.param({"unknown_field": 1}, "unknown_field: Extra inputs are not permitted", id="unknown-field"),
        pytest.param({"Model": "x"}, "Model: Extra inputs are not permitted", id="wrong-case-field"),
        pytest.param(
            {"messages": [{"role": "user", "content": "Hi", "extra": 1}]},
            "messages.0.extra: Extra inputs are not permitted",
            id="unknown-nested-field",
        ),
    ],
)
def test_a_body_that_breaks_the_api_rules_is_a_400_naming_the_field(server, fields, message):
    assert_api_error(post(server, message_body(**fields)), 400, "invalid_request_error", message)


def _after_hello(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Hello"}, *messages]}


def _in_a_user_turn(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(blocks)}]}


TOOL_TAGS = "'tool_reference', 'mcp_tool_reference', 'mcp_toolset_reference'"
#: Today's shapes malformed: the system messages, the beta client's fields and blocks, a block out of its place.
MALFORMED_TODAY = [
    pytest.param(
        {"messages": [{"role": "robot", "content": "Hi"}]},
        "messages.0.role: Input tag 'robot' does not match any of the expected tags: 'user', 'assistant', 'system'",
        id="unknown-role",
    ),
    pytest.param({"messages": [{"content": "Hi"}]}, "messages.0.role: Field required", id="no-role"),
    pytest.param(
        _after_hello({"role": "system", "content": [{"type": "image", "source": {"type": "url", "url": "x"}}]}),
        "messages.1.content.0.type: Input tag 'image' does not match any of the expected tags: "
        "'text', 'tool_addition', 'tool_removal'",
        id="image-in-a-system-message",
    ),
    pytest.param(
        _after_hello({"role": "system", "content": [{"type": "compaction", "content": "summary"}]}),
        "messages.1.content.0.type: Input tag 'compaction' does not match",
        id="compaction-in-a-system-message",
    ),
    pytest.param(_after_hello({"role": "system"}), "messages.1.content: Field required", id="empty-system-message"),
    pytest.param(
        _after_hello({"role": "system", "content": "x", "output_config": {"format": {"type": "json_schema"}}}),
        "messages.1.output_config.format: Extra inputs are not permitted",
        id="format-in-a-system-message",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": "Hi", "output_config": {"effort": "low"}}]},
        "messages.0.output_config: Extra inputs are not permitted",
        id="output-config-in-a-user-turn",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": "Hi", "clear_at": "never"}]},
        "messages.0.clear_at: Extra inputs are not permitted",
        id="clear-at-in-a-user-turn",
    ),
    pytest.param(
        _in_a_user_turn({"type": "text", "text": "", "cache_control": {"type": "ephemeral"}}),
        "messages.0.content.0.text: cache_control cannot be set for empty text blocks",
        id="cache-control-on-empty-text",
    ),
    pytest.param(
        {"system": [{"type": "text", "text": "", "cache_control": {"type": "ephemeral"}}]},
        "system.0.text: cache_control cannot be set for empty text blocks",
        id="cache-control-on-empty-system-text",
    ),
    pytest.param(
        {"context_management": {"edits": [{"type": "clear_everything"}]}},
        "context_management.edits.0.type: Input tag 'clear_everything' does not match any of the expected tags: "
        "'clear_tool_uses_20250919', 'clear_thinking_20251015', 'compact_20260112'",
        id="unknown-edit",
    ),
    pytest.param(
        {"context_management": {"edits": [{"type": "clear_tool_uses_20250919", "trigger": {"type": "seconds"}}]}},
        "context_management.edits.0.trigger.type: Input tag 'seconds' does not match any of the expected tags: "
        "'input_tokens', 'tool_uses'",
        id="unknown-trigger",
    ),
    pytest.param(
        {"context_management": {"edits": [{"type": "compact_20260112", "trigger": {"type": "input_tokens"}}]}},
        "context_management.edits.0.trigger.value: Field required",
        id="trigger-without-value",
    ),
    pytest.param(
        {"context_management": {"edits": []}, "compaction": {"type": "now"}},
        "compaction.type: Input should be 'summarize'",
        id="unknown-compaction",
    ),
    pytest.param(
        _in_a_user_turn({"type": "compaction", "content": ""}),
        "messages.0.content.0.content: String should have at least 1 character",
        id="empty-compaction",
    ),
    pytest.param(
        {"mcp_servers": [{"type": "url", "name": "weather"}]}, "mcp_servers.0.url: Field required", id="mcp-no-url"
    ),
    pytest.param(
        _in_a_user_turn({"type": "mcp_tool_use", "id": "m", "name": "f", "input": {}}),
        "messages.0.content.0.server_name: Field required",
        id="mcp-use-no-server",
    ),
    pytest.param(
        _in_a_user_turn({"type": "tool_removal", "tool": {"type": "tool_definition", "definition": {}}}),
        f"messages.0.content.0.tool.type: Input tag 'tool_definition' does not match any of the expected tags: "
        f"{TOOL_TAGS}",
        id="definition-in-a-removal",
    ),
    pytest.param(
        _in_a_user_turn({"type": "fallback", "from": {"model": "a"}}),
        "messages.0.content.0.to: Field required",
        id="fallback-without-to",
    ),
    pytest.param(
        {"tools": [{"type": "computer_20251124", "name": "computer", "display_height_px": 768}]},
        "tools.0.display_width_px: Field required",
        id="computer-without-width",
    ),
    pytest.param(
        {"tools": [{"type": "advisor_20260301", "name": "advisor"}]}, "tools.0.model: Field required", id="advisor"
    ),
    pytest.param({"fallbacks": "sometimes"}, "fallbacks: Input should be 'default'", id="fallbacks-word"),
    pytest.param(
        {"fallbacks": [{"model": "m", "thinking": {"type": "sometimes"}}]},
        "fallbacks.0.thinking.type: Input tag 'sometimes' does not match any of the expected tags: "
        "'enabled', 'disabled', 'between_tools', 'adaptive'",
        id="fallback-thinking",
    ),
    pytest.param(
        {"fallback_credit_token": 5},
        "fallback_credit_token: Input should be a valid string or dictionary",
        id="credit-token-number",
    ),
    pytest.param(
        {"fallback_credit_token": {"token": "t", "mode": "strict"}},
        "fallback_credit_token: Input should be a valid string",
        id="credit-token-object-without-its-beta",
    ),
    pytest.param({"thread": {"type": "continue"}}, "thread.previous_message_id: Field required", id="thread"),
    pytest.param(
        {"thinking": {"type": "adaptive", "display": "loud"}},
        "thinking.display: Input should be 'summarized', 'omitted' or 'updates'",
        id="thinking-display",
    ),
    pytest.param(
        {"thinking": {"type": "adaptive", "block_binding": {"prefix_mismatch_behavior": "ignore"}}},
        "thinking.block_binding.prefix_mismatch_behavior: Input should be 'error' or 'drop_block'",
        id="block-binding",
    ),
    pytest.param(
        {"output_config": {"task_budget": {"type": "tokens"}}},
        "output_config.task_budget.total: Field required",
        id="task-budget",
    ),
    pytest.param(
        _in_a_user_turn(
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}, "citations": 1}
        ),
        "messages.0.content.0.citations: Input should be a valid dictionary",
        id="citations-not-an-object",
    ),
    pytest.param(
        _in_a_user_turn(
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                "citations": {"enabled": "yes"},
            }
        ),
        "messages.0.content.0.citations.enabled: Input should be a valid boolean",
        id="citations-enabled-not-a-boolean",
    ),
]


@pytest.mark.parametrize(("fields", "message"), MALFORMED_TODAY)
def test_today_s_shapes_malformed_are_400s_in_the_api_s_words(server, fields, message):
    assert_api_error(post(server, message_body(**fields)), 400, "invalid_request_error", message)


@pytest.mark.parametrize("max_tokens", [64_001, 10**12, 2**63, 10**30])
def test_a_max_tokens_over_the_models_maximum_is_the_apis_400(server, max_tokens):
    # The spec sets no maximum (the models differ); the echo backend refuses more than the model's, as the API does.
    answer = post(server, message_body("Hello", max_tokens=max_tokens))
    assert_api_error(
        answer,
        400,
        "invalid_request_error",
        f"max_tokens: {max_tokens} > 64000, which is the maximum allowed number of output tokens for "
        "claude-sonnet-4-5-20250929",
    )


def _accepts_null(schema: dict) -> bool:
    """Whether a property's schema, as Connexion reads it, lets it be null."""
    if "$ref" in schema:
        return _accepts_null(SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    if schema.get("nullable"):
        return True
    return any(_accepts_null(branch) for branch in schema.get("oneOf", []) + schema.get("anyOf", []))


TOP_LEVEL = SPEC["components"]["schemas"]["MessageCreateParams"]["properties"]


@pytest.mark.parametrize("field", sorted(TOP_LEVEL))
def test_null_in_each_top_level_field(server, field):
    answer = post(server, message_body(**{field: None}))
    if _accepts_null(TOP_LEVEL[field]):
        assert answer.status == 200, answer.body
    else:
        assert_api_error(answer, 400, "invalid_request_error", f"{field}: ")


def test_a_10_mb_string_in_one_message_is_accepted(server):
    # Under the 32 MB limit, and in 100,000 tokens under the model's window: served, the reply cut at max_tokens.
    answer = post(server, message_body(("w" * 99 + " ") * 100_000, max_tokens=5))
    assert answer.status == 200
    reply = answer.json()
    assert reply["stop_reason"] == "max_tokens" and reply["usage"]["input_tokens"] == 100_000


def test_10000_messages_are_accepted(server):
    messages = [{"role": ("user", "assistant")[index % 2], "content": f"turn {index}"} for index in range(10_001)]
    answer = post(server, message_body(messages=messages))
    assert answer.status == 200 and answer.json()["content"][0]["text"] == "turn 10000"


def _tool_conversation(tool_input: str) -> bytes:
    """A tool_use whose input is the raw JSON `tool_input`, and its tool_result."""
    use = '{"type":"tool_use","id":"toolu_1","name":"lookup","input":' + tool_input + "}"
    return (
        '{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"Look it up"},'
        '{"role":"assistant","content":[' + use + ']},{"role":"user","content":'
        '[{"type":"tool_result","tool_use_id":"toolu_1","content":"found"}]}]}'
    ).encode()


def test_nesting_10000_deep_in_a_tool_input_is_a_400(server):
    deep = '{"a":' * 10_000 + "1" + "}" * 10_000
    answer = post(server, _tool_conversation(deep))
    assert_api_error(answer, 400, "invalid_request_error", "Invalid JSON in request body: nested too deeply")


def test_nesting_that_json_allows_is_served(server):
    deep = '{"a":' * 900 + "1" + "}" * 900
    assert post(server, _tool_conversation(deep)).status == 200


# ------------------------------------------------------------------------------------------- the headers


def test_a_repeated_header_with_the_same_value_is_accepted(server):
    body = json.dumps(message_body()).encode()
    answer = raw(server, request_head(len(body), "anthropic-version: 2023-06-01") + body)
    assert answer.status == 200


@pytest.mark.parametrize(
    ("header", "line"),
    [
        ("anthropic-version", "anthropic-version: 2026-10-21"),
        ("x-api-key", "x-api-key: second-key"),
        ("authorization", "authorization: Bearer a\r\nauthorization: Bearer b"),
    ],
)
def test_a_repeated_header_with_different_values_is_a_400(server, header, line):
    body = json.dumps(message_body()).encode()
    answer = raw(server, request_head(len(body), line) + body)
    assert_api_error(answer, 400, "invalid_request_error", f"{header}: the header is given more than once")


def test_a_header_under_gunicorns_limit_is_served(server):
    body = json.dumps(message_body()).encode()
    assert raw(server, request_head(len(body), "x-padding: " + "a" * 8000) + body).status == 200


@pytest.mark.parametrize(
    ("head", "status"),
    [
        pytest.param(request_head(2, "x-padding: " + "a" * 100_000), 431, id="100-kb-header"),
        pytest.param(request_head(2, *(f"x-header-{n}: v" for n in range(101))), 431, id="101-headers"),
        pytest.param(b"GET /v1/models?after_id=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, id="long-url"),
        pytest.param(request_head(2, "content-length: 2"), 400, id="two-content-lengths"),
        pytest.param(request_head(2, "content-type: application/json"), 400, id="two-content-types"),
        pytest.param(request_head(2).replace(b"content-length: 2", b"content-length: two"), 400, id="bad-length"),
    ],
)
def test_what_gunicorn_refuses_itself(server, head, status):
    answer = raw(server, head + b"{}")
    assert answer.status == status and answer.headers["content-type"] == "text/plain"
    assert answer.headers["connection"] == "close"


# ---------------------------------------------------------------------------------------------- the path

#: Paths the two routers (Starlette's, then Flask's) could read differently, or that no route has.
ODD_PATHS = [
    "//health",
    "//v1/models",
    "//v1/messages",
    "//_understudy/requests",
    "/%2Fhealth",
    "///",
    "/v1//models",
    "/v1/models//",
    "/v1/./messages",
    "/v1/../v1/messages",
    "/v1/%2e%2e/health",
    "/v1/messages%00",
    "/v1/models/%ff",
    "/v1/models/a%2Fb",
    "/v1/mess%C3%A4ges",
    "/v1/models/" + "a/" * 500,
]


def _mutated_paths(count: int, seed: int = 13) -> list[str]:
    """Each path of the spec with a random piece put in somewhere: slashes, dots, escapes, a NUL, non-ASCII."""
    pieces = ["/", "//", "%2F", ".", "..", "%2e", "%00", "%ff", "ä", ";", "%"]
    generator = random.Random(seed)
    paths = [path.replace("{model_id}", "claude-opus-4-5") for path in SPEC["paths"]]
    mutated = []
    for _ in range(count):
        path = generator.choice(paths)
        at = generator.randrange(len(path) + 1)
        mutated.append(urllib.parse.quote(path[:at] + generator.choice(pieces) + path[at:], safe="/%.;"))
    return mutated


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ODD_PATHS + _mutated_paths(40))
def test_an_odd_path_is_never_a_500(server, method, path):
    body = json.dumps(message_body()).encode()
    head = request_head(len(body)).replace(b"POST /v1/messages", f"{method} {path}".encode(), 1)
    answer = raw(server, head + body)
    assert answer.status < 500, (path, answer.body[:300])
    if answer.status < 400 or answer.headers.get("content-type") != "application/json":
        return
    error = answer.json()
    if "x-amzn-errortype" in answer.headers:  # a path under Bedrock's /model/: Bedrock's shape
        assert set(error) == {"message"}, error
    elif "status" in error.get("error", {}):  # a path of Vertex AI's: what Google's front end refuses, in its shape
        assert error["error"]["code"] == answer.status, error
    else:
        assert_api_error(answer, answer.status, error["error"]["type"])


@pytest.mark.parametrize("path", ["//health", "//v1/models", "//v1/messages", "/%2Fhealth", "/v1//models"])
def test_a_path_with_an_empty_segment_is_a_404(server, path):
    body = json.dumps(message_body()).encode()
    answer = raw(server, request_head(len(body)).replace(b"/v1/messages", path.encode(), 1) + body)
    assert_api_error(answer, 404, "not_found_error", "Not Found")


# ---------------------------------------------------------------------------------- size, time, the socket


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(server):
    started = time.monotonic()
    answer = raw(server, request_head(64 * 1024 * 1024), timeout=10)  # the head only: not one byte of body
    assert_api_error(answer, 413, "request_too_large", "Request exceeds the maximum allowed size of 33554432 bytes")
    assert answer.headers["connection"] == "close"
    assert time.monotonic() - started < 5


def test_a_client_that_sends_part_of_its_body_and_closes(server):
    body = json.dumps(message_body()).encode()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request_head(len(body) + 1000) + body)
    # `unharmed` checks the workers serve on, with the same pids and nothing in the log


@pytest.fixture(scope="module")
def quick_timeout_server() -> Iterator[ServerProcess]:
    """One worker, and gunicorn's timeout (how long a body may go quiet) at two seconds."""
    with ServerProcess({"UNDERSTUDY_API_KEYS": API_KEY}, workers=1, extra_args=["--timeout", "2"]) as running:
        yield running


def test_a_body_that_stops_coming_is_a_400_request_body_timeout_and_the_worker_serves_meanwhile(
    quick_timeout_server,
):
    server = quick_timeout_server
    body = json.dumps(message_body()).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(request_head(len(body)) + body[:20])  # then nothing more
        served = 0
        while time.monotonic() - started < 1.5:  # the one worker answers others while this body waits
            assert_serves(server)
            served += 1
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = Answer(response)
        assert sock.recv(1) == b"", "the connection stays open after the refusal"
    assert served > 5
    # As the SDK models it: a BadRequestError whose error_code is request_body_timeout.
    assert_api_error(answer, 400, "invalid_request_error", "The request body did not arrive in full in time")
    assert answer.json()["error"]["details"] == {"error_code": "request_body_timeout"}
    assert 2 <= time.monotonic() - started < 10
    assert_serves(server)
    assert "Traceback" not in server.output


def test_a_slow_body_that_keeps_coming_is_served(quick_timeout_server):
    body = json.dumps(message_body("slowly")).encode()
    with socket.create_connection(("127.0.0.1", quick_timeout_server.port), timeout=20) as sock:
        sock.sendall(request_head(len(body)))
        for start in range(0, len(body), len(body) // 4 + 1):  # four pieces, each well within the timeout
            time.sleep(0.6)
            sock.sendall(body[start : start + len(body) // 4 + 1])
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = Answer(response)
    assert answer.status == 200 and answer.json()["content"][0]["text"] == "slowly"
