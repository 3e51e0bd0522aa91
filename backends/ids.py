"""Unique ids in the API's style: a prefix, then random base-62 text (msg_…, toolu_…, req_…).

Ids are random rather than counted, so they stay unique across gunicorn
workers and restarts without any shared state.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LENGTH = 24  # 24 base-62 characters: about 143 random bits


def new_id(prefix: str) -> str:
    """A fresh id such as `msg_01Xy…`; the `01` mirrors the real API's ids."""
    number = secrets.randbits(143)
    characters = []
    for _ in range(LENGTH - 2):
        number, digit = divmod(number, 62)
        characters.append(ALPHABET[digit])
    return f"{prefix}_01{''.join(characters)}"
