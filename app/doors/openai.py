"""The OpenAI SDK compatibility door (doors/openai.yaml): a chat completion in, a Messages request out, and back.

As Anthropic's page "OpenAI SDK compatibility" describes it: system and
developer messages are hoisted into one system prompt, joined by newlines;
user text and images (a URL, or a base64 data URL) become content blocks; an
assistant's tool calls become tool_use blocks and tool messages tool_result
blocks (the deprecated functions, function calls and function messages
likewise); functions become tools, `required` tool choice `any`; temperature
above 1 is taken as 1; whitespace-only stop sequences are dropped; fields the
page lists as ignored are. The answer is a chat completion (one choice), or
`chat.completion.chunk`s ending in `data: [DONE]`; errors keep OpenAI's shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from app.doors.base import ErrorAnswer
from backends.wire import JSON, ApiError, compact_json

#: The max_tokens of a request that sets neither max_tokens nor max_completion_tokens (the Messages API needs one).
DEFAULT_MAX_TOKENS = 4096
#: How each stop reason reads as a finish reason.
FINISH_REASONS = {"max_tokens": "length", "tool_use": "tool_calls"}
TOOL_CHOICES = {"none": {"type": "none"}, "auto": {"type": "auto"}, "required": {"type": "any"}}
#: The first-party version a chat completion is answered under: the sampling parameters are still fields there,
#: so that each model's own rules say whether it takes them.
MESSAGES_VERSION = "2023-06-01"


def message_body(body: Mapping[str, Any]) -> JSON:
    """The Messages body a chat completion request stands for."""
    system = [_text_of(message.get("content")) for message in body["messages"] if _is_system(message)]
    turns = _turns(body["messages"])
    if not turns:
        raise ApiError(400, "messages: at least one message besides system and developer messages is required")
    message: JSON = {
        "model": body["model"],
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS,
        "messages": turns,
    }
    if system:
        message["system"] = "\n".join(system)
    if body.get("stream"):
        message["stream"] = True
    if body.get("temperature") is not None:
        message["temperature"] = min(float(body["temperature"]), 1.0)
    if body.get("top_p") is not None:
        message["top_p"] = body["top_p"]
    stops = [stop for stop in _listed(body.get("stop")) if stop.strip()]
    if stops:
        message["stop_sequences"] = stops
    functions = [tool["function"] for tool in body.get("tools") or ()] + list(body.get("functions") or ())
    if functions:
        message["tools"] = [_tool(function) for function in functions]
    tool_choice = _tool_choice(_choice_of(body), body.get("parallel_tool_calls"))
    if tool_choice is not None:
        message["tool_choice"] = tool_choice
    if body.get("thinking") is not None:
        message["thinking"] = body["thinking"]
    return message


def message_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The first-party headers a chat completion stands for: the version it is answered under, and its betas."""
    kept = {name: headers[name] for name in ("anthropic-beta",) if name in headers}
    return {"anthropic-version": MESSAGES_VERSION, **kept}


def _is_system(message: Mapping[str, Any]) -> bool:
    return message["role"] in ("system", "developer")


