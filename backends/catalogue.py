"""The model catalogue: a YAML data file served by the models routes, a page at a time, and read by the rules.

Each entry is one model as a whole (backends/data/models.yaml says how one is
written): the ModelInfo it serves, capabilities included (every key, the ones
an entry leaves out supported), and fields of Understudy's own, kept out of
what it serves: aliases, the page it was checked against, the shortest
cacheable prefix, the tokenizer, the rules a request to it must keep beyond
its capabilities, and what a request that says nothing gets. The request
rules (app/spec/model_rules.py) and the echo backend read the same `Model`,
so what the catalogue serves and what the server enforces cannot disagree.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from backends import tokens
from backends.safe_yaml import safe_load
from backends.tokens import Tokenizer
from backends.wire import JSON, ApiError

DEFAULT_FILE = Path(__file__).parent / "data" / "models.yaml"
REQUIRED_FIELDS = ("id", "display_name", "created_at")
DATE_FIELDS = ("created_at", "deprecated_at", "retires_at")
LIFECYCLES = ("active", "deprecated", "retired")
#: What a list shows when the client names no lifecycle: retired models only when asked for.
DEFAULT_LIFECYCLES = ("active", "deprecated")
#: The shortest cacheable prefix, for a model whose entry gives none.
DEFAULT_MIN_CACHE_TOKENS = 1024


#: Understudy's own fields of an entry, kept out of the ModelInfo it serves.
OWN_FIELDS = ("aliases", "platform_ids", "page", "min_cache_tokens", "tokenizer", "rules", "defaults")
#: The clouds whose own names for a model an entry's `platform_ids` give: Bedrock's InvokeModel, Bedrock Mantle
#: and Vertex AI. (Claude Platform on AWS and on Google Cloud, and Foundry's default deployments, use the ids.)
PLATFORMS = ("bedrock", "mantle", "vertex")
SAMPLING = ("any", "one", "defaults")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
THINKING_TYPES = ("adaptive", "between_tools", "disabled", "enabled")
SUPPORTED = {"supported": True}
#: The capabilities of a model whose entry says nothing of them: every one supported, so nothing is refused.
#: An entry's own `capabilities` are laid over these, key by key.
ALL_CAPABILITIES: JSON = {
    "batch": SUPPORTED,
    "citations": SUPPORTED,
    "code_execution": SUPPORTED,
    "context_management": {
        **SUPPORTED,
        "clear_thinking_20251015": SUPPORTED,
        "clear_tool_uses_20250919": SUPPORTED,
        "compact_20260112": SUPPORTED,
    },
    "effort": {**SUPPORTED, **dict.fromkeys(EFFORTS, SUPPORTED)},
    "image_input": SUPPORTED,
    "pdf_input": SUPPORTED,
    "server_tools": {**SUPPORTED, "code_execution": SUPPORTED, "web_search": SUPPORTED},
    "structured_outputs": SUPPORTED,
    "thinking": {**SUPPORTED, "types": dict.fromkeys(THINKING_TYPES, SUPPORTED)},
}


@dataclass(frozen=True)
class ModelRules:
    """What a request to the model may say beyond its capabilities; the defaults refuse nothing."""

    #: temperature, top_p and top_k: `any` value the schema allows, `one` (not temperature with top_p), `defaults` only.
    sampling: str = "any"
    prefill: bool = True
    forced_tool_choice: bool = True
    system_messages: bool = True
    #: The computer-use tool versions accepted; None for all.
    computer_use: tuple[str, ...] | None = None
    #: The `speed` values accepted; None for all.
    speed: tuple[str, ...] | None = None
    #: The efforts accepted with thinking `disabled` or `between_tools`; None for all.
    thinking_off_efforts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ModelDefaults:
    """What a request that leaves a setting out gets from the model."""

    #: The thinking config of a request without `thinking` (None: no thinking).
    thinking: Mapping[str, Any] | None = None
    #: thinking.display when a thinking config leaves it out.
    display: str = "summarized"
    #: output_config.effort when left out (None: the model has no effort setting).
    effort: str | None = None

    def thinking_for(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """The thinking a request gets: its own config, or this default ({"type": "disabled"} for none)."""
        return body.get("thinking") or self.thinking or {"type": "disabled"}

    def effort_for(self, body: Mapping[str, Any]) -> str | None:
        """The effort a request gets: its own output_config.effort, or this default."""
        return (body.get("output_config") or {}).get("effort") or self.effort


@dataclass(frozen=True)
class Model:
    """One model of the catalogue: its limits, capabilities, rules and defaults."""

    id: str
    aliases: tuple[str, ...]
    lifecycle: str
    max_input_tokens: int | None
    max_tokens: int | None
    min_cache_tokens: int
    capabilities: Mapping[str, Any] = field(default_factory=lambda: copy.deepcopy(ALL_CAPABILITIES))
    rules: ModelRules = ModelRules()
    defaults: ModelDefaults = ModelDefaults()
    tokenizer: Tokenizer = tokens.CLASSIC
    #: The model's names on the clouds that name it their own way (PLATFORMS), as its page lists them.
    platform_ids: Mapping[str, str] = field(default_factory=dict)

    def supports(self, *path: str) -> bool:
        """Whether the capability at `path` (e.g. "thinking", "types", "adaptive") is supported."""
        capability: Any = self.capabilities
        for key in path:
            capability = capability[key]
        return bool(capability is not None and capability["supported"])


#: A model the catalogue lacks (a name UNDERSTUDY_ANY_MODEL serves): every capability, no rule or default of its
#: own, the classic tokenizer.
UNLISTED_MODEL = Model(
    id="",
    aliases=(),
    lifecycle="active",
    max_input_tokens=None,
    max_tokens=None,
    min_cache_tokens=DEFAULT_MIN_CACHE_TOKENS,
)


class ModelCatalogue:
    """The models, newest first, with cursor pagination as the API does it."""

    def __init__(self, models: Sequence[Mapping[str, Any]]) -> None:
        entries = [_entry(entry, position) for position, entry in enumerate(models)]
        entries.sort(key=lambda entry: entry[0]["created_at"], reverse=True)
        self.models: list[JSON] = [model for model, _ in entries]
        self._by_name: dict[str, Model] = {}
        for _, model in entries:
            for name in (model.id, *model.aliases):
                if name in self._by_name:
                    raise ValueError(f"model ids and aliases must be unique: {name!r} is given twice")
                self._by_name[name] = model
        self._index = {model["id"]: position for position, model in enumerate(self.models)}
        self._by_platform: dict[str, dict[str, Model]] = {platform: {} for platform in PLATFORMS}
        for _, model in entries:
            for platform, name in model.platform_ids.items():
                if name in self._by_platform[platform]:
                    raise ValueError(f"{platform} ids must be unique: {name!r} is given twice")
                self._by_platform[platform][name] = model

    @classmethod
    def from_file(cls, path: Path) -> ModelCatalogue:
        """Load and check a catalogue file; a problem is a ValueError that names the file."""
        try:
            models = safe_load(Path(path).read_text(encoding="utf-8"))
            if not isinstance(models, list):
                raise ValueError("the file must hold a list of models")
            return cls(models)
        except (OSError, yaml.YAMLError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error

    def get(self, model_id: str) -> JSON:
        """One model by id or alias, or a 404 not_found_error."""
        return self.models[self._index[self.model(model_id).id]]

    def model(self, name: str) -> Model:
        """The model `name` is the id or an alias of, or a 404 not_found_error as the API words it."""
        model = self.find(name)
        if model is None:
            raise ApiError(404, f"model: {name}")
        return model

    def find(self, name: str) -> Model | None:
        """The model `name` is the id or an alias of, if the catalogue has it."""
        return self._by_name.get(name)

    def find_on(self, platform: str, name: str) -> Model | None:
        """The model `platform` (one of PLATFORMS) calls `name`, if the catalogue has it."""
        return self._by_platform[platform].get(name)

    def page(
        self,
        *,
        after_id: str | None,
        before_id: str | None,
        limit: int,
        lifecycle: Sequence[str] | None = None,
    ) -> JSON:
        """The page after `after_id`, before `before_id`, or from the start, of the models in `lifecycle`."""
        if after_id is not None and before_id is not None:
            raise ApiError(400, "after_id and before_id cannot be given together")
        stages = set(lifecycle or DEFAULT_LIFECYCLES)
        models = [model for model in self.models if model["lifecycle"] in stages]
        if before_id is not None:
            end = _position(models, before_id, "before_id")
            start = max(0, end - limit)
            has_more = start > 0
        else:
            start = 0 if after_id is None else _position(models, after_id, "after_id") + 1
            end = start + limit
            has_more = end < len(models)
        data = models[start:end]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }


def _position(models: Sequence[Mapping[str, Any]], model_id: str, parameter: str) -> int:
    for position, model in enumerate(models):
        if model["id"] == model_id:
            return position
    raise ApiError(400, f"{parameter}: no model with id '{model_id}'")


def _entry(entry: Any, position: int) -> tuple[JSON, Model]:
    """A catalogue entry as the ModelInfo it serves and the Model the rules read."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"entry {position} is not a mapping")
    where = f"entry {position}"
    own = {name: entry[name] for name in OWN_FIELDS if name in entry}
    served = {name: value for name, value in entry.items() if name not in own}
    served["capabilities"] = _capabilities(served.get("capabilities"), where)
    info = _model_info(served, position)
    aliases = own.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(alias, str) and alias for alias in aliases):
        raise ValueError(f"{where}: aliases must be a list of names")
    minimum = own.get("min_cache_tokens", DEFAULT_MIN_CACHE_TOKENS)
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1:
        raise ValueError(f"{where}: min_cache_tokens must be a positive integer")
    tokenizer = tokens.FAMILIES.get(own.get("tokenizer", "classic"))
    if tokenizer is None:
        raise ValueError(f"{where}: tokenizer must be one of {', '.join(tokens.FAMILIES)}")
    platform_ids = own.get("platform_ids", {})
    if not isinstance(platform_ids, Mapping) or not all(
        platform in PLATFORMS and isinstance(name, str) and name for platform, name in platform_ids.items()
    ):
        raise ValueError(f"{where}: platform_ids must map some of {', '.join(PLATFORMS)} to names")
    model = Model(
        id=info["id"],
        aliases=tuple(aliases),
        lifecycle=info["lifecycle"],
        max_input_tokens=info.get("max_input_tokens"),
        max_tokens=info.get("max_tokens"),
        min_cache_tokens=minimum,
        capabilities=info["capabilities"],
        rules=_rules(own.get("rules") or {}, f"{where}: rules"),
        defaults=_defaults(own.get("defaults") or {}, f"{where}: defaults"),
        tokenizer=tokenizer,
        platform_ids=dict(platform_ids),
    )
    return info, model


