"""GET /health: for load balancers; needs no key."""

from __future__ import annotations

from typing import Any

from app.api import backend


def check() -> dict[str, Any]:
    """The server is up and its backend is loaded."""
    return {"status": "ok", "backend": backend().name}
