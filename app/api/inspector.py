"""The inspector's routes: its page and its files, and a journal entry as a scripted rule (its copy button).

The page, its script and its style sheet ship in app/inspector/ as package
data, read once. Each is served under a strict Content-Security-Policy: the
page's own files only, no inline script or style, nothing framed, no form
posted anywhere; the page puts every journal value in the document as text.
"""

from __future__ import annotations

import functools
from pathlib import Path

from flask import Response

from app.api import store
from app.api.admin import PAGE_BYTES
from backends.scripted.replay import rule_for_entry, rules_yaml
from backends.wire import ApiError

FILES = Path(__file__).resolve().parents[1] / "inspector"
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
TYPES = {
    "index.html": "text/html",
    "inspector.js": "text/javascript",
    "inspector.css": "text/css",
    "icon.svg": "image/svg+xml",
}


def page() -> Response:
    """The inspector's page."""
    return _served("index.html")


def asset(asset: str) -> Response:
    """The inspector's script, style sheet or icon (the spec names which)."""
    return _served(asset)


def rule(entry_id: int) -> Response:
    """A scripted rule, as YAML, that answers the entry's request as it was answered."""
    found = store().journal_page(after=entry_id - 1, limit=1, max_bytes=PAGE_BYTES).entries
    if not found or found[0]["id"] != entry_id:
        raise ApiError(404, f"There is no journal entry {entry_id} in this scope")
    try:
        made = rule_for_entry(found[0])
    except ValueError as reason:
        raise ApiError(400, f"Journal entry {entry_id} cannot be replayed by a rule: {reason}") from None
    return Response(rules_yaml([made]), mimetype="application/yaml")


def _served(name: str) -> Response:
    return Response(_text(name), mimetype=TYPES[name], headers=HEADERS)


@functools.cache
def _text(name: str) -> str:
    return (FILES / name).read_text(encoding="utf-8")