def _capabilities(given: Any, where: str) -> JSON:
    """Every capability key, as ModelCapabilities serves them: the entry's own laid over ALL_CAPABILITIES."""
    return _laid_over(ALL_CAPABILITIES, given or {}, f"{where}: capabilities")


def _laid_over(default: Mapping[str, Any], given: Any, where: str) -> JSON:
    if not isinstance(given, Mapping):
        raise ValueError(f"{where} must be a mapping")
    unknown = sorted(set(given) - set(default))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(default))})")
    merged: JSON = {}
    for key, value in default.items():
        if key not in given:
            merged[key] = copy.deepcopy(value)
        elif isinstance(value, Mapping):
            merged[key] = _laid_over(value, given[key], f"{where}.{key}")
        elif not isinstance(given[key], bool):
            raise ValueError(f"{where}.{key} must be true or false")
        else:
            merged[key] = given[key]
    return merged


def _rules(given: Any, where: str) -> ModelRules:
    if not isinstance(given, Mapping):
        raise ValueError(f"{where} must be a mapping")
    try:
        values: dict[str, Any] = {name: tuple(it) if isinstance(it, list) else it for name, it in given.items()}
        rules = ModelRules(**values)
    except TypeError:
        raise ValueError(f"{where}: known rules are {', '.join(ModelRules.__dataclass_fields__)}") from None
    if rules.sampling not in SAMPLING:
        raise ValueError(f"{where}: sampling must be one of {', '.join(SAMPLING)}")
    for name in ("prefill", "forced_tool_choice", "system_messages"):
        if not isinstance(getattr(rules, name), bool):
            raise ValueError(f"{where}: {name} must be true or false")
    for name in ("computer_use", "speed", "thinking_off_efforts"):
        values = getattr(rules, name)
        if values is not None and not (isinstance(values, tuple) and all(isinstance(v, str) for v in values)):
            raise ValueError(f"{where}: {name} must be a list of names")
    return rules


