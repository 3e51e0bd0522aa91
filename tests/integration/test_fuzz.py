"""Fuzzing from the spec: schemathesis generates requests from openapi.yaml and sends them to real servers.

Every operation is fuzzed on gunicorn twice: with the echo backend, and with
the scripted backend (a small script, and the admin routes on, so they are
fuzzed too). Schemathesis runs its examples, coverage and fuzzing phases:
valid requests, requests that break the schema, missing headers,
undocumented methods, and each request again without its key and with a
wrong one. Every response must pass:
- no 5xx, ever (the servers also validate their own JSON replies against the
  spec, so a reply that breaks it would show up as a 500), and no traceback
  in the server's log;
- schemathesis's conformance checks: the status is documented, and the
  content type, headers and body are the ones the spec gives for it; a
  request that breaks the schema is refused; a missing or wrong key is a 401;
  a 405 lists the allowed methods;
- `valid_requests_are_accepted`: a valid request is accepted, unless it breaks
  a rule no schema can state (app/spec/cross_field.py, the catalogue's and the files' cursors),
  and then it gets exactly that rule's 400;
- `errors_are_api_shaped`: every error is the API's error object, its type
  the one for its status, its request_id the request-id header;
- `event_streams`: a streamed 200 is a whole, well-formed stream. For an
  OpenAPI 3.0 `text/event-stream` response, schemathesis takes the schema as
  that of one event ({event, data}, data a string) and checks only that
  framing; `check_event_stream` parses every payload against
  MessageStreamEvent, follows the order of the events, and validates the
  message they add up to against Message. Generated requests seldom ask for
  a stream, so every accepted POST /v1/messages is sent again with
  "stream": true, and on the echo backend the stream must add up to the same
  message as the JSON reply.

The one answer not checked is gunicorn's own refusal of a request it will not
parse — generated query strings can make a request line longer than its 4094
bytes — which comes in text/plain before any of Understudy runs (see
gunicorn.conf.py); such answers are counted apart. And one kind of case is
not sent: a multipart body that gives a field an empty list, which goes out as
no part at all, so that a violation generated that way never reaches the
server (it accepted an upload whose `expires_in_seconds` was "an empty list").

CI runs a bounded, derandomized run: the same cases every time, about a
minute on two cores (some 4,000 cases: 2,270 on echo, 1,727 on scripted).
On the two message routes the coverage phase (every boundary of a large
schema: ~26,000 cases each since the spec holds the beta client's surface)
is sampled, one case in UNDERSTUDY_FUZZ_COVERAGE_SAMPLE (32), and
runs on the echo server only: it tests the validation both servers share.
It runs on POST /v1/messages alone: count_tokens's body is create's but for
a few top-level fields, so its boundaries are nearly all create's, and
working them out twice doubled the run's cost. With the sample at 1 it runs
whole, on both routes and both servers. A longer run, every coverage case
and 5,000 generated cases per operation:

    UNDERSTUDY_FUZZ_EXAMPLES=5000 UNDERSTUDY_FUZZ_COVERAGE_SAMPLE=1 python -m pytest tests/integration/test_fuzz.py -s

UNDERSTUDY_FUZZ_EXAMPLES is the fuzzing phase's cases per operation (50 in
CI: with 150 the file took 2.5 times as long, 5 minutes of a 10-minute
suite). UNDERSTUDY_FUZZ_SEED=N makes the run random, seeded with N, instead
of derandomized, to look somewhere new. `-s` prints the cases sent per operation
and the answers per status.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import shutil
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from connexion.json_schema import Draft4ResponseValidator
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.launcher.server_process import ServerProcess
from app.spec import cross_field
from app.spec.loading import load_spec
from app.spec.request_rules import RequestRules
from backends.batches import LocalBatches, SQLiteBatchStore
from backends.catalogue import DEFAULT_FILE, ModelCatalogue
from backends.echo import limits
from backends.files import FileStore
from backends.wire import ApiError

from answers import ERROR_TYPES
from builders import state_store

EXAMPLES = int(os.environ.get("UNDERSTUDY_FUZZ_EXAMPLES", "50"))
COVERAGE_SAMPLE = int(os.environ.get("UNDERSTUDY_FUZZ_COVERAGE_SAMPLE", "32"))
SEED = os.environ.get("UNDERSTUDY_FUZZ_SEED")
API_KEY = "fuzz-" + secrets.token_hex(8)
ADMIN_KEY = "fuzz-admin-" + secrets.token_hex(8)
#: The operations whose coverage phase runs thousands of cases (every boundary of a large schema).
LARGE = "^/v1/messages"
#: The doors' own operations (doors/*.yaml), fuzzed with their error shapes by test_fuzz_doors.py.
DOOR_PATHS = "^/(model/|v1/projects/|v1/chat/)"
#: count_tokens, whose coverage phase (nearly create's) runs only in a whole run.
COUNT_TOKENS = "^/v1/messages/count_tokens$"

#: The scripted backend's script: a sequence with a rate limit, a tool call with thinking, and echo for the rest.
SCRIPT = """
fallback: echo
rules:
  - name: rate-limited-then-ok
    match: {user_text: {regex: '[0-9]'}}
    replies:
      - error: {status: 429, type: rate_limit_error, message: Slow down, headers: {retry-after: '1'}}
      - text: 'Answer {{ counter }}: {{ user_text }}'
    when_exhausted: cycle
  - name: call-a-tool
    match: {tools: true}
    reply:
      content:
        - {type: thinking, thinking: The user wants the weather.}
        - {type: text, text: Let me look that up.}
        - {type: tool_use, name: get_weather, input: {city: Paris, days: 3}}
