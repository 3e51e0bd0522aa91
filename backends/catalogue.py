"""The model catalogue: a YAML data file served by the models routes, a page at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class ModelCatalogue:
    """The models, newest first, with cursor pagination as the API does it."""

    def __init__(self, models: Sequence[Mapping[str, Any]]) -> None:
        entries = [_model_info(entry, position) for position, entry in enumerate(models)]
        self.models: list[JSON] = sorted(entries, key=lambda model: model["created_at"], reverse=True)
        self._index = {model["id"]: position for position, model in enumerate(self.models)}
        if len(self._index) != len(self.models):
            raise ValueError("model ids must be unique")

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
        """One model by id, or a 404 not_found_error."""
        position = self._index.get(model_id)
        if position is None:
            raise ApiError(404, f"model: {model_id}")
        return self.models[position]

    def page(self, *, after_id: str | None, before_id: str | None, limit: int) -> JSON:
        """The page after `after_id`, before `before_id`, or from the start."""
        if after_id is not None and before_id is not None:
            raise ApiError(400, "after_id and before_id cannot be given together")
        if before_id is not None:
            end = self._position(before_id, "before_id")
            start = max(0, end - limit)
            has_more = start > 0
        else:
            start = 0 if after_id is None else self._position(after_id, "after_id") + 1
            end = start + limit
            has_more = end < len(self.models)
        data = self.models[start:end]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def _position(self, model_id: str, parameter: str) -> int:
        position = self._index.get(model_id)
        if position is None:
            raise ApiError(400, f"{parameter}: no model with id '{model_id}'")
        return position


def _model_info(entry: Any, position: int) -> JSON:
    """A catalogue entry as a ModelInfo, checked and with defaults filled in."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"entry {position} is not a mapping")
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
