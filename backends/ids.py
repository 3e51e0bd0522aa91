"""Unique ids in the API's style: a prefix, then random base-62 text (msg_…, toolu_…, req_…).

Ids are random rather than counted, so they stay unique across gunicorn
workers and restarts without any shared state.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LENGTH = 24  # "01" and 22 random characters, as in the real API's ids

#: Each random byte names a character: bytes 0–247 fall evenly on the 62, 248–255 on the first eight.
#: So a character carries 5.95 bits, not quite log2(62) = 5.954, and an id some 130: plenty for ids,
#: which need to be unique, not secret. One C call rather than a Python step per character (an id is
#: made twice per request: the message's and the request's).
_CHARACTER_OF_BYTE = bytes(ALPHABET.encode()[byte % len(ALPHABET)] for byte in range(256))


def new_id(prefix: str) -> str:
    """A fresh id such as `msg_01Xy…`; the `01` mirrors the real API's ids."""
    return f"{prefix}_01{secrets.token_bytes(LENGTH - 2).translate(_CHARACTER_OF_BYTE).decode()}"
