"""The model catalogue: a YAML data file served by the models routes, a page at a time.

Besides the ModelInfo fields it serves, an entry may carry two fields of
Understudy's own, kept out of what it serves: `aliases` (other names that
resolve to the model) and `min_cache_tokens` (the shortest prefix prompt
caching caches for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from backends.safe_yaml import safe_load
from backends.wire import JSON, ApiError

DEFAULT_FILE = Path(__file__).parent / "data" / "models.yaml"
REQUIRED_FIELDS = ("id", "display_name", "created_at")
DATE_FIELDS = ("created_at", "deprecated_at", "retires_at")
LIFECYCLES = ("active", "deprecated", "retired")
#: What a list shows when the client names no lifecycle: retired models only when asked for.
DEFAULT_LIFECYCLES = ("active", "deprecated")
#: The shortest cacheable prefix, for a model whose entry gives none.
DEFAULT_MIN_CACHE_TOKENS = 1024


@dataclass(frozen=True)
class ModelLimits:
    """What the Messages API enforces for one model, from its catalogue entry."""

    id: str
    aliases: tuple[str, ...]
    lifecycle: str
    max_input_tokens: int | None
    max_tokens: int | None
    min_cache_tokens: int


class ModelCatalogue:
    """The models, newest first, with cursor pagination as the API does it."""

    def __init__(self, models: Sequence[Mapping[str, Any]]) -> None:
        entries = [_entry(entry, position) for position, entry in enumerate(models)]
        entries.sort(key=lambda entry: entry[0]["created_at"], reverse=True)
        self.models: list[JSON] = [model for model, _ in entries]
        self._limits: dict[str, ModelLimits] = {}
        for _, limits in entries:
            for name in (limits.id, *limits.aliases):
                if name in self._limits:
                    raise ValueError(f"model ids and aliases must be unique: {name!r} is given twice")
                self._limits[name] = limits
        self._index = {model["id"]: position for position, model in enumerate(self.models)}

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
        return self.models[self._index[self.limits(model_id).id]]

    def limits(self, name: str) -> ModelLimits:
        """The limits of the model `name` is the id or an alias of, or a 404 not_found_error as the API words it."""
        limits = self.find(name)
        if limits is None:
            raise ApiError(404, f"model: {name}")
        return limits

    def find(self, name: str) -> ModelLimits | None:
        """The limits of the model `name` is the id or an alias of, if the catalogue has it."""
        return self._limits.get(name)

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


def _entry(entry: Any, position: int) -> tuple[JSON, ModelLimits]:
    """A catalogue entry as the ModelInfo it serves and the limits it sets."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"entry {position} is not a mapping")
    own = {name: entry[name] for name in ("aliases", "min_cache_tokens") if name in entry}
    model = _model_info({name: value for name, value in entry.items() if name not in own}, position)
    aliases = own.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(alias, str) and alias for alias in aliases):
        raise ValueError(f"entry {position}: aliases must be a list of names")
    minimum = own.get("min_cache_tokens", DEFAULT_MIN_CACHE_TOKENS)
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1:
        raise ValueError(f"entry {position}: min_cache_tokens must be a positive integer")
    limits = ModelLimits(
        id=model["id"],
        aliases=tuple(aliases),
        lifecycle=model["lifecycle"],
        max_input_tokens=model.get("max_input_tokens"),
        max_tokens=model.get("max_tokens"),
        min_cache_tokens=minimum,
    )
    return model, limits


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