"""

#: Headers that carry keys: schemathesis adds them itself, from the `auth` setting.
SECRET_HEADERS = ("x-api-key", "authorization", "x-understudy-admin-key")

#: Cases sent, per backend and operation; responses per backend and status (streams counted as "200 stream").
CASES: Counter[tuple[str, str]] = Counter()
ANSWERS: Counter[tuple[str, str]] = Counter()


def _server(backend: str, folder: Path) -> ServerProcess:
    """A gunicorn server with one accepted key; the scripted one with the admin routes on."""
    env = {"UNDERSTUDY_API_KEYS": API_KEY, "UNDERSTUDY_VALIDATE_RESPONSES": "true"}
    if backend == "echo":
        # Generated model names are rarely the catalogue's; served anyway, so the fuzz reaches the replies.
        env["UNDERSTUDY_ANY_MODEL"] = "true"
    if backend == "scripted":
        (folder / "script.yaml").write_text(SCRIPT, encoding="utf-8")
        env |= {
            "UNDERSTUDY_BACKEND": "scripted",
            "UNDERSTUDY_SCRIPT": str(folder / "script.yaml"),
            "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY,
            "UNDERSTUDY_STATE_FILE": str(folder / "state.sqlite3"),
        }
    return ServerProcess(env, workers=1)


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with _server("echo", tmp_path_factory.mktemp("fuzz")) as server:
        yield server
    _report("echo", server)


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with _server("scripted", tmp_path_factory.mktemp("fuzz")) as server:
        yield server
    _report("scripted", server)


def _report(backend: str, server: ServerProcess) -> None:
    counted = {label: count for (name, label), count in sorted(CASES.items()) if name == backend}
    answers = {status: count for (name, status), count in sorted(ANSWERS.items()) if name == backend}
    print(f"\nfuzz cases on {backend}: {counted} (total {sum(counted.values())}); answers: {answers}")
    assert "Traceback" not in server.output, server.output


def _to_send(context: Any, case: Any) -> bool:
    """Whether to send this case; a `filter_case` hook, so the others are dropped as they are worked out."""
    return _sampled_in(case) and not _empty_list_in_a_form(case)


def _sampled_in(case: Any) -> bool:
    """Every case, but of a large operation's coverage phase one in COVERAGE_SAMPLE, chosen by a hash of what it
    sends (the others, some 25,000, were kept as the test's examples for the whole session and skipped one by one)."""
    if COVERAGE_SAMPLE <= 1 or case.meta is None or case.meta.phase.name.value != "coverage":
        return True
    if not re.match(LARGE, case.operation.path):
        return True
    sent = json.dumps([case.body, case.headers, case.query], sort_keys=True, default=repr)
    return zlib.crc32(sent.encode()) % COVERAGE_SAMPLE == 0


def _empty_list_in_a_form(case: Any) -> bool:
    """Whether a multipart body gives a field an empty list: a list goes out as one part per item, so this one as
    none at all, and the violation generated (a list for an integer, say) never reaches the server."""
    form = case.body if case.media_type == "multipart/form-data" and isinstance(case.body, dict) else {}
    return any(value == [] for value in form.values())


def _schema(*, admin: bool, large_coverage: bool) -> Any:
    """openapi.yaml as the server serves it (the admin routes only when they are on), set up for fuzzing."""
    schemes: dict[str, Any] = {"ApiKeyAuth": {"api_key": API_KEY}, "BearerAuth": {"bearer": API_KEY}}
    if admin:
        schemes["AdminKeyAuth"] = {"api_key": ADMIN_KEY}
    generation: dict[str, Any] = {"max-examples": EXAMPLES, "database": "none"}
    if SEED is None:
        generation["deterministic"] = True
    config = schemathesis.Config.from_dict(
        {
            **({"seed": int(SEED)} if SEED is not None else {}),
            "suppress-health-check": ["all"],
            # The keys, per security scheme: schemathesis also sends requests without them, and with wrong ones.
            "auth": {"openapi": schemes},
            "request-timeout": 20,
            "max-stream-events": 100_000,
            "generation": generation,
            # Replaced by valid_requests_are_accepted, which knows the API's cross-field rules.
            "checks": {"positive_data_acceptance": {"enabled": False}},
            "operations": [  # the first entry that matches an operation wins
                {"include-path-regex": DOOR_PATHS, "enabled": False},  # tests/integration/test_fuzz_doors.py's
                {"include-path-regex": COUNT_TOKENS, "phases": {"coverage": {"enabled": COVERAGE_SAMPLE <= 1}}},
                {"include-path-regex": LARGE, "phases": {"coverage": {"enabled": large_coverage}}},
            ],
        }
    )
    schema = schemathesis.openapi.from_dict(load_spec(admin=admin), config=config)
    schema.hook("filter_case")(_to_send)
    return schema


#: The echo server gets every phase everywhere; unless the sample is off, the scripted one skips the message
#: routes' coverage phase, which tests the validation both servers share (its rules are fuzzed all the same).
ECHO = _schema(admin=False, large_coverage=True)
SCRIPTED = _schema(admin=True, large_coverage=COVERAGE_SAMPLE <= 1)


def fuzz(case: Any, server: ServerProcess, backend: str) -> None:
    CASES[(backend, case.operation.label)] += 1
    response = case.call(base_url=server.base_url)
    if _refused_by_gunicorn(response):
        ANSWERS[(backend, f"{response.status_code} from gunicorn")] += 1
        return
    streamed = response.headers.get("content-type", [""])[0].startswith("text/event-stream")
    ANSWERS[(backend, f"{response.status_code}{' stream' if streamed else ''}")] += 1
    case.validate_response(response, additional_checks=CHECKS, transport_kwargs={"base_url": server.base_url})
    if case.operation.path == "/v1/messages" and response.status_code == 200 and not streamed:
        _stream_the_same(case, response.json(), server, backend)


def _refused_by_gunicorn(response: Any) -> bool:
    """gunicorn's own answer to a request it will not parse (a request line over 4094 bytes, say): text/plain,
    before any of Understudy runs, so without a request id (see gunicorn.conf.py); the one thing not checked."""
    plain = response.headers.get("content-type", [""])[0] == "text/plain"
    return response.status_code in (400, 414, 431) and plain and "request-id" not in response.headers


def _stream_the_same(case: Any, reply: Mapping[str, Any], server: ServerProcess, backend: str) -> None:
    """Ask for the message an accepted request got as a stream too; the echo backend's must add up to the same."""
    streamed_case = case.operation.Case(
        headers={name: value for name, value in (case.headers or {}).items() if name.lower() not in SECRET_HEADERS},
        query=case.query,
        body={**case.body, "stream": True},
        media_type=case.media_type,
        _meta=case.meta,
    )
    # The key as an explicit header, so that schemathesis also tries this request without it, and with a wrong one.
    key = {"x-api-key": API_KEY}
    response = streamed_case.call(base_url=server.base_url, headers=key)
    ANSWERS[(backend, f"{response.status_code} stream")] += 1
    streamed_case.validate_response(
        response, additional_checks=CHECKS, headers=key, transport_kwargs={"base_url": server.base_url, "headers": key}
    )
    if backend == "echo":
        assert response.status_code == 200, response.text
        message = check_event_stream(response.content)
        for field in ("content", "stop_reason", "stop_sequence"):
            assert _without_ids(message[field]) == _without_ids(reply[field]), f"the stream's {field} differs"


def _without_ids(value: Any) -> Any:
    """`value` with the ids of tool calls and the results' references to them (new for every reply) left out."""
    if isinstance(value, list):
        return [{key: item for key, item in block.items() if key not in ("id", "tool_use_id")} for block in value]
    return value


@ECHO.parametrize()
def test_echo_backend(case: Any, echo_server: ServerProcess) -> None:
    fuzz(case, echo_server, "echo")


@SCRIPTED.parametrize()
def test_scripted_backend_and_admin_routes(case: Any, scripted_server: ServerProcess) -> None:
    fuzz(case, scripted_server, "scripted")


def _frames(stream: bytes) -> list[str]:
    return stream.decode()[:-2].split("\n\n")


def _joined(frames: list[str]) -> bytes:
    return ("\n\n".join(frames) + "\n\n").encode()


def _edit_payload(frame: str, edit: Any) -> str:
    event, data = frame.split("\n")
    payload = json.loads(data[len("data: ") :])
    edit(payload)
    return f"{event}\ndata: {json.dumps(payload)}"


BROKEN_STREAMS = {
    "no message_stop": lambda frames: frames[:-1],
    "no message_start": lambda frames: frames[1:],
    "an event named for another payload": lambda frames: [frames[0].replace("message_start", "ping", 1), *frames[1:]],
    "a block never stopped": lambda frames: [frame for frame in frames if "content_block_stop" not in frame],
    "a block at the wrong index": lambda frames: [
        _edit_payload(frame, lambda payload: payload.update(index=1)) if "content_block_start" in frame else frame
        for frame in frames
    ],
    "a delta the block cannot take": lambda frames: [
        _edit_payload(frame, lambda payload: payload.update(delta={"type": "input_json_delta", "partial_json": "{"}))
        if "content_block_delta" in frame
        else frame
        for frame in frames
    ],
    "a payload that breaks its schema": lambda frames: [
        _edit_payload(frame, lambda payload: payload["usage"].update(output_tokens="many"))
        if "message_delta" in frame
        else frame
        for frame in frames
    ],
    "an event after message_stop": lambda frames: [*frames, frames[1]],
    "an error event that is not last": lambda frames: [
        frames[0],
        'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"x"},"request_id":null}',
        *frames[1:],
    ],
}


@pytest.mark.parametrize("breakage", sorted(BROKEN_STREAMS))
def test_the_stream_check_catches_a_broken_stream(client, breakage):
    headers = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
    stream = client.post("/v1/messages", json=_body("Hello there, stream", stream=True), headers=headers).content
    reply = client.post("/v1/messages", json=_body("Hello there, stream"), headers=headers).json()
    assert _without_ids(check_event_stream(stream)["content"]) == _without_ids(reply["content"])
    with pytest.raises(AssertionError):
        check_event_stream(_joined(BROKEN_STREAMS[breakage](_frames(stream))))


def _body(text: str, **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": text}], **fields}


# ---------------------------------------------------------------------------------------------------- checks


def _rule_refusal(case: Any) -> ApiError | None:
    """The 400 a schema-valid request earns by breaking a rule no schema can state, if it breaks one."""
    try:
        if case.operation.path in ("/v1/messages", "/v1/messages/count_tokens") and isinstance(case.body, dict):
            RULES.check(case.body, case.headers or {}, counting=case.operation.path.endswith("count_tokens"))
            if case.operation.path == "/v1/messages":  # a catalogue model's limits (the echo server's)
                model = limits.model_for(CATALOGUE, case.body["model"], any_model=True)
                if model is not None:
                    limits.window_room(model, case.body, model.tokenizer.count_input(case.body))
        elif case.operation.path == "/v1/models":
            query = case.query or {}
            CATALOGUE.page(after_id=query.get("after_id"), before_id=query.get("before_id"), limit=1)
        elif case.operation.path == "/v1/messages/batches" and case.method.upper() == "POST":
            cross_field.check_batch(case.body)
        elif case.operation.path == "/v1/messages/batches":  # generated cursors name no batch that exists
            query = case.query or {}
            NO_BATCHES.page(after_id=query.get("after_id"), before_id=query.get("before_id"), limit=1, headers={})
        elif case.operation.path == "/v1/files" and case.method.upper() == "GET":  # generated cursors name no file
            query = case.query or {}
            cursors = {name: query.get(name) for name in ("after_id", "before_id", "scope_id")}
            NO_FILES.page(ids=query.get("ids[]"), **cursors)
    except ApiError as error:
        return error
    return None


CATALOGUE = ModelCatalogue.from_file(DEFAULT_FILE)
RULES = RequestRules(CATALOGUE)
#: The empty stores' folder, removed when the test run ends (it was left in /tmp, two folders a run).
SCRATCH = Path(tempfile.mkdtemp(prefix="understudy-fuzz-"))
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)
EMPTY_STATE = state_store(SCRATCH / "empty.sqlite3")
NO_BATCHES = LocalBatches(SQLiteBatchStore(EMPTY_STATE))
NO_FILES = FileStore(SCRATCH / "no-files", EMPTY_STATE)


@schemathesis.check
def valid_requests_are_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis's positive_data_acceptance, except for the 400 of a cross-field rule (exactly that 400)."""
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    refusal = _rule_refusal(case) if positive and response.status_code == 400 else None
    if refusal is not None:
        message = response.json()["error"]["message"]
        assert message == refusal.message, f"expected the rule's 400 {refusal.message!r}, got {message!r}"
        return True
    return positive_data_acceptance(ctx, response, case)


@schemathesis.check
def errors_are_api_shaped(ctx: Any, response: Any, case: Any) -> bool | None:
    """An error is {"type":"error","error":{type,message},"request_id"}, typed by its status, its id the header's."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert body["type"] == "error" and set(body) == {"type", "error", "request_id"}, body
    assert body["request_id"] == response.headers["request-id"][0], body
    if response.status_code in ERROR_TYPES:
        assert body["error"]["type"] == ERROR_TYPES[response.status_code], body
    return True


SPEC = load_spec(admin=True)


def _validator(name: str) -> Draft4ResponseValidator:
    return Draft4ResponseValidator({"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]})


STREAM_EVENT = _validator("MessageStreamEvent")
MESSAGE = _validator("Message")
DELTA_FOR_BLOCK = {
    "text_delta": ("text",),
    "citations_delta": ("text",),
    "input_json_delta": ("tool_use", "server_tool_use"),
    "thinking_delta": ("thinking",),
    "signature_delta": ("thinking",),
    "compaction_delta": ("compaction",),
}


@schemathesis.check
def event_streams(ctx: Any, response: Any, case: Any) -> bool | None:
    """A streamed 200 is a complete, well-formed stream; see check_event_stream."""
    if response.status_code != 200 or not response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        return None
    check_event_stream(response.content)
    return True


def check_event_stream(raw: bytes) -> Mapping[str, Any]:
    """Check a whole stream; the message it adds up to.

    Every frame is `event: NAME` and `data: JSON` lines; the JSON is a
    MessageStreamEvent whose type is NAME. The order is message_start, then per
    block content_block_start (index 0, 1, …), deltas that fit the block's
    type, content_block_stop, then message_delta and message_stop; pings
    anywhere after message_start; an error event only last. The message they
    add up to validates against Message.
    """
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), f"the stream does not end with a whole event: {text[-200:]!r}"
    events = []
    for frame in text[:-2].split("\n\n"):
        lines = frame.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        name, payload = lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])
        errors = sorted(STREAM_EVENT.iter_errors(payload), key=str)
        assert not errors, f"{name} event breaks MessageStreamEvent: {errors[0].message} in {payload}"
        assert payload["type"] == name, f"event {name!r} carries a {payload['type']!r} payload"
        events.append(payload)

    assert events and events[0]["type"] == "message_start", f"the stream starts with {events[0]['type']}"
    message = dict(events[0]["message"])
    blocks: list[dict[str, Any]] = []
    partial_json: dict[int, str] = {}
    open_block: int | None = None
    delta_seen = stopped = False
    for position, event in enumerate(events[1:], start=1):
        kind = event["type"]
        assert not stopped, f"{kind} after message_stop"
        if kind == "ping":
            continue
        if kind == "error":
            assert position == len(events) - 1, "an error event that is not the last"
            return message
        if kind == "content_block_start":
            assert open_block is None and not delta_seen, f"block {event['index']} starts out of place"
            assert event["index"] == len(blocks), f"block {event['index']} starts where {len(blocks)} should"
            blocks.append(dict(event["content_block"]))
            open_block = event["index"]
        elif kind == "content_block_delta":
            assert event["index"] == open_block, f"a delta for block {event['index']}, open: {open_block}"
            block, delta = blocks[open_block], event["delta"]
            assert block["type"] in DELTA_FOR_BLOCK[delta["type"]], f"{delta['type']} in a {block['type']} block"
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "citations_delta":
                block["citations"] = [*(block.get("citations") or ()), delta["citation"]]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "compaction_delta":
                # A compaction's summary comes whole, in one delta.
                block.update({key: delta[key] for key in ("content", "encrypted_content") if key in delta})
            elif delta["type"] == "input_json_delta":
                partial_json[open_block] = partial_json.get(open_block, "") + delta["partial_json"]
        elif kind == "content_block_stop":
            assert event["index"] == open_block, f"block {event['index']} stops, open: {open_block}"
            if open_block in partial_json:
                blocks[open_block]["input"] = json.loads(partial_json[open_block])
            open_block = None
        elif kind == "message_delta":
            assert open_block is None and not delta_seen, "message_delta out of place"
            delta_seen = True
            message.update(event["delta"])
            message["usage"] = {**message["usage"], **{k: v for k, v in event["usage"].items() if v is not None}}
        elif kind == "message_stop":
            assert delta_seen, "message_stop before message_delta"
            stopped = True
    assert stopped, f"the stream ends without message_stop: {events[-1]['type']}"
    message["content"] = blocks
    errors = sorted(MESSAGE.iter_errors(message), key=str)
    assert not errors, f"the streamed message breaks Message: {errors[0].message}"
    return message


CHECKS = [valid_requests_are_accepted, errors_are_api_shaped, event_streams]
