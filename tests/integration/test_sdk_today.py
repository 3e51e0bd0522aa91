"""Today's API as today's SDK (anthropic 2.17) uses it, against a real server of two workers.

Structured outputs, server tools and pause_turn, built-in client tools, prompt caching across workers,
the models' limits, citations, the usage breakdowns, and the model catalogue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import pydantic
import pytest

from app.launcher.server_process import ServerProcess
from backends.schema_example import is_valid

from builders import API_KEY

MODEL = "claude-sonnet-4-5"
#: A model with adaptive thinking that does not think unless asked (Claude Sonnet 4.5 has budgets only).
ADAPTIVE_MODEL = "claude-opus-4-8"


class Person(pydantic.BaseModel):
    name: str
    age: int


def ask(sdk: anthropic.Anthropic, content, **fields):
    fields.setdefault("max_tokens", 200)
    fields.setdefault("model", MODEL)
    return sdk.messages.create(messages=[{"role": "user", "content": content}], **fields)


# ---------------------------------------------------------------------------------------- structured outputs


def test_parse_returns_the_parsed_object(sdk):
    parsed = sdk.messages.parse(
        model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "Ada"}], output_format=Person
    )
    assert isinstance(parsed.parsed_output, Person) and parsed.parsed_output.name == "Ada"


def test_a_streamed_structured_output_parses_too(sdk):
    with sdk.messages.stream(
        model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "Ada"}], output_format=Person
    ) as stream:
        final = stream.get_final_message()
    assert final.parsed_output == Person(name="Ada", age=0)


def test_an_output_config_format_gives_json_valid_against_its_schema(sdk):
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "minItems": 2}},
        "required": ["tags"],
        "additionalProperties": False,
    }
    message = ask(sdk, "tag this", output_config={"format": {"type": "json_schema", "schema": schema}})
    assert is_valid(schema, json.loads(message.content[0].text))


def test_a_strict_tool_gets_a_valid_input(sdk):
    tool = {"name": "add", "description": "Add a person", "input_schema": Person.model_json_schema(), "strict": True}
    message = ask(sdk, "Ada", tools=[tool], tool_choice={"type": "tool", "name": "add"})
    (block,) = message.content
    assert Person.model_validate(block.input) and block.caller.type == "direct"


# ------------------------------------------------------------------------------------- server tools


def test_web_search_answers_with_its_results_and_counts_them(sdk):
    tools = [{"type": "web_search_20250305", "name": "web_search"}]
    message = ask(sdk, "cats on the moon", tools=tools, tool_choice={"type": "any"})
    use, result, answer = message.content
    assert isinstance(use, anthropic.types.ServerToolUseBlock) and use.input == {"query": "cats on the moon"}
    assert isinstance(result, anthropic.types.WebSearchToolResultBlock) and result.tool_use_id == use.id
    assert [hit.url for hit in result.content] == [
        "https://example.com/cats-on-the-moon/1",
        "https://example.com/cats-on-the-moon/2",
    ]
    assert answer.text == "cats on the moon" and message.stop_reason == "end_turn"
    assert message.usage.server_tool_use.web_search_requests == 1
    with sdk.messages.stream(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "cats on the moon"}],
        tools=tools,
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == use.input and final.content[1].content == result.content
    assert final.usage.server_tool_use.web_search_requests == 1


def test_web_fetch_and_code_execution(sdk):
    fetched = ask(
        sdk,
        "read https://example.org/page",
        tools=[{"type": "web_fetch_20250910", "name": "web_fetch"}],
        tool_choice={"type": "any"},
    )
    assert isinstance(fetched.content[1], anthropic.types.WebFetchToolResultBlock)
    assert fetched.content[1].content.url == "https://example.org/page"
    assert fetched.usage.server_tool_use.web_fetch_requests == 1
    ran = ask(
        sdk, "hello", tools=[{"type": "code_execution_20250825", "name": "code_execution"}], tool_choice={"type": "any"}
    )
    assert isinstance(ran.content[1], anthropic.types.BashCodeExecutionToolResultBlock)
    assert ran.content[1].content.stdout == "hello\n" and ran.container.id.startswith("container_")


def test_a_paused_turn_goes_on_when_sent_back(sdk):
    tools = [{"type": "web_search_20250305", "name": "web_search"}, {"type": "web_fetch_20250910", "name": "web_fetch"}]
    messages = [{"role": "user", "content": "see https://example.org"}]
    first = sdk.messages.create(
        model=MODEL, max_tokens=200, messages=messages, tools=tools, tool_choice={"type": "any"}
    )
    assert first.stop_reason == "pause_turn"
    second = sdk.messages.create(
        model=MODEL, max_tokens=200, messages=[*messages, first.to_param()], tools=tools, tool_choice={"type": "any"}
    )
    assert [block.type for block in second.content] == ["server_tool_use", "web_fetch_tool_result", "text"]
    assert second.stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ({"type": "bash_20250124", "name": "bash"}, {"command": "echo ls"}),
        ({"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}, {"command": "view", "path": "/"}),
        ({"type": "memory_20250818", "name": "memory"}, {"command": "view", "path": "/memories"}),
    ],
)
def test_a_built_in_client_tool_is_called_with_a_valid_input(sdk, tool, expected):
    message = ask(sdk, "ls", tools=[tool], tool_choice={"type": "tool", "name": tool["name"]})
    assert message.content[0].input == expected and message.stop_reason == "tool_use"


# ------------------------------------------------------------------------------------------ caching


def test_a_cached_prefix_is_read_back_whichever_worker_answers(server):
    system = [
        {"type": "text", "text": "A long and stable system prompt. " * 200, "cache_control": {"type": "ephemeral"}}
    ]
    prefix_tokens = 7 * 200

    def cached(question: str) -> anthropic.types.Usage:
        # A client per call: a new connection each time, so the two workers take turns.
        with anthropic.Anthropic(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=20) as sdk:
            return ask(sdk, question, system=system).usage

    first = cached("What?")
    assert first.cache_creation_input_tokens == prefix_tokens and first.cache_read_input_tokens == 0
    assert first.cache_creation.ephemeral_5m_input_tokens == prefix_tokens and first.input_tokens == 2
    for question in ("Who?", "When?", "Why?", "Where?", "How?", "Really?"):
        again = cached(question)
        assert (again.cache_read_input_tokens, again.cache_creation_input_tokens) == (prefix_tokens, 0)
        assert again.input_tokens == 2


def test_a_1h_breakpoint_splits_the_write(sdk):
    system = [{"type": "text", "text": "Hour-long prefix. " * 400, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    usage = ask(sdk, "q", system=system).usage
    assert (
        usage.cache_creation.ephemeral_1h_input_tokens == 2000 and usage.cache_creation.ephemeral_5m_input_tokens == 0
    )


# -------------------------------------------------------------------------------------------- limits


def test_the_models_limits_are_the_apis_errors(sdk):
    with pytest.raises(anthropic.NotFoundError) as unknown:
        ask(sdk, "hi", model="claude-foo")
    assert unknown.value.api_message == "model: claude-foo" and unknown.value.type == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        ask(sdk, "hi", model="claude-3-haiku-20240307")  # retired
    with pytest.raises(anthropic.BadRequestError) as too_many:
        ask(sdk, "hi", max_tokens=64_001)
    assert too_many.value.api_message.startswith("max_tokens: 64001 > 64000, which is the maximum allowed")
    with pytest.raises(anthropic.BadRequestError) as too_long:
        ask(sdk, "w " * 200_001, model="claude-haiku-4-5")
    assert too_long.value.api_message == "prompt is too long: 200001 tokens > 200000 maximum"


def test_a_reply_stops_where_the_context_window_ends(sdk):
    message = ask(sdk, "w " * 199_990, model="claude-haiku-4-5", max_tokens=1000)
    assert message.stop_reason == "model_context_window_exceeded" and message.usage.output_tokens == 10


def test_a_deprecated_model_is_served_and_the_sdk_warns(sdk):
    with pytest.warns(DeprecationWarning, match="claude-opus-4-5"):
        message = ask(sdk, "hi", model="claude-opus-4-5")
    assert message.content[0].text == "hi"


# ----------------------------------------------------------------------------- citations and usage


def test_a_citable_document_is_quoted_with_its_citation(sdk):
    content = [
        {
            "type": "document",
            "title": "Colours",
            "citations": {"enabled": True},
            "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green. The sky is blue."},
        },
        {"type": "text", "text": "What colour is the grass?"},
    ]
    message = ask(sdk, content)
    (citation,) = message.content[-1].citations
    assert isinstance(citation, anthropic.types.CitationCharLocation)
    assert (citation.cited_text, citation.start_char_index, citation.end_char_index) == ("The grass is green.", 0, 19)
    with sdk.messages.stream(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": content}]) as stream:
        assert stream.get_final_message().content[-1].citations == [citation]


def test_thinking_tokens_are_in_the_usage_details(sdk):
    message = ask(
        sdk, "think", model=ADAPTIVE_MODEL, max_tokens=2000, thinking={"type": "adaptive", "display": "omitted"}
    )
    assert message.usage.output_tokens_details.thinking_tokens > 0
    assert message.usage.speed == "standard" and message.usage.inference_geo == "global"


# -------------------------------------------------------------------------------------------- models


def test_a_model_is_retrieved_by_its_alias(sdk):
    model = sdk.models.retrieve("claude-sonnet-4-5")
    assert model.id == "claude-sonnet-4-5-20250929" and model.lifecycle == "deprecated"
    assert model.max_input_tokens == 200_000 and model.max_tokens == 64_000


def test_the_list_honours_the_lifecycle_filter_page_by_page(sdk):
    default = list(sdk.models.list(limit=4))
    assert {model.lifecycle for model in default} == {"active", "deprecated"}
    retired = list(sdk.models.list(lifecycle=["retired"], limit=2))
    assert len(retired) >= 3 and {model.lifecycle for model in retired} == {"retired"}
    every = list(sdk.models.list(lifecycle=["active", "deprecated", "retired"], limit=5))
    assert len(every) == len(default) + len(retired) == len({model.id for model in every})


# --------------------------------------------------------------------------------------- any model


@pytest.fixture(scope="module")
def any_model_server() -> Iterator[ServerProcess]:
    with ServerProcess({"UNDERSTUDY_ANY_MODEL": "true", "UNDERSTUDY_VALIDATE_RESPONSES": "true"}) as running:
        yield running


def test_any_model_serves_any_name(any_model_server):
    with anthropic.Anthropic(base_url=any_model_server.base_url, api_key=API_KEY, max_retries=0, timeout=20) as sdk:
        message = ask(sdk, "hi", model="my-fine-tuned-model", max_tokens=10**9)
        assert message.model == "my-fine-tuned-model" and message.content[0].text == "hi"
        assert ask(sdk, "hi", model="claude-3-haiku-20240307").content[0].text == "hi"
