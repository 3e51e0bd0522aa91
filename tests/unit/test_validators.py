"""How a refused body's error reads (app/spec/validators.py): the field path, then what is wrong in the API's words.

A union tagged by `type` (content blocks, sources, tools, tool_choice,
thinking, citations, …) is worded from the branch the tag names: an unknown
tag lists the expected ones, and a known tag's mistake is that branch's. Each
case posts a whole body, so the messages are the ones a client sees. Which
branch a tag names is the union's discriminator's to say: the last tests
give a small union whose discriminator alone tells its branches apart.
"""

from __future__ import annotations

from typing import Any

import pytest
from connexion.json_schema import resolve_refs

from app.spec.validators import first_error, schema_validator

from builders import HEADERS, message_body, weather_tool

BLOCK_TAGS = (
    "'text', 'image', 'document', 'search_result', 'thinking', 'redacted_thinking', 'tool_use', 'tool_result', "
    "'server_tool_use', 'web_search_tool_result', 'web_fetch_tool_result', 'advisor_tool_result', "
    "'code_execution_tool_result', 'bash_code_execution_tool_result', 'text_editor_code_execution_tool_result', "
    "'tool_search_tool_result', 'mcp_tool_use', 'mcp_tool_result', 'container_upload', 'compaction', "
    "'tool_addition', 'tool_removal', 'mcp_tool_listing', 'fallback'"
)


def blocks(*content: dict[str, Any]) -> dict[str, Any]:
    """A body whose one user message holds `content`."""
    return message_body(messages=[{"role": "user", "content": list(content)}])


