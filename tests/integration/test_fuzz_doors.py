"""Fuzzing the doors from their specs (doors/*.yaml): schemathesis sends Bedrock's, Vertex AI's and the
OpenAI-compatible endpoint's requests, valid and not, to a real echo server.

Each answer must be documented, conform to its schema, and be no 5xx; a request that breaks its schema must be
refused; one that keeps it must be answered, unless it breaks a rule no schema can state (the request rules, read
through the door's codec: exactly that rule's 400); and every error must have its door's shape: Bedrock's
`{"message"}` with `x-amzn-ErrorType`, Google's or Claude's at Vertex AI, OpenAI's `{"error": {…}}`. The body
versions are pinned to the newest (2026-10-21), whose schema is the one schemathesis generates from: an older
version's body is checked against its own, laxer schema (the SDK tests cover those). The coverage phase, tens of
thousands of cases over a Messages body, is the first-party fuzz's (test_fuzz.py), which checks the same schemas.
The checks here are plain functions handed to each case, never registered: schemathesis applies a registered
check to every schema in the process, and test_fuzz.py's are its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from app.doors import bedrock, openai, vertex
from app.launcher.server_process import ServerProcess
from app.spec.loading import load_spec
from app.spec.request_rules import RequestRules
from backends.catalogue import DEFAULT_FILE, ModelCatalogue
from backends.echo import limits
from backends.wire import ApiError

from answers import ERROR_TYPES

API_KEY = "fuzz-doors-key"
EXAMPLES = int(os.environ.get("UNDERSTUDY_FUZZ_DOOR_EXAMPLES", "40"))
DOOR_PATHS = "^/(model/|v1/projects/|v1/chat/)"
CATALOGUE = ModelCatalogue.from_file(DEFAULT_FILE)
RULES = RequestRules(CATALOGUE)
NEWEST = "2026-10-21"


def _spec() -> dict[str, Any]:
    spec = load_spec()
    for version in ("BedrockVersion", "VertexVersion"):
        spec["components"]["schemas"][version]["enum"] = [NEWEST]
    return spec


SCHEMA = schemathesis.openapi.from_dict(
    _spec(),
    config=schemathesis.Config.from_dict(
        {
            "suppress-health-check": ["all"],
            "auth": {"openapi": {"BearerAuth": {"bearer": API_KEY}, "ApiKeyAuth": {"api_key": API_KEY}}},
            "request-timeout": 20,
            "generation": {"max-examples": EXAMPLES, "database": "none", "deterministic": True},
            "checks": {"positive_data_acceptance": {"enabled": False}},  # replaced: the rules' 400s are accepted
            "phases": {"coverage": {"enabled": False}},
        }
    ),
).include(path_regex=DOOR_PATHS)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {"UNDERSTUDY_API_KEYS": API_KEY, "UNDERSTUDY_VALIDATE_RESPONSES": "true", "UNDERSTUDY_ANY_MODEL": "true"}
    with ServerProcess(env, workers=1) as running:
        yield running
    assert "Traceback" not in running.output, running.output


def _messages_request(case: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The Messages request a door's case stands for, as the door's codec makes it."""
    path, body, headers = case.operation.path, case.body, dict(case.headers or {})
    if path.startswith("/model/"):
        model = bedrock.model_name(case.path_parameters["modelId"], CATALOGUE)
        return bedrock.message_body(model, body), bedrock.message_headers(body, headers)
    if path.startswith("/v1/chat/"):
        return openai.message_body(body), openai.message_headers(headers)
    model = body["model"] if "count-tokens" in path else case.path_parameters["model"]
    return vertex.message_body(vertex.model_name(model, CATALOGUE), body), vertex.message_headers(body, headers)


def _rule_refusal(case: Any) -> ApiError | None:
    """The 400 a schema-valid request earns by breaking a rule no schema can state, if it breaks one."""
    if not isinstance(case.body, dict):
        return None
    try:
        body, headers = _messages_request(case)
        counting = "count-tokens" in case.operation.path
        RULES.check(body, headers, counting=counting)
        model = limits.model_for(CATALOGUE, body["model"], any_model=True)
        if model is not None and not counting:
            limits.window_room(model, body, model.tokenizer.count_input(body))
    except ApiError as error:
        return error
    return None


def door_requests_that_keep_their_schema_are_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis's positive_data_acceptance, except for the 400 of a rule (exactly that rule's message)."""
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    refusal = _rule_refusal(case) if positive and response.status_code == 400 else None
    if refusal is not None:
        said = _message_of(json.loads(response.content))
        assert said == refusal.message, f"expected the rule's 400 {refusal.message!r}, got {said!r}"
        return True
    return positive_data_acceptance(ctx, response, case)


def _message_of(error: dict[str, Any]) -> str:
    """An error's message, whichever door's shape it has."""
    return str(error["message"] if "message" in error else error["error"]["message"])


def errors_have_the_doors_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Bedrock's `{"message"}` and exception name, Google's or Claude's at Vertex AI, OpenAI's `{"error"}`."""
    if response.status_code < 400:
        return None
    assert response.status_code < 500, response.content[:300]
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == "application/json", (response.status_code, content_type, response.content[:300])
    body = json.loads(response.content)
    path = case.operation.path
    if path.startswith("/model/"):
        assert set(body) == {"message"} and response.headers["x-amzn-errortype"][0].endswith("com.amazon.bedrock/")
        assert response.headers["x-amzn-requestid"] == response.headers["request-id"]
    elif path.startswith("/v1/chat/"):
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
        assert body["error"]["type"] == ERROR_TYPES.get(response.status_code, body["error"]["type"]), body
    elif response.status_code in (401, 403, 404, 429):
        assert body["error"].get("code") == response.status_code and body["error"]["status"], body
    else:
        assert body["type"] == "error" and body["error"]["type"] == ERROR_TYPES[response.status_code], body
    return True


def _refused_by_gunicorn(response: Any) -> bool:
    """gunicorn's own answer to a request it will not parse (a request line over 4094 bytes: a long model id,
    percent-encoded), before any of Understudy runs; as in test_fuzz.py, the one answer not checked."""
    plain = response.headers.get("content-type", [""])[0] == "text/plain" and "request-id" not in response.headers
    return response.status_code in (400, 414, 431) and plain


#: schemathesis's checks, named: the first-party fuzz registers checks of its own (test_fuzz.py), which a run of both
#: modules in one process would otherwise apply here too. positive_data_acceptance is replaced (above).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    ignored_auth,
]


@SCHEMA.parametrize()
def test_the_doors(case: Any, server: ServerProcess) -> None:
    response = case.call(base_url=server.base_url)
    if _refused_by_gunicorn(response):
        return
    case.validate_response(
        response,
        checks=CHECKS,
        additional_checks=(door_requests_that_keep_their_schema_are_accepted, errors_have_the_doors_shape),
        transport_kwargs={"base_url": server.base_url},
    )
