"""GET /v1/models and GET /v1/models/{model_id}."""

from __future__ import annotations

from flask import Response

from app.handlers import backend
from app.responses import json_response


def list_models(limit: int = 20, after_id: str | None = None, before_id: str | None = None) -> Response:
    """One page of the model catalogue."""
    return json_response(backend().list_models(after_id=after_id, before_id=before_id, limit=limit))


def get_model(model_id: str) -> Response:
    """One model by id."""
    return json_response(backend().get_model(model_id))