def _listed(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined."""
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def _turns(messages: Sequence[Mapping[str, Any]]) -> list[JSON]:
    """The conversation as Messages turns: system messages left out (hoisted), consecutive turns of one role
    (tool results after tool results, say) made one."""
    turns: list[JSON] = []
    for index, message in enumerate(messages):
        if _is_system(message):
            continue
        role = "assistant" if message["role"] == "assistant" else "user"
        blocks = _blocks(message, index)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(message: Mapping[str, Any], index: int) -> list[JSON]:
    role, content = message["role"], message.get("content")
    if role == "tool":  # doors/openai.yaml requires its tool_call_id, and a function message's name
        return [{"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": _text_of(content)}]
    if role == "function":  # the deprecated tool message: it answers the call of the function it names
        return [
            {"type": "tool_result", "tool_use_id": _function_call_id(message["name"]), "content": _text_of(content)}
        ]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) and content else []
    for part in content if isinstance(content, list) else ():
        if part.get("type") == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url" and role == "user" and "image_url" in part:
            blocks.append(_image(part["image_url"]["url"]))
    if role == "assistant":
        calls = list(message.get("tool_calls") or ())
        if message.get("function_call"):
            function = message["function_call"]
            calls.append({"id": _function_call_id(function["name"]), "type": "function", "function": function})
        blocks.extend(_tool_use(call, index) for call in calls)
    return blocks


def _function_call_id(name: str) -> str:
    """The tool_use id of a deprecated function call, which has none: made of the function's name, so that the
    function message that answers it (naming the function) names the same call."""
    return f"call_{name}"


def _image(url: str) -> JSON:
    """An image part as an image block: a base64 data URL's bytes, or the URL."""
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url.removeprefix("data:").partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use(call: Mapping[str, Any], index: int) -> JSON:
    arguments = call["function"]["arguments"] or "{}"
    try:
        tool_input = json.loads(arguments)
    except ValueError:
        tool_input = None
    if not isinstance(tool_input, dict):
        raise ApiError(400, f"messages.{index}.tool_calls: function.arguments must be a JSON object")
    return {"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": tool_input}


def _tool(function: Mapping[str, Any]) -> JSON:
    tool: JSON = {"name": function["name"], "input_schema": function.get("parameters") or {"type": "object"}}
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _choice_of(body: Mapping[str, Any]) -> Any:
    """The request's tool choice, in `tool_choice`'s form (the deprecated `function_call` turned into it)."""
    if "function_call" not in body or body.get("tool_choice") is not None:
        return body.get("tool_choice")
    chosen = body["function_call"]
    return chosen if isinstance(chosen, str) else {"type": "function", "function": {"name": chosen["name"]}}


def uses_functions(body: Mapping[str, Any]) -> bool:
    """Whether the request names its functions in the deprecated way, and is answered in that way too."""
    return bool(body.get("functions")) and not body.get("tools")


def _tool_choice(choice: Any, parallel: bool | None) -> JSON | None:
    """The Messages tool_choice of a chat completion's (and its parallel_tool_calls)."""
    if choice is None:
        chosen: JSON | None = {"type": "auto"} if parallel is False else None
    elif isinstance(choice, str):
        chosen = dict(TOOL_CHOICES[choice])
    else:
        chosen = {"type": "tool", "name": choice["function"]["name"]}
    if chosen is not None and parallel is False and chosen["type"] != "none":
        chosen["disable_parallel_tool_use"] = True
    return chosen


def completion(message: Mapping[str, Any], created: int, *, functions: bool = False) -> JSON:
    """A message as a chat completion; with `functions` (the request named them the deprecated way), its first tool
    call as a `function_call`."""
    reply: JSON = {"role": "assistant", "content": _reply_text(message["content"]), "refusal": None}
    calls = [_tool_call(block) for block in message["content"] if block["type"] == "tool_use"]
    finish_reason = _finish_reason(message["stop_reason"])
    if calls and functions:
        reply["function_call"] = calls[0]["function"]
        finish_reason = "function_call"
    elif calls:
        reply["tool_calls"] = calls
    return {
        "id": message["id"],
        "object": "chat.completion",
        "created": created,
        "model": message["model"],
        "choices": [{"index": 0, "message": reply, "finish_reason": finish_reason, "logprobs": None}],
        "usage": _usage(message["usage"], message["usage"]),
    }


def _reply_text(content: Sequence[Mapping[str, Any]]) -> str | None:
    texts = [block["text"] for block in content if block["type"] == "text"]
    return "".join(texts) if texts else None


def _tool_call(block: Mapping[str, Any]) -> JSON:
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": compact_json(block["input"])},
    }


def _finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop")


