"""Every model of the catalogue, every rule and default it claims, under both API versions, through the official SDK.

For each model the server lists (`models.list`, every lifecycle but retired), the
expectations are derived from what the catalogue claims of it — the capabilities
it serves, and the rules and defaults of its entry — never from the code that
enforces them: refused in the API's words where the claim says so, accepted
where it does not. Each case runs under 2026-10-21 (the SDK's own version) and
2023-06-01; the fields the 2.x SDK no longer sends (the sampling parameters) go
as raw body fields (`extra_body`), and the beta client sends system messages
between turns.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest

from backends.catalogue import DEFAULT_FILE, ModelCatalogue

from builders import API_KEY

CATALOGUE = ModelCatalogue.from_file(DEFAULT_FILE)
VERSIONS = ("2026-10-21", "2023-06-01")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture(scope="module")
def models(server) -> list[Any]:
    """The callable models as the server lists them, capabilities and all."""
    with anthropic.Anthropic(base_url=server.base_url, api_key=API_KEY, max_retries=0) as client:
        return list(client.models.list(lifecycle=["active", "deprecated"], limit=100))


@pytest.fixture(params=VERSIONS)
def sdk(request, server) -> Iterator[anthropic.Anthropic]:
    headers = {"anthropic-version": request.param}
    with anthropic.Anthropic(base_url=server.base_url, api_key=API_KEY, max_retries=0, default_headers=headers) as c:
        yield c


def outcome(call: Callable[..., Any], **arguments: Any) -> str | None:
    """None when the call is accepted, else the API's message (a 400 only: anything else fails the test)."""
    try:
        with warnings.catch_warnings():
            # The SDK warns of a deprecated model, and of a budget on a model that prefers adaptive thinking, by
            # its own lists: expected here, where every model is called with every setting.
            warnings.simplefilter("ignore")
            call(**arguments)
    except anthropic.BadRequestError as refused:
        return refused.body["error"]["message"]
    return None


def expect(refused: bool, words: str, call: Callable[..., Any], **arguments: Any) -> None:
    """`call(**arguments)` is refused with a message holding `words` when `refused`, else accepted."""
    message = outcome(call, **arguments)
    if refused:
        assert message is not None, "accepted, but the catalogue says it is refused"
        assert words in message, message
    else:
        assert message is None, message


def test_the_catalogue_lists_every_model_with_every_capability(models):
    assert len(models) >= 15
    for model in models:
        served = model.capabilities.model_dump()
        assert served == CATALOGUE.get(model.id)["capabilities"]
        assert set(served) == {
            "batch", "citations", "code_execution", "context_management", "effort", "image_input", "pdf_input",
            "server_tools", "structured_outputs", "thinking",
        }  # fmt: skip


def test_each_thinking_type_and_effort_is_refused_exactly_where_the_capabilities_say(models, sdk):
    for model in models:
        entry = CATALOGUE.find(model.id)
        types = model.capabilities.thinking.types
        for kind in ("adaptive", "between_tools", "disabled", "enabled"):
            thinking: dict[str, Any] = {"type": kind, **({"budget_tokens": 1024} if kind == "enabled" else {})}
            refused = not getattr(types, kind).supported
            expect(
                refused,
                f'"thinking.type.{kind}" is not supported for this model.',
                sdk.messages.create,
                model=model.id,
                max_tokens=2048,
                messages=HELLO,
                thinking=thinking,
            )
        effort = model.capabilities.effort
        for level in EFFORTS:
            supported = effort.supported and getattr(effort, level) is not None and getattr(effort, level).supported
            # With thinking off, some models take the lower levels only: adaptive thinking where it is offered.
            thinking = {"type": "adaptive"} if types.adaptive.supported else {"type": "disabled"}
            off_limits = thinking["type"] == "disabled" and entry.rules.thinking_off_efforts is not None
            refused = not supported or (off_limits and level not in entry.rules.thinking_off_efforts)
            expect(
                refused,
                "output_config.effort",
                sdk.messages.create,
                model=model.id,
                max_tokens=100,
                messages=HELLO,
                thinking=thinking,
                output_config={"effort": level},
            )


def test_forced_tool_choice_prefill_speed_and_system_messages_follow_each_models_rules(models, sdk):
    for model in models:
        entry = CATALOGUE.find(model.id)
        thinks = entry.defaults.thinking is not None
        for count in (False, True):
            forced = sdk.messages.count_tokens if count else sdk.messages.create
            extra = {} if count else {"max_tokens": 100}
            words = 'tool_choice: type "tool" and "any"' if not entry.rules.forced_tool_choice else "Thinking may not"
            expect(
                not entry.rules.forced_tool_choice or thinks,
                words,
                forced,
                model=model.id,
                messages=HELLO,
                tools=[WEATHER],
                tool_choice={"type": "any"},
                **extra,
            )
        prefill = [*HELLO, {"role": "assistant", "content": "Hi"}]
        expect(
            not entry.rules.prefill,
            "does not support assistant message prefill",
            sdk.messages.create,
            model=model.id,
            max_tokens=100,
            messages=prefill,
        )
        fast = entry.rules.speed is None or "fast" in entry.rules.speed
        expect(
            not fast,
            'speed: "fast" is not supported',
            sdk.messages.create,
            model=model.id,
            max_tokens=100,
            messages=HELLO,
            speed="fast",
        )
        between = [*HELLO, {"role": "assistant", "content": "Hi"}, {"role": "system", "content": "Be brief."}, *HELLO]
        expect(
            not entry.rules.system_messages,
            '"system" messages are not supported',
            sdk.beta.messages.create,
            model=model.id,
            max_tokens=100,
            messages=between,
        )


def test_sampling_is_refused_by_2026_10_21_everywhere_and_by_2023_06_01_as_each_model_says(models, sdk):
    version = sdk.default_headers["anthropic-version"]
    for model in models:
        sampling = CATALOGUE.find(model.id).rules.sampling
        for fields, refused_in_2023 in [
            ({"temperature": 0.5}, sampling == "defaults"),
            ({"temperature": 1}, False),
            ({"temperature": 0.5, "top_p": 0.5}, sampling != "any"),
        ]:
            refused = True if version == "2026-10-21" else refused_in_2023
            words = "Extra inputs are not permitted" if version == "2026-10-21" else "for this model"
            expect(
                refused,
                words,
                sdk.messages.create,
                model=model.id,
                max_tokens=100,
                messages=HELLO,
                extra_body=fields,
            )


def test_each_model_answers_with_its_defaults_and_counts_by_its_tokenizer(models, sdk):
    for model in models:
        entry = CATALOGUE.find(model.id)
        greeting = [{"role": "user", "content": "Hello, Claude"}]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's own list of deprecated models
            reply = sdk.messages.create(model=model.id, max_tokens=500, messages=greeting)
        kinds = [block.type for block in reply.content]
        if entry.defaults.thinking is not None:
            assert kinds == ["thinking", "text"], (model.id, kinds)
            assert reply.content[0].thinking == "" and reply.content[0].signature  # display omitted
        else:
            assert kinds == ["text"], (model.id, kinds)
        counted = sdk.messages.count_tokens(model=model.id, messages=greeting)
        assert reply.usage.input_tokens == counted.input_tokens == entry.tokenizer.count("Hello, Claude")
        assert counted.input_tokens == (4 if entry.tokenizer.name == "claude-4-7" else 3), model.id
