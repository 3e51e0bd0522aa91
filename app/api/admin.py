"""The admin routes under /_understudy: read and clear the request journal, reset sequences.

They exist only when UNDERSTUDY_ADMIN_KEY is set, and need that key in the
`x-understudy-admin-key` header.
"""

from __future__ import annotations

from typing import Any

from app.api import store


def list_requests(
    after: int = 0,
    limit: int = 100,
    path: str | None = None,
    method: str | None = None,
    rule: str | None = None,
    status: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Journal entries oldest first, filtered; `after` an entry id, to read on from there."""
    filters = {"path": path, "method": method, "rule": rule, "status": status, "request_id": request_id}
    entries = store().entries(after=after, limit=limit, **filters)
    return {"data": entries, "last_id": entries[-1]["id"] if entries else after}


def clear_requests() -> tuple[str, int]:
    """Empty the journal."""
    store().clear_entries()
    return "", 204


def reset() -> tuple[str, int]:
    """Start every scripted sequence again from its first reply, and empty the journal."""
    store().reset_counters()
    store().clear_entries()
    return "", 204
