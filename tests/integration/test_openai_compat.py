"""The OpenAI SDK compatibility endpoint, `POST /v1/chat/completions`, through the openai SDK for Python.

As Anthropic's page documents it: the openai client given this server's `/v1/` as its base URL and a Claude
key; system messages hoisted; tools and tool calls both ways; streaming chunks with usage; the fields it ignores
accepted, the one it refuses (`n` other than 1) a 400; errors in OpenAI's shape, raised as the openai SDK's
classes; and every rule of the model named applies, as on the Messages API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from builders import API_KEY

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def client(server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=API_KEY, base_url=f"{server.base_url}/v1/", max_retries=0) as client:
        yield client


def test_a_completion_with_a_hoisted_system_prompt_and_the_ignored_fields(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hello, chat"},
        ],
        max_completion_tokens=50,
        seed=7,
        presence_penalty=0.5,
        response_format={"type": "json_object"},
        user="someone",
        temperature=1.5,  # taken as 1
    )
    (choice,) = completion.choices
    assert completion.object == "chat.completion" and completion.id.startswith("msg_")
    assert choice.message.role == "assistant" and choice.message.content == "Hello, chat"
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    usage = completion.usage
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0


def test_max_tokens_ends_a_completion_with_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "one two three four five six"}], max_tokens=2
    )
    assert completion.choices[0].finish_reason == "length" and completion.usage.completion_tokens == 2


def test_a_stream_of_chunks_with_its_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="claude-haiku-4-5",
            messages=[{"role": "user", "content": "streamed to openai"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "streamed to openai"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_a_tool_is_called_and_its_result_answered(client: openai.OpenAI) -> None:
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.chat.completions.create(
        model="claude-haiku-4-5", messages=asked, tools=[WEATHER], tool_choice="required"
    )
    (choice,) = called.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    streamed_calls = [
        chunk.choices[0].delta.tool_calls
        for chunk in client.chat.completions.create(
            model="claude-haiku-4-5", messages=asked, tools=[WEATHER], tool_choice="required", stream=True
        )
        if chunk.choices and chunk.choices[0].delta.tool_calls
    ]
    assert streamed_calls[0][0].function.name == "get_weather"
    assert json.loads("".join(calls[0].function.arguments or "" for calls in streamed_calls))["city"]

    answered = client.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[
            *asked,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees"},
        ],
        tools=[WEATHER],
    )
    assert answered.choices[0].finish_reason == "stop" and answered.choices[0].message.content


@pytest.mark.parametrize(
    ("fields", "raised", "message"),
    [
        ({"n": 2}, openai.BadRequestError, "n: Input should be less than or equal to 1"),
        ({"messages": []}, openai.BadRequestError, "messages: List should have at least 1 item"),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            openai.BadRequestError,
            "messages.0.tool_call_id: Field required",
        ),
        ({"model": "gpt-4o"}, openai.NotFoundError, "model: gpt-4o"),
        # Claude Opus 5.5's own rules, as on the Messages API: no forced tool.
        (
            {"model": "claude-opus-5-5", "tools": [WEATHER], "tool_choice": "required"},
            openai.BadRequestError,
            'tool_choice: type "tool" and "any" are not supported for this model.',
        ),
    ],
)
def test_what_the_endpoint_refuses_is_raised_as_the_openai_sdks_error(
    client: openai.OpenAI, fields: dict, raised: type[Exception], message: str
) -> None:
    request = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(raised) as caught:
        client.chat.completions.create(**request)
    assert caught.value.body == {"message": message, "type": caught.value.body["type"], "param": None, "code": None}


def test_a_key_the_server_does_not_take_is_a_401(server) -> None:
    stranger = openai.OpenAI(api_key="not-a-key", base_url=f"{server.base_url}/v1/", max_retries=0)
    with stranger, pytest.raises(openai.AuthenticationError) as caught:
        stranger.chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["type"] == "authentication_error"


def test_the_deprecated_functions_are_answered_as_function_calls(client: openai.OpenAI) -> None:
    function = WEATHER["function"]
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.chat.completions.create(
        model="claude-haiku-4-5", messages=asked, functions=[function], function_call={"name": "get_weather"}
    )
    (choice,) = called.choices
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    call = choice.message.function_call
    assert call is not None and call.name == "get_weather" and json.loads(call.arguments)["city"]

    streamed = [
        chunk.choices[0]
        for chunk in client.chat.completions.create(
            model="claude-haiku-4-5", messages=asked, functions=[function], function_call="auto", stream=True
        )
        if chunk.choices
    ]
    calls = [choice.delta.function_call for choice in streamed if choice.delta.function_call]
    assert calls[0].name == "get_weather" and json.loads("".join(call.arguments or "" for call in calls))["city"]
    assert streamed[-1].finish_reason == "function_call"

    answered = client.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[
            *asked,
            {"role": "assistant", "content": None, "function_call": {"name": call.name, "arguments": call.arguments}},
            {"role": "function", "name": "get_weather", "content": "Sunny, 21 degrees"},
        ],
        functions=[function],
    )
    assert answered.choices[0].finish_reason == "stop" and answered.choices[0].message.content
