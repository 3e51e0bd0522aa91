"""Redaction: the gateway's secrets masked out of everything the proxy passes on, logs or records.

The secrets are the upstream key, the clients' gateway keys and the admin key.
An upstream can send any of them back — an error page that echoes the
request, a JSON error quoting a header, a header of its own — and a client can
write one into a message that gets recorded. So one function, `redacted`, is
applied at every exit: to whatever the proxy takes from the upstream (headers,
bodies, error messages, events) before it leaves the backend for a client, the
log or the journal, and to whatever the recorder writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MASK = "[masked]"


class Secrets:
    """The secrets to mask, and the function that masks them."""

    def __init__(self, values: Iterable[str | None]) -> None:
        # Longest first, so that a secret containing another one is masked whole.
        self.values = tuple(sorted({value for value in values if value}, key=len, reverse=True))

    def redacted(self, value: Any) -> Any:
        """`value` (text, or JSON-like data: its keys and values) with every secret replaced by MASK."""
        return _masked(value, self.values) if self.values else value


def _masked(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, list):
        return [_masked(item, secrets) for item in value]
    if isinstance(value, (dict, Mapping)):  # dict first: checking the abstract Mapping takes longer
        return {_masked(key, secrets): _masked(item, secrets) for key, item in value.items()}
    return value