def _usage(start: Mapping[str, Any], end: Mapping[str, Any]) -> JSON:
    """The token counts: the prompt's from the message's start (cached tokens included), the completion's at its end."""
    prompt = sum(
        int(start.get(name) or 0) for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    completion_tokens = int(end.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def error_answer(error: ApiError, request_id: str | None) -> ErrorAnswer:
    """`{"error":{"message","type","param","code"}}` with the error's status, as the openai SDK reads it."""
    return ErrorAnswer(error.status, compact_json(_error_body(error)).encode(), error.headers)


def _error_body(error: ApiError) -> JSON:
    inner = (error.body or {}).get("error")
    message = str(inner.get("message", error.message)) if isinstance(inner, Mapping) else error.message
    return {"error": {"message": message, "type": error.error_type, "param": None, "code": error.error_code}}


class ChunkFraming:
    """A Messages stream as chat.completion.chunk events (one per stream: it numbers the tool calls and keeps the
    usage), ending in `data: [DONE]`; with `stream_options.include_usage`, a last chunk that carries the usage."""

    content_type = "text/event-stream; charset=utf-8"
    headers: Mapping[str, str] = {}

    def __init__(self, created: int, *, include_usage: bool, functions: bool = False) -> None:
        self.created = created
        self.include_usage = include_usage
        #: The request named its functions the deprecated way: the call streams as `function_call` deltas.
        self.functions = functions
        self._id = ""
        self._model = ""
        self._start_usage: Mapping[str, Any] = {}
        self._end_usage: Mapping[str, Any] = {}
        self._tool_calls: dict[int, int] = {}  # a content block's index: its tool call's

    def event(self, event: Mapping[str, Any]) -> bytes:
        kind = event["type"]
        if kind == "message_start":
            message = event["message"]
            self._id, self._model, self._start_usage = message["id"], message["model"], message.get("usage") or {}
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start" and event["content_block"]["type"] == "tool_use":
            block = event["content_block"]
            call = self._tool_calls[event["index"]] = len(self._tool_calls)
            function = {"name": block["name"], "arguments": ""}
            if self.functions:
                return self._chunk({"function_call": function}) if call == 0 else b""
            return self._chunk(
                {"tool_calls": [{"index": call, "id": block["id"], "type": "function", "function": function}]}
            )
        if kind == "content_block_delta":
            return self._delta(event["index"], event["delta"])
        if kind == "message_delta":
            self._end_usage = event.get("usage") or {}
            finish_reason = _finish_reason(event["delta"].get("stop_reason"))
            if self.functions and finish_reason == "tool_calls":
                finish_reason = "function_call"
            return self._chunk({}, finish_reason)
        if kind == "message_stop" and self.include_usage:
            return self._data({**self._envelope(), "choices": [], "usage": _usage(self._start_usage, self._end_usage)})
        return b""

    def _delta(self, index: int, delta: Mapping[str, Any]) -> bytes:
        if delta["type"] == "text_delta":
            return self._chunk({"content": delta["text"]})
        if delta["type"] == "input_json_delta" and index in self._tool_calls:
            arguments = {"arguments": delta["partial_json"]}
            if self.functions:
                return self._chunk({"function_call": arguments}) if self._tool_calls[index] == 0 else b""
            return self._chunk({"tool_calls": [{"index": self._tool_calls[index], "function": arguments}]})
        return b""  # thinking, citations and the like: the page says the SDK sees none of them

    def _envelope(self) -> JSON:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self.created, "model": self._model}

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return self._data({**self._envelope(), "choices": [choice]})

    @staticmethod
    def _data(value: JSON) -> bytes:
        return b"data: " + compact_json(value).encode() + b"\n\n"

    def error(self, error: ApiError, request_id: str | None) -> bytes:
        return self._data(_error_body(error))

    def end(self) -> bytes:
        return b"data: [DONE]\n\n"
