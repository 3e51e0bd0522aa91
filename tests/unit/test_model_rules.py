"""The per-model rules, read from the shipped catalogue: each refusal in the API's words, each default honoured."""

from __future__ import annotations

import re

import pytest

from app.spec.request_rules import RequestRules
from backends.catalogue import DEFAULT_FILE, ModelCatalogue
from backends.wire import ApiError

from builders import message_body, weather_tool

RULES = RequestRules(ModelCatalogue.from_file(DEFAULT_FILE))
FORCED = {"tools": [weather_tool()], "tool_choice": {"type": "any"}}
PREFILL = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
SYSTEM_BETWEEN = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello"},
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Go on"},
]


def check(model: str, *, counting: bool = False, headers: dict[str, str] | None = None, **fields: object) -> None:
    RULES.check(message_body(model=model, **fields), headers or {}, counting=counting)


@pytest.mark.parametrize(
    ("model", "fields", "message"),
    [
        (
            "claude-opus-5-5",
            {"thinking": {"type": "disabled"}},
            '"thinking.type.disabled" is not supported for this model. Use "thinking.type.adaptive" and '
            '"output_config.effort" to control thinking behavior.',
        ),
        (
            "claude-opus-4-7",
            {"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048}},
            '"thinking.type.enabled" is not supported for this model.',
        ),
        ("claude-sonnet-5-5", {"thinking": {"type": "disabled"}}, 'Use "thinking.type.between_tools"'),
        ("claude-haiku-4-5", {"thinking": {"type": "adaptive"}}, '"thinking.type.adaptive" is not supported'),
        ("claude-sonnet-5-5", FORCED, 'tool_choice: type "tool" and "any" are not supported for this model.'),
        ("claude-fable-5-1", FORCED, 'tool_choice: type "tool" and "any" are not supported for this model.'),
        # Sonnet 5 takes a forced choice, but it thinks by default, and thinking refuses one.
        ("claude-sonnet-5", FORCED, "Thinking may not be enabled when tool_choice forces tool use."),
        ("claude-sonnet-5-5", {"temperature": 0.5}, "`temperature` is deprecated for this model."),
        ("claude-sonnet-5-5", {"temperature": 1, "top_p": 0.99}, "temperature and top_p cannot both be specified"),
        ("claude-haiku-4-5", {"temperature": 0.5, "top_p": 0.5}, "temperature and top_p cannot both be specified"),
        ("claude-sonnet-5-5", {"messages": PREFILL}, "does not support assistant message prefill"),
        ("claude-opus-5", {"messages": SYSTEM_BETWEEN}, 'messages.2.role: "system" messages are not supported'),
        ("claude-haiku-4-5", {"output_config": {"effort": "high"}}, '"output_config.effort" is not supported'),
        ("claude-opus-4-6", {"output_config": {"effort": "xhigh"}}, '"output_config.effort.xhigh" is not supported'),
        (
            "claude-sonnet-5-5",
            {"thinking": {"type": "between_tools"}, "output_config": {"effort": "max"}},
            '"thinking.type.between_tools" is not supported with "output_config.effort.max" for this model.',
        ),
        ("claude-opus-5", {"thinking": {"type": "disabled"}, "output_config": {"effort": "xhigh"}}, "effort.xhigh"),
        (
            "claude-opus-5-5",
            {
                "tools": [
                    {"type": "computer_20251124", "name": "computer", "display_width_px": 1, "display_height_px": 1}
                ]
            },
            'tools.0.type: "computer_20251124" is not supported for this model.',
        ),
        ("claude-sonnet-5-5", {"speed": "fast"}, 'speed: "fast" is not supported for this model.'),
    ],
)
def test_a_model_refuses_what_its_entry_says_in_the_apis_words(model, fields, message):
    with pytest.raises(ApiError) as refused:
        check(model, **fields)
    assert refused.value.status == 400 and refused.value.error_type == "invalid_request_error"
    assert message in refused.value.message


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        ("claude-sonnet-5-5", {"thinking": {"type": "between_tools"}}),
        ("claude-opus-5", {"thinking": {"type": "disabled"}, **FORCED}),  # thinking off: a forced choice is fine
        ("claude-opus-5", {"thinking": {"type": "disabled"}}),  # at the default effort, high
        ("claude-haiku-4-5", {"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048}}),
        ("claude-haiku-4-5", {"temperature": 0.2, "messages": PREFILL, **FORCED}),
        ("claude-sonnet-5-5", {"temperature": 1}),  # the default value alone
        ("claude-opus-5-5", {"speed": "fast", "output_config": {"effort": "max"}}),
        ("claude-fable-5-1", {"messages": SYSTEM_BETWEEN}),
        ("a-model-of-my-own", {"temperature": 0.3, "top_p": 0.5, "messages": PREFILL, **FORCED}),
    ],
)
def test_what_a_model_accepts_passes(model, fields):
    check(model, **fields)


def test_count_tokens_refuses_a_forced_choice_but_has_no_prefill_to_refuse():
    with pytest.raises(ApiError, match="tool_choice: type"):
        check("claude-fable-5-1", counting=True, **FORCED)
    check("claude-sonnet-5-5", counting=True, messages=PREFILL)


def test_every_capability_the_catalogue_reports_false_is_refused():
    """ThinkingTypes and EffortCapability: false exactly when a request that sends it gets a 400."""
    catalogue = RULES.catalogue
    for model in catalogue.models:
        if model["lifecycle"] == "retired":
            continue
        capabilities = model["capabilities"]
        for kind, support in capabilities["thinking"]["types"].items():
            thinking = {"type": kind, "budget_tokens": 2048} if kind == "enabled" else {"type": kind}
            fields = {"max_tokens": 4096, "thinking": thinking, "output_config": {"effort": "low"}}
            if not capabilities["effort"]["supported"]:
                del fields["output_config"]
            _assert_refused_exactly_when(not support["supported"], model["id"], fields)
        for level in ("low", "medium", "high", "xhigh", "max"):
            support = capabilities["effort"][level]
            thinking = (
                {"thinking": {"type": "adaptive"}} if capabilities["thinking"]["types"]["adaptive"]["supported"] else {}
            )
            fields = {"output_config": {"effort": level}, **thinking}
            _assert_refused_exactly_when(not (support and support["supported"]), model["id"], fields)


def _assert_refused_exactly_when(refused: bool, model: str, fields: dict) -> None:
    if refused:
        with pytest.raises(ApiError):
            check(model, **fields)
    else:
        check(model, **fields)


def test_a_users_own_model_says_only_what_it_lacks_and_is_served_and_enforced_whole():
    own = {
        "id": "acme-internal-1",
        "display_name": "Acme Internal",
        "created_at": "2026-12-01T00:00:00Z",
        "tokenizer": "claude-4-7",
        "capabilities": {
            "thinking": {"types": {"disabled": {"supported": False}}},
            "image_input": {"supported": False},
        },
        "rules": {"forced_tool_choice": False, "speed": ["standard"]},
        "defaults": {"thinking": {"type": "adaptive", "display": "omitted"}, "effort": "medium"},
    }
    catalogue = ModelCatalogue([own])
    served = catalogue.get("acme-internal-1")["capabilities"]
    assert served["thinking"]["types"]["disabled"] == {"supported": False} and served["batch"] == {"supported": True}
    assert served["effort"]["xhigh"] == {"supported": True} and served["image_input"] == {"supported": False}
    rules = RequestRules(catalogue)
    for fields, words in [
        ({"thinking": {"type": "disabled"}}, '"thinking.type.disabled" is not supported'),
        (FORCED, 'tool_choice: type "tool" and "any"'),
        ({"speed": "fast"}, 'speed: "fast"'),
    ]:
        with pytest.raises(ApiError, match=re.escape(words)):
            rules.check(message_body(model="acme-internal-1", **fields), {})
    assert catalogue.find("acme-internal-1").tokenizer.name == "claude-4-7"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"capabilities": {"telepathy": {"supported": True}}}, "unknown key 'telepathy'"),
        ({"capabilities": {"batch": {"supported": "yes"}}}, "capabilities.batch.supported must be true or false"),
        ({"rules": {"sampling": "some"}}, "sampling must be one of any, one, defaults"),
        ({"rules": {"mood": "calm"}}, "known rules are"),
        ({"defaults": {"effort": "extreme"}}, "effort must be one of"),
        ({"tokenizer": "bpe"}, "tokenizer must be one of classic, claude-4-7"),
    ],
)
def test_a_broken_entry_is_refused_with_a_line_that_says_why(entry, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        ModelCatalogue([{"id": "m", "display_name": "M", "created_at": "2026-12-01T00:00:00Z", **entry}])
