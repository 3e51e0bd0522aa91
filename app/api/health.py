"""GET /health: for load balancers; needs no key."""

from __future__ import annotations

from typing import Any

from app.api import backend, store
from backends.state import StoreUnavailable


def check() -> tuple[dict[str, Any], int]:
    """The server is up and its backend is loaded; a 503 while its state store cannot be reached or written."""
    answer: dict[str, Any] = {"status": "ok", "backend": backend().name}
    try:
        store().ping()
    except StoreUnavailable:
        return {**answer, "status": "degraded", "store": "unreachable"}, 503
    if not store().writable():
        return {**answer, "status": "degraded", "store": "full"}, 503
    return {**answer, "store": "ok"}, 200
