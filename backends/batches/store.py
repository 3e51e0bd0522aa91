"""The Message Batches store's interface: batches and their requests, claimed by the workers with leases.

Every gunicorn worker (of every host) answers batch requests in the background,
and they share the work through this store. A worker *claims* a run of a
batch's unanswered requests — its claim token and a lease time written on them
in one atomic step, so no two workers hold the same request — answers them,
and writes their results in one step that keeps only the results of requests
its claim still holds. A worker killed mid-run loses nothing: once its lease
has passed, another worker claims those requests again, and since a result is
kept only for the claim that holds its request, every request gets exactly one
result. Lease times are the caller's clock (the processor's).

Scopes (backends/state/scopes.py). A batch belongs to the scope it was created
in. What a client names by id (create, get, page, request_cancel, delete) is
looked up in the current scope only: another scope's batch is not found. What
the processor does (running, claim … sweep_downloads) takes the batch itself,
and `running()` lists every scope's batches; the processor answers each in its
own scope.

Results are read back a page at a time, in the order of the batch's requests,
so a 100,000-request batch is never held in memory whole; a download under way
holds a lease that keeps the requests of a batch deleted meanwhile until it has
read them all, so a download is never cut short by a delete.

Two stores: `SQLiteBatchStore` (sqlite_store.py), in the state file of one
machine, and `RedisBatchStore` (redis_store.py), for servers on several hosts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Protocol

OUTCOMES = ("succeeded", "errored", "canceled", "expired")
#: A download of results holds the batch's requests this long past its last renewal (renewed halfway through):
#: a download whose worker died lets go of them once it passes.
DOWNLOAD_LEASE_SECONDS = 600.0


@dataclass(frozen=True)
class StoredBatch:
    """One batch as the store holds it."""

    number: int  # creation order, across scopes (and hosts)
    id: str
    scope: str
    status: str  # in_progress, canceling or ended
    total: int
    unanswered: int
    created_at: float
    expires_at: float
    done_after: float  # the pace: not ended before this, unless canceled or expired
    cancel_initiated_at: float | None
    ended_at: float | None
    #: Requests per outcome, once the batch has ended.
    counts: dict[str, int] | None
    #: The headers each request is answered with: the create request's, secrets left out.
    headers: dict[str, str]

    def answerable(self, now: float) -> int:
        """How many of the requests may have been answered by `now`: all of them, or evenly across the pace."""
        pace = self.done_after - self.created_at
        if pace <= 0:
            return self.total
        return min(self.total, int(self.total * (now - self.created_at) / pace) + 1)


@dataclass(frozen=True)
class Claimed:
    """A request a worker has claimed, to answer."""

    position: int
    custom_id: str
    params: str  # JSON


@dataclass(frozen=True)
class Answer:
    """A claimed request's result."""

    position: int
    outcome: str  # succeeded or errored
    result: str  # the result object as JSON


def bare_result(outcome: str) -> str:
    """The result of a request that was never answered: `{"type":"canceled"}` or `{"type":"expired"}`."""
    return f'{{"type":"{outcome}"}}'


class BatchStore(Protocol):
    """Batches and their requests; every change one atomic step of the store's.

    A write that finds no room raises StoreFull, a store that cannot be reached StoreUnavailable (both 503s).
    """

    # ------------------------------------------- by id, in the current scope
    def create(
        self,
        batch_id: str,
        *,
        created_at: float,
        expires_at: float,
        done_after: float,
        headers: dict[str, str],
        requests: Sequence[tuple[str, str]],
    ) -> StoredBatch:
        """Store a new batch of (custom_id, params JSON) requests in the current scope, in_progress, all at once or
        not at all (no one sees it before all of it is there)."""

    def get(self, batch_id: str) -> StoredBatch | None:
        """The current scope's batch with this id, if there is one."""

    def page(
        self, *, after: StoredBatch | None, before: StoredBatch | None, limit: int
    ) -> tuple[list[StoredBatch], bool]:
        """The current scope's batches newest first: older than `after`, newer than `before`, or the newest; and
        whether more follow."""

    def request_cancel(self, batch_id: str, now: float) -> StoredBatch | None:
        """Mark an in_progress batch canceling; the batch as it then is (a batch in another state is unchanged)."""

    def delete(self, batch_id: str, now: float) -> StoredBatch | None:
        """Delete the batch if it has ended; the batch as it was before (None: no such batch).

        Its requests go with it, unless a download of its results is reading them: they then outlive the
        batch until the last such download ends (or its lease passes, `sweep_downloads`).
        """

    # ------------------------------------------------- the processor's work
    def running(self) -> list[StoredBatch]:
        """Every scope's batches that have not ended, oldest first."""

    def claim(self, batch: StoredBatch, token: str, *, now: float, lease_until: float, limit: int) -> list[Claimed]:
        """Claim up to `limit` of the batch's due, unanswered requests that no live lease holds, in request order."""

    def renew(self, batch: StoredBatch, token: str, lease_until: float) -> None:
        """Extend the lease of the requests a claim still holds."""

    def complete(self, batch: StoredBatch, token: str, answers: Sequence[Answer]) -> list[Answer]:
        """Keep the answers whose requests the claim still holds (another worker may have taken some over); those."""

    def release(self, batch: StoredBatch, token: str) -> None:
        """Hand back the requests a claim holds but did not answer (its worker is stopping)."""

    def close_out(self, batch: StoredBatch, outcome: str, now: float) -> int:
        """Give every unanswered request no live claim holds this outcome (canceled, expired); how many."""

    def finish(self, batch: StoredBatch, now: float) -> bool:
        """End the batch if every request has its result and its pace allows (or it was canceled or expired)."""

    # ---------------------------------------------------------------- results
    def result_pages(
        self, batch: StoredBatch, *, page_size: int, clock: Callable[[], float] = time.time
    ) -> Generator[str, None, None]:
        """The batch's results as JSON Lines, in request order, `page_size` lines to a page, read from the batch's
        own scope; the download holds a lease, renewed as it reads, until it ends or is closed."""

    def sweep_downloads(self, now: float) -> None:
        """Forget the downloads whose lease has passed (their worker died mid-download), and the requests of
        deleted batches that only they still held."""