def image(source: dict[str, Any]) -> dict[str, Any]:
    return {"type": "image", "source": source}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            blocks({"type": "picture"}),
            f"messages.0.content.0.type: Input tag 'picture' does not match any of the expected tags: {BLOCK_TAGS}",
            id="unknown-block-tag",
        ),
        pytest.param(blocks({"text": "hi"}), "messages.0.content.0.type: Field required", id="block-without-tag"),
        pytest.param(blocks({"type": "text"}), "messages.0.content.0.text: Field required", id="text-without-text"),
        pytest.param(
            blocks({"type": "text", "text": ""}),
            "messages.0.content.0.text: String should have at least 1 character",
            id="empty-text",
        ),
        pytest.param(
            blocks({"type": "text", "text": "hi", "colour": "red"}),
            "messages.0.content.0.colour: Extra inputs are not permitted",
            id="text-extra-field",
        ),
        pytest.param(
            blocks({"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "2h"}}),
            "messages.0.content.0.cache_control.ttl: Input should be '5m' or '1h'",
            id="cache-control-ttl",
        ),
        pytest.param(
            blocks(image({"type": "base64", "media_type": "image/bmp", "data": "AAAA"})),
            "messages.0.content.0.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or "
            "'image/webp'",
            id="image-media-type",
        ),
        pytest.param(
            blocks(image({"type": "link", "url": "https://example.com/cat.png"})),
            "messages.0.content.0.source.type: Input tag 'link' does not match any of the expected tags: "
            "'base64', 'url', 'file'",
            id="unknown-image-source",
        ),
        pytest.param(
            blocks(image({"type": "url"})), "messages.0.content.0.source.url: Field required", id="url-source-no-url"
        ),
        pytest.param(
            blocks({"type": "document", "source": {"type": "text", "media_type": "text/plain"}}),
            "messages.0.content.0.source.data: Field required",
            id="text-document-no-data",
        ),
        pytest.param(
            blocks({"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "audio"}]}),
            "messages.0.content.0.content.0.type: Input tag 'audio' does not match any of the expected tags: "
            "'text', 'image', 'search_result', 'document', 'tool_reference', 'browser_state'",
            id="unknown-tool-result-block",
        ),
        pytest.param(
            blocks({"type": "tool_result", "tool_use_id": "toolu_1", "content": 7}),
            "messages.0.content.0.content: Input should be a valid string or list",
            id="tool-result-content-type",
        ),
        pytest.param(
            blocks({"type": "text", "text": "hi", "citations": [{"type": "char_location", "cited_text": "hi"}]}),
            "messages.0.content.0.citations.0.document_index: Field required",
            id="citation-missing-field",
        ),
        pytest.param(
            blocks({"type": "text", "text": "hi", "citations": [{"type": "footnote"}]}),
            "messages.0.content.0.citations.0.type: Input tag 'footnote' does not match any of the expected tags: "
            "'char_location', 'page_location', 'content_block_location', 'web_search_result_location', "
            "'search_result_location'",
            id="unknown-citation",
        ),
        pytest.param(
            blocks({"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}, "caller": {"type": "robot"}}),
            "messages.0.content.0.caller.type: Input tag 'robot' does not match any of the expected tags: "
            "'direct', 'code_execution_20250825', 'code_execution_20260120'",
            id="unknown-caller",
        ),
        pytest.param(
            message_body(tool_choice={"type": "sometimes"}),
            "tool_choice.type: Input tag 'sometimes' does not match any of the expected tags: "
            "'auto', 'any', 'tool', 'none'",
            id="unknown-tool-choice",
        ),
        pytest.param(
            message_body(tools=[weather_tool()], tool_choice={"type": "tool"}),
            "tool_choice.name: Field required",
            id="tool-choice-without-name",
        ),
        pytest.param(
            message_body(thinking={"type": "enabled", "budget_tokens": 10}),
            "thinking.budget_tokens: Input should be greater than or equal to 1024",
            id="thinking-budget",
        ),
        pytest.param(
            message_body(thinking={"type": "sometimes"}),
            "thinking.type: Input tag 'sometimes' does not match any of the expected tags: "
            "'enabled', 'disabled', 'between_tools', 'adaptive'",
            id="unknown-thinking",
        ),
        pytest.param(
            message_body(tools=[{"type": "bash_20250124", "name": "shell"}]),
            "tools.0.name: Input should be 'bash'",
            id="bash-tool-name",
        ),
        pytest.param(
            message_body(tools=[{"name": "f"}]), "tools.0.input_schema: Field required", id="custom-tool-no-schema"
        ),
        pytest.param(
            message_body(tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": "3"}]),
            "tools.0.max_uses: Input should be a valid integer",
            id="web-search-max-uses",
        ),
        pytest.param(
            message_body(tools=[{"type": "web_search_20250305", "name": "web_search", "allowed_callers": ["me"]}]),
            "tools.0.allowed_callers.0: Input should be 'direct', 'code_execution_20250825', "
            "'code_execution_20260120' or 'code_execution_20260521'",
            id="allowed-callers",
        ),
        pytest.param(
            message_body(
                tools=[
                    {"type": "web_fetch_20250910", "name": "web_fetch", "url_sources": {"user_input": {"type": "x"}}}
                ]
            ),
            "tools.0.url_sources.user_input.type: Input tag 'x' does not match any of the expected tags: 'all', 'none'",
            id="unknown-url-source",
        ),
        pytest.param(
            message_body(system=[{"type": "image", "text": "hi"}]),
            "system.0.type: Input should be 'text'",
            id="system-block",
        ),
        pytest.param(message_body(system=5), "system: Input should be a valid string or list", id="system-type"),
    ],
)
def test_a_union_is_worded_from_the_branch_its_tag_names(client: Any, body: dict[str, Any], message: str) -> None:
    response = client.post("/v1/messages", json=body, headers=HEADERS)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == message


def test_count_tokens_tools_are_worded_alike(client: Any) -> None:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "x"}]}
    response = client.post("/v1/messages/count_tokens", json=body, headers=HEADERS)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith(
        "tools.0.type: Input tag 'x' does not match any of the expected tags: "
        "'custom', 'bash_20241022', 'bash_20250124', "
    )


def shapes(mapping: dict[str, str]) -> dict[str, Any]:
    """A union of two shapes tagged by `kind`, resolved as Connexion resolves a body schema (its components beside it).

    Only Circle's tag has an enum: that `square` means Square, the discriminator's mapping alone says.
    """
    ref = "#/components/schemas/"
    schema = {
        "oneOf": [{"$ref": ref + "Circle"}, {"$ref": ref + "Square"}],
        "discriminator": {"propertyName": "kind", "mapping": {tag: ref + name for tag, name in mapping.items()}},
        "components": {
            "schemas": {
                "Circle": {
                    "type": "object",
                    "required": ["kind", "radius"],
                    "additionalProperties": False,
                    "properties": {"kind": {"type": "string", "enum": ["circle"]}, "radius": {"type": "number"}},
                },
                "Square": {
                    "type": "object",
                    "required": ["kind", "side"],
                    "additionalProperties": False,
                    "properties": {"kind": {"type": "string"}, "side": {"type": "number"}},
                },
            }
        },
    }
    return resolve_refs(schema)


@pytest.mark.parametrize(
    ("instance", "message"),
    [
        ({"kind": "square", "side": "big"}, "side: Input should be a valid number"),
        ({"kind": "circle", "radius": "big"}, "radius: Input should be a valid number"),
        ({"kind": "hexagon"}, "kind: Input tag 'hexagon' does not match any of the expected tags: 'circle', 'square'"),
        ({"side": 2}, "kind: Field required"),
        ([], "body: Input should be a valid dictionary"),
    ],
)
def test_the_wording_follows_the_discriminator(instance: Any, message: str) -> None:
    schema = shapes({"circle": "Circle", "square": "Square"})
    assert first_error(schema_validator(schema), instance) == message


def test_the_expected_tags_are_the_mapping_s_in_its_order() -> None:
    schema = shapes({"square": "Square", "round": "Circle", "circle": "Circle"})
    assert first_error(schema_validator(schema), {"kind": "oval"}) == (
        "kind: Input tag 'oval' does not match any of the expected tags: 'square', 'round', 'circle'"
    )
    assert first_error(schema_validator(schema), {"kind": "round", "radius": "x"}) == (
        "radius: Input should be a valid number"
    )