def _defaults(given: Any, where: str) -> ModelDefaults:
    if not isinstance(given, Mapping):
        raise ValueError(f"{where} must be a mapping")
    try:
        defaults = ModelDefaults(**given)
    except TypeError:
        raise ValueError(f"{where}: known defaults are {', '.join(ModelDefaults.__dataclass_fields__)}") from None
    thinking = defaults.thinking
    if thinking is not None and (not isinstance(thinking, Mapping) or thinking.get("type") not in THINKING_TYPES):
        raise ValueError(f"{where}: thinking must be a thinking config with a type of {', '.join(THINKING_TYPES)}")
    if defaults.effort is not None and defaults.effort not in EFFORTS:
        raise ValueError(f"{where}: effort must be one of {', '.join(EFFORTS)}")
    if defaults.display not in ("summarized", "omitted"):
        raise ValueError(f"{where}: display must be summarized or omitted")
    return defaults


def _model_info(entry: Mapping[str, Any], position: int) -> JSON:
    """A catalogue entry as a ModelInfo, checked and with defaults filled in."""
    missing = [name for name in REQUIRED_FIELDS if not entry.get(name)]
    if missing:
        raise ValueError(f"entry {position} lacks {', '.join(missing)}")
    model: JSON = {"type": "model", "lifecycle": "active", "deprecated_at": None, "retires_at": None, **entry}
    model["id"] = str(model["id"])
    if model["lifecycle"] not in LIFECYCLES:
        raise ValueError(f"entry {position}: lifecycle must be one of {', '.join(LIFECYCLES)}")
    for name in DATE_FIELDS:
        if model[name] is not None:
            model[name] = _rfc3339(model[name], f"entry {position}: {name}")
    return model


def _rfc3339(value: Any, where: str) -> str:
    if isinstance(value, datetime):
        value = value.isoformat().replace("+00:00", "Z")
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{where} is not an RFC 3339 date-time: {value!r}") from None
    return str(value)
