"""The admin routes under /_understudy: read and clear the request journal, reset sequences.

They exist only when UNDERSTUDY_ADMIN_KEY is set, and need that key in the
`x-understudy-admin-key` header (or, from the inspector, as HTTP Basic's password).
"""

from __future__ import annotations

from typing import Any

from app.api import store

#: A page of the journal stops before this many bytes of entries (but holds one at least), whatever its limit:
#: 300 entries of 1 MB made one 312 MB answer, and a worker of 1.35 GB.
PAGE_BYTES = 8 * 1024 * 1024


def list_requests(
    after: int = 0,
    limit: int = 100,
    path: str | None = None,
    method: str | None = None,
    rule: str | None = None,
    status: int | None = None,
    request_id: str | None = None,
    newest: bool = False,
) -> dict[str, Any]:
    """Journal entries oldest first (or `newest` first), filtered; `after` an entry id, to read on from there."""
    filters = {"path": path, "method": method, "rule": rule, "status": status, "request_id": request_id}
    page = store().journal_page(after=after, limit=limit, max_bytes=PAGE_BYTES, newest=newest, **filters)
    return {
        "data": page.entries,
        "last_id": page.entries[-1]["id"] if page.entries else after,
        "has_more": page.has_more,
    }


def clear_requests() -> tuple[str, int]:
    """Empty the journal."""
    store().clear_entries()
    return "", 204


def reset() -> tuple[str, int]:
    """Empty the journal, and start every scripted sequence again from its first reply."""
    store().clear_entries()  # first: on a full disk, it makes the room
    store().reset_counters()
    return "", 204
