"""The rules a Messages request keeps for its model: what the model's catalogue entry says it refuses.

Every rule reads the entry (backends/catalogue.py) — its capabilities, each
false exactly when a request that uses it is refused, its rules and its
defaults — and none compares model names. Each broken rule is a 400
invalid_request_error, worded as the API words it where the docs quote it
(thinking types, forced tool choice, sampling); the rest follow the same
pattern (`"X" is not supported for this model.`). The README's "The model
catalogue" lists them.

The thinking a rule sees is the request's, or the model's default when the
request leaves `thinking` out: on a model that thinks by default, a forced
tool choice is refused as it is with thinking asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from backends.catalogue import Model
from backends.wire import ApiError

#: The sampling parameters' defaults: a model that takes defaults only accepts these (and top_k never).
SAMPLING_DEFAULTS = {"temperature": 1, "top_p": 0.99}
#: What the thinking-type refusals tell the client to use instead (the API's wording).
USE_ADAPTIVE = 'Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.'
USE_BETWEEN_TOOLS = (
    'Use "thinking.type.between_tools" for the least thinking, or "thinking.type.adaptive" and '
    '"output_config.effort" to control thinking behavior.'
)
USE_BUDGET = 'Use "thinking.type.enabled" with "thinking.budget_tokens" to control thinking behavior.'
FORCED_TOOL_CHOICE = 'tool_choice: type "tool" and "any" are not supported for this model.'
#: Tool types by the capability that covers them (a prefix of the versioned type).
TOOL_CAPABILITIES = {
    "code_execution_": ("code_execution",),
    "web_search_": ("server_tools", "web_search"),
}


#: The top-level fields some rule reads: a request with none of them breaks no rule of the top level.
RULED_FIELDS = frozenset(
    {"thinking", "output_config", "output_format", "temperature", "top_p", "top_k", "tool_choice", "tools",
     "context_management", "speed"}
)  # fmt: skip
#: The capabilities the blocks of the messages need.
INPUT_CAPABILITIES = ("image_input", "pdf_input", "citations")


def check(body: Mapping[str, Any], model: Model, *, counting: bool = False) -> None:
    """Raise a 400 ApiError for the first rule of `model` that `body` breaks; `counting` for count_tokens.

    On every request, so each part runs only where it can find something: the top-level rules when the
    body names a field they read, the message rules when the model restricts messages at all.
    """
    if not RULED_FIELDS.isdisjoint(body):
        thinking = model.defaults.thinking_for(body)
        _check_thinking(body, model, thinking)
        _check_effort(body, model, thinking)
        _check_sampling(body, model, thinking)
        _check_tools(body, model, thinking)
        _check_output(body, model)
    if _restricts_messages(model):
        _check_messages(body, model, counting=counting)


def _restricts_messages(model: Model) -> bool:
    """Whether a rule of `model` reads the messages: their roles, the last turn, the kinds of their blocks."""
    rules = model.rules
    return not (rules.system_messages and rules.prefill and all(map(model.supports, INPUT_CAPABILITIES)))


def _fail(message: str) -> None:
    raise ApiError(400, message)


def _check_thinking(body: Mapping[str, Any], model: Model, thinking: Mapping[str, Any]) -> None:
    asked = (body.get("thinking") or {}).get("type")
    if asked is None or model.supports("thinking", "types", asked):
        return
    if model.supports("thinking", "types", "between_tools"):
        instead = USE_BETWEEN_TOOLS
    elif model.supports("thinking", "types", "adaptive"):
        instead = USE_ADAPTIVE
    else:
        instead = USE_BUDGET if model.supports("thinking", "types", "enabled") else ""
    _fail(f'"thinking.type.{asked}" is not supported for this model. {instead}'.rstrip())


def _check_effort(body: Mapping[str, Any], model: Model, thinking: Mapping[str, Any]) -> None:
    asked = (body.get("output_config") or {}).get("effort")
    if asked is not None and not model.supports("effort"):
        _fail('"output_config.effort" is not supported for this model.')
    if asked is not None and not model.supports("effort", asked):
        _fail(f'"output_config.effort.{asked}" is not supported for this model.')
    allowed = model.rules.thinking_off_efforts
    chosen = model.defaults.effort_for(body)
    if thinking["type"] in ("disabled", "between_tools") and allowed is not None and chosen not in allowed:
        levels = ", ".join(f'"{level}"' for level in allowed)
        _fail(
            f'"thinking.type.{thinking["type"]}" is not supported with "output_config.effort.{chosen}" '
            f"for this model. Use an effort of {levels}."
        )


def _check_sampling(body: Mapping[str, Any], model: Model, thinking: Mapping[str, Any]) -> None:
    sent = [name for name in ("temperature", "top_p", "top_k") if body.get(name) is not None]
    if not sent:
        return
    sampling = model.rules.sampling
    if sampling == "defaults":
        for name in sent:
            if body[name] != SAMPLING_DEFAULTS.get(name):
                _fail(f"`{name}` is deprecated for this model.")
    if sampling in ("defaults", "one") and "temperature" in sent and "top_p" in sent:
        _fail("temperature and top_p cannot both be specified for this model. Please use only one.")
    if thinking["type"] in ("enabled", "adaptive"):
        # Extended thinking's own limits, on every model that takes other values at all.
        if body.get("temperature") not in (None, 1):
            _fail("temperature may only be set to 1 when thinking is enabled.")
        if body.get("top_k") is not None:
            _fail("top_k cannot be set when thinking is enabled.")
        if body.get("top_p") is not None and not 0.95 <= body["top_p"] <= 1:
            _fail("top_p must be between 0.95 and 1 when thinking is enabled.")


def _check_tools(body: Mapping[str, Any], model: Model, thinking: Mapping[str, Any]) -> None:
    forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
    if forced and not model.rules.forced_tool_choice:
        _fail(FORCED_TOOL_CHOICE)
    if forced and thinking["type"] in ("enabled", "adaptive"):
        _fail("Thinking may not be enabled when tool_choice forces tool use.")
    accepted = model.rules.computer_use
    for index, tool in enumerate(body.get("tools") or ()):
        kind = str(tool.get("type", ""))
        if kind.startswith("computer_") and accepted is not None and kind not in accepted:
            _fail(f'tools.{index}.type: "{kind}" is not supported for this model.')
        for prefix, capability in TOOL_CAPABILITIES.items():
            if kind.startswith(prefix) and not model.supports(*capability):
                _fail(f'tools.{index}.type: "{kind}" is not supported for this model.')
    for index, edit in enumerate((body.get("context_management") or {}).get("edits") or ()):
        if not model.supports("context_management") or not model.supports("context_management", edit["type"]):
            _fail(f'context_management.edits.{index}.type: "{edit["type"]}" is not supported for this model.')


def _check_messages(body: Mapping[str, Any], model: Model, *, counting: bool) -> None:
    messages = body["messages"]
    if not model.rules.system_messages:
        for index, message in enumerate(messages):
            if message["role"] == "system":
                _fail(f'messages.{index}.role: "system" messages are not supported for this model.')
    if not counting and not model.rules.prefill and messages[-1]["role"] == "assistant":
        _fail("This model does not support assistant message prefill. The conversation must end with a user message.")
    if all(map(model.supports, INPUT_CAPABILITIES)):
        return
    for where, block in _blocks(messages):
        kind = block.get("type")
        if kind == "image" and not model.supports("image_input"):
            _fail(f'{where}.type: "image" input is not supported for this model.')
        if kind == "document" and _is_pdf(block) and not model.supports("pdf_input"):
            _fail(f"{where}.source: PDF input is not supported for this model.")
        if kind == "document" and (block.get("citations") or {}).get("enabled") and not model.supports("citations"):
            _fail(f"{where}.citations: citations are not supported for this model.")


def _check_output(body: Mapping[str, Any], model: Model) -> None:
    if model.rules.speed is not None and body.get("speed") is not None and body["speed"] not in model.rules.speed:
        _fail(f'speed: "{body["speed"]}" is not supported for this model.')
    formats = ((body.get("output_config") or {}).get("format"), body.get("output_format"))
    if any(formats) and not model.supports("structured_outputs"):
        _fail("output_config.format: structured outputs are not supported for this model.")


def _blocks(messages: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each content block of the messages, with its path (`messages.1.content.0`)."""
    for index, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, list):
            for position, block in enumerate(content):
                yield f"messages.{index}.content.{position}", block


def _is_pdf(block: Mapping[str, Any]) -> bool:
    source = block.get("source") or {}
    return source.get("type") == "url" or source.get("media_type") == "application/pdf"
