"""GET /v1/models and GET /v1/models/{model_id}."""

from __future__ import annotations

from flask import Response

from app.api import backend, request_headers
from app.api.responses import json_response


def list_models(
    limit: int = 20, after_id: str | None = None, before_id: str | None = None, lifecycle: list[str] | None = None
) -> Response:
    """One page of the model catalogue, of the models in the `lifecycle[]` stages (Connexion drops the brackets)."""
    page = backend().list_models(
        after_id=after_id,
        before_id=before_id,
        limit=limit,
        lifecycle=lifecycle,
        headers=request_headers(),
    )
    return json_response(page)


def get_model(model_id: str) -> Response:
    """One model by id."""
    return json_response(backend().get_model(model_id, headers=request_headers()))
