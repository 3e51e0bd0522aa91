"""Leases: a process's share of a bucket, taken from the store ahead of the requests that will use it.

A take from the shared store is a round trip on every request's path: about
0.1 ms on SQLite (a read and a write under the writer lock) and 0.25 ms on
Redis (a Lua script through redis-py). While a bucket is far from empty, a take
also takes a lease: LEASE_SHARE of each bucket's capacity more, held by this
process; the requests that follow are admitted from it in memory until it runs
out or LEASE_SECONDS pass, and then what is left of it goes back to the store
with the corrections. LiteLLM's proxy on Redis does the like: it counts in
memory and writes the counts to Redis in batches.

What a lease holds is taken in the store, so every worker and host sees it
taken: a lease never lets a request through that the buckets could not pay
for. What it costs is tokens that sit unused in a lease for up to
LEASE_SECONDS, where another worker's request cannot have them. So a lease is
taken only while the bucket keeps at least KEEP_SHARE of its capacity after it,
and only when it holds at least MIN_REQUESTS requests' worth of every bucket:
near a limit, and for limits small beside their requests, every take is the
store's, exactly as without leases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.ratelimits.headers import Reading
from backends.state import Bucket, BucketLevels
from backends.state.buckets import refilled

#: A lease pays for twice the requests the last one paid for, at least this many (the request's costs each)...
MIN_REQUESTS = 4
#: ...but never more than this share of a bucket's capacity (1/20: three seconds of its refill);
LEASE_SHARE = 0.05
#: ...and it is taken only while the bucket keeps at least this share of its capacity after it.
KEEP_SHARE = 0.5
#: What is left of a lease goes back to the store after this long.
LEASE_SECONDS = 0.1

#: A subject's buckets to be given back to the store (their costs negative): what the corrections write.
GiveBack = tuple[str, tuple[Bucket, ...]]


@dataclass
class _Lease:
    """What a take left in the store (`levels`, at the store's clock `now`) and what this process holds beyond it."""

    buckets: tuple[Bucket, ...]
    levels: tuple[float, ...]
    now: float
    taken_at: float  # time.monotonic() when taken
    left: list[float]  # what the lease holds yet, bucket by bucket
    paid: int = 0  # the requests it has paid for

    def readings(self, buckets: Sequence[Bucket], at: float) -> list[Reading]:
        """The buckets as this process sees them at `at` (time.monotonic()): the store's levels, refilled, and the
        lease's rest, which is this process's to spend."""
        now = self.now + (at - self.taken_at)
        return [
            Reading(bucket, refilled(level, self.now, bucket, now) + left, now)
            for bucket, level, left in zip(buckets, self.levels, self.left, strict=True)
        ]

    def give_back(self, subject: str) -> GiveBack | None:
        buckets = tuple(bucket.costing(-left) for bucket, left in zip(self.buckets, self.left, strict=True) if left)
        return (subject, buckets) if buckets else None


class Leases:
    """This process's leases and, for each subject, the levels its last take found (whether a lease would fit).

    A subject's buckets are always the same buckets (its limits are the limiter's, fixed for its life), whatever
    each request costs; so a lease is known by its subject alone.
    """

    def __init__(self) -> None:
        self._held: dict[str, _Lease] = {}
        self._lock = threading.Lock()  # the handlers' threads admit at once

    def admit(self, subject: str, buckets: Sequence[Bucket]) -> list[Reading] | None:
        """Take `buckets`' costs from the subject's lease, if it is alive and holds them all; else None."""
        at = time.monotonic()
        with self._lock:
            lease = self._held.get(subject)
            if (
                lease is None
                or at - lease.taken_at > LEASE_SECONDS
                or any(left < bucket.cost for left, bucket in zip(lease.left, buckets, strict=True))
            ):
                return None
            for place, bucket in enumerate(buckets):
                lease.left[place] -= bucket.cost
            lease.paid += 1
            return lease.readings(buckets, at)

    def wanted(self, subject: str, buckets: Sequence[Bucket]) -> tuple[float, ...] | None:
        """The lease to take beside `buckets`' costs, bucket by bucket, when the subject's last take found room for
        it; else None (and the take is the request's alone). Sized by use: twice what the last lease paid for, so
        that what leases hold beyond their use, and what the headers of another process's requests miss, stays
        within a tenth of a second of the requests' own rate."""
        at = time.monotonic()
        with self._lock:
            last = self._held.get(subject)
        if last is None:
            return None
        now = last.now + (at - last.taken_at)
        requests = max(MIN_REQUESTS, 2 * (last.paid + 1))
        extra = tuple(min(requests * bucket.cost, bucket.capacity * LEASE_SHARE) for bucket in buckets)
        for bucket, level, left, more in zip(buckets, last.levels, last.left, extra, strict=True):
            if more < MIN_REQUESTS * bucket.cost:
                return None
            if refilled(level, last.now, bucket, now) + left - bucket.cost - more < KEEP_SHARE * bucket.capacity:
                return None
        return extra

    def hold(
        self, subject: str, buckets: Sequence[Bucket], extra: Sequence[float], found: BucketLevels
    ) -> tuple[list[Reading], GiveBack | None]:
        """Keep what a take found, with the lease it took (`extra`, nothing if none); the readings for the request's
        headers, and the rest of the lease this one replaces, to be given back."""
        lease = _Lease(tuple(buckets), found.levels, found.now, time.monotonic(), list(extra))
        with self._lock:
            replaced = self._held.get(subject)
            self._held[subject] = lease
        readings = lease.readings(buckets, lease.taken_at)
        return readings, replaced.give_back(subject) if replaced is not None else None

    def expired(self) -> list[GiveBack]:
        """The rest of every lease older than LEASE_SECONDS, let go of."""
        at = time.monotonic()
        with self._lock:
            old = [subject for subject, lease in self._held.items() if at - lease.taken_at > LEASE_SECONDS]
            return _given_back({subject: self._held.pop(subject) for subject in old})

    def release(self) -> list[GiveBack]:
        """The rest of every lease, let go of."""
        with self._lock:
            held, self._held = self._held, {}
        return _given_back(held)

    def forget(self) -> None:
        """In a child just forked: the parent's leases are the parent's to spend and give back."""
        self._held, self._lock = {}, threading.Lock()


def _given_back(leases: dict[str, _Lease]) -> list[GiveBack]:
    return [back for subject, lease in leases.items() if (back := lease.give_back(subject)) is not None]
