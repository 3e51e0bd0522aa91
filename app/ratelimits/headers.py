"""The real API's formats: the anthropic-ratelimit-* headers, retry-after, and the 429's words.

The rate limits page (platform.claude.com/docs/en/api/rate-limits, "Response
headers") defines each header: `-limit` the most allowed in any period,
`-remaining` what is left before being limited (token counts "rounded to the
nearest thousand"), `-reset` "the time when the rate limit will be fully
replenished, provided in RFC 3339 format"; `anthropic-ratelimit-tokens-*`
shows "the most restrictive limit currently in effect", which without workspace
limits is "the sum of input and output tokens"; `retry-after` is "the number
of seconds to wait until you can retry the request. Earlier retries will fail."
Where several sets of buckets apply (a key's and the `total`), each header
shows the one with the least left.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from backends.state import Bucket

#: A bucket's name, as the headers and the 429's words name it.
HEADER_NAMES = {"requests": "requests", "input_tokens": "input-tokens", "output_tokens": "output-tokens"}
UNITS = {"requests": "requests", "input_tokens": "input tokens", "output_tokens": "output tokens"}
PREFIX = "anthropic-ratelimit-"
#: The words of the API's 429 (as clients have quoted it since late 2025), the limit and whose it is filled in.
MESSAGE = (
    "This request would exceed your organization's rate limit of {limit:,} {unit} per minute ({whose}). "
    "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for "
    "current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may "
    "also contact sales at https://claude.com/contact-sales to discuss your options for a rate limit increase."
)


class Reading(NamedTuple):
    """A bucket's level at the store's clock `now`."""

    bucket: Bucket
    level: float
    now: float

    @property
    def left(self) -> float:
        return self.level if self.level > 0 else 0.0

    @property
    def full_at(self) -> float:
        """When the bucket will be full again (Unix seconds)."""
        return self.now + max(0.0, self.bucket.capacity - self.level) / self.bucket.per_second


#: Each kind's three headers, and the tokens total's.
NAMES = {
    kind: tuple(f"{PREFIX}{header}-{field}" for field in ("limit", "remaining", "reset"))
    for kind, header in (*HEADER_NAMES.items(), ("tokens", "tokens"))
}
_TIMES: dict[int, str] = {}


def rfc3339(moment: float) -> str:
    """`moment` (Unix seconds), rounded up to the second, as the API writes times: `2025-01-01T00:01:00Z`."""
    second = math.ceil(moment)
    text = _TIMES.get(second)
    if text is None:  # each second's text made once: a request asks for three or four, mostly the same
        if len(_TIMES) > 4096:
            _TIMES.clear()
        text = _TIMES[second] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    return text


def thousands(count: float, limit: int) -> int:
    """A token count rounded to the nearest thousand, as the API sends it, never above the limit."""
    return min(limit, math.floor(count / 1000 + 0.5) * 1000)


def ratelimit_headers(readings: Iterable[Reading]) -> dict[str, str]:
    """The anthropic-ratelimit-* headers for these buckets: for each kind, the bucket with the least left."""
    tightest: dict[str, Reading] = {}
    for reading in readings:
        known = tightest.get(reading.bucket.name)
        if known is None or (reading.left, reading.bucket.capacity) < (known.left, known.bucket.capacity):
            tightest[reading.bucket.name] = reading
    headers: dict[str, str] = {}
    tokens_limit, tokens_left, tokens_full_at = 0, 0.0, 0.0
    for name, reading in tightest.items():
        limit = int(reading.bucket.capacity)
        left, full_at = reading.left, reading.full_at
        limit_name, remaining_name, reset_name = NAMES[name]
        headers[limit_name] = str(limit)
        headers[remaining_name] = str(math.floor(left) if name == "requests" else thousands(left, limit))
        headers[reset_name] = rfc3339(full_at)
        if name != "requests":
            tokens_limit, tokens_left, tokens_full_at = (
                tokens_limit + limit,
                tokens_left + left,
                max(tokens_full_at, full_at),
            )
    if tokens_limit:
        limit_name, remaining_name, reset_name = NAMES["tokens"]
        headers[limit_name] = str(tokens_limit)
        headers[remaining_name] = str(thousands(tokens_left, tokens_limit))
        headers[reset_name] = rfc3339(tokens_full_at)
    return headers


def retry_after(readings: Sequence[Reading]) -> int:
    """Whole seconds until every refused bucket holds its cost (a bucket too small for it: until it is full)."""
    waits = [
        (min(reading.bucket.cost, reading.bucket.capacity) - reading.level) / reading.bucket.per_second
        for reading in readings
        if reading.level < reading.bucket.cost
    ]
    return max(1, math.ceil(max(waits, default=0.0)))


def refusal(readings: Sequence[Reading], *, who: str, model: str | None) -> str:
    """The 429's message: the first limit the request would exceed (requests, then input, then output tokens)."""
    refused = next(reading for reading in readings if reading.level < reading.bucket.cost)
    whose = f"org: {organization(who)}" + (f", model: {model}" if model else "")
    return MESSAGE.format(limit=int(refused.bucket.capacity), unit=UNITS[refused.bucket.name], whose=whose)


def organization(who: str) -> str:
    """A stable organization id for whoever's buckets these are (a UUID made from their name, never the key)."""
    return str(uuid.UUID(bytes=hashlib.sha256(who.encode()).digest()[:16], version=4))
