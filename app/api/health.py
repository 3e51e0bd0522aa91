"""GET /health: for load balancers; needs no key."""

from __future__ import annotations

from typing import Any

from app.api import backend, store


def check() -> tuple[dict[str, Any], int]:
    """The server is up and its backend is loaded; a 503 while its state store has no room to write."""
    answer: dict[str, Any] = {"status": "ok", "backend": backend().name}
    if not store().writable():
        return {**answer, "status": "degraded", "store": "full"}, 503
    return {**answer, "store": "ok"}, 200
