"""The Messages API's per-model limits, as the echo backend enforces them, from the model catalogue.

In the order the API checks them:
- a model the catalogue lacks, or a retired one, is a 404 `not_found_error` worded `model: NAME` (with
  `any_model` set, any name is served, with no limits);
- `max_tokens` over the model's maximum is a 400:
  `max_tokens: 128001 > 64000, which is the maximum allowed number of output tokens for MODEL-ID`;
- a prompt over the model's context window is a 400: `prompt is too long: 200251 tokens > 200000 maximum`;
- a prompt that fits, but leaves less room than `max_tokens`, is served: the reply stops where the window
  ends, with stop_reason `model_context_window_exceeded`, as every model the catalogue ships does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backends.catalogue import Model, ModelCatalogue
from backends.wire import ApiError


def model_for(catalogue: ModelCatalogue, name: str, *, any_model: bool) -> Model | None:
    """The catalogue's model for `name` (an id or alias); a 404 for a name it lacks or a retired model."""
    model = catalogue.find(name)
    if any_model:
        return model
    if model is None or model.lifecycle == "retired":
        raise ApiError(404, f"model: {name}")
    return model


def window_room(model: Model, body: Mapping[str, Any], input_tokens: int) -> int | None:
    """Check a create-message request against its model's limits: the API's 400 for one it breaks, else the
    tokens the context window leaves for output when fewer than max_tokens (None when max_tokens fits)."""
    max_tokens = body["max_tokens"]
    if model.max_tokens is not None and max_tokens > model.max_tokens:
        raise ApiError(
            400,
            f"max_tokens: {max_tokens} > {model.max_tokens}, "
            f"which is the maximum allowed number of output tokens for {model.id}",
        )
    window = model.max_input_tokens
    if window is None:
        return None
    if input_tokens > window:
        raise ApiError(400, f"prompt is too long: {input_tokens} tokens > {window} maximum")
    room = window - input_tokens
    return room if room < max_tokens else None
