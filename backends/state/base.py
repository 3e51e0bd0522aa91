"""The state store's interface: what every part that shares state across workers and hosts may ask of it.

gunicorn runs several worker processes, and two servers may run on two hosts;
a scripted test like "the first call gets a 529, the second a 200" must hold
whichever of them takes each call, and so must the journal a test reads back,
a batch created on one and read on another, a prompt cached through one.
`StateStore` is that interface; `SQLiteStore` (sqlite_store.py) keeps it in one
file for the workers of one machine, `RedisStore` (redis_store.py) in Redis
for several hosts. Every method keeps its state in the current scope
(scopes.py), never in another's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from backends.wire import ApiError

#: A file's number (its place in upload order) and its metadata (its FileMetadata).
FileRow = tuple[int, dict[str, Any]]
#: The journal's filters (entry fields compared for equality).
FILTERS = ("path", "rule", "status", "method", "request_id")


class StoreFull(ApiError):
    """A write found no room (SQLite's "database or disk is full"): a 503 api_error, whichever layer meets it."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "The state store is full (database or disk is full): scripted sequences cannot advance and requests "
            "are not journaled until there is room again",
        )


class StoreUnavailable(ApiError):
    """The store cannot be reached (Redis down, say): a 503 api_error, which the SDKs retry, until it is back."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "The state store is unreachable: requests that need shared state (sequences, the journal, batches, "
            "files, prompt caches, rate limits) fail until it is back",
        )


@dataclass(frozen=True)
class Bucket:
    """A token bucket to take from: it holds up to `capacity`, refilled continuously at `per_second`."""

    name: str
    capacity: float
    per_second: float
    cost: float

    def costing(self, cost: float) -> Bucket:
        """This bucket with another cost (dataclasses.replace does as much, in some ten times as long)."""
        return Bucket(self.name, self.capacity, self.per_second, cost)


@dataclass(frozen=True)
class BucketLevels:
    """What a take found: whether it was taken, each bucket's level after it (or as it stood, if refused), and
    the store's clock when it happened (Unix seconds)."""

    taken: bool
    levels: tuple[float, ...]
    now: float


@dataclass(frozen=True)
class JournalPage:
    """Journal entries, oldest first (or newest first), and whether more match beyond the last of them."""

    entries: list[dict[str, Any]]
    has_more: bool


class StateStore(Protocol):
    """What the scripted backend, the journal, the admin routes, the echo backend's prompt cache and the Files API need.

    Every method that writes raises StoreFull when there is no room for the write.
    """

    @property
    def location(self) -> str:
        """Where the store keeps its state, for messages (a Redis URL without its password, a file's path)."""

    def ping(self) -> None:
        """Reach the store now: StoreUnavailable if it cannot be reached."""

    def next_count(self, key: str) -> int:
        """Add one to the counter `key` and return its new value (1 the first time), atomically."""

    def reset_counters(self) -> None:
        """Set every counter back to zero (on a full disk too, when it can)."""

    def add_entry(self, entry: Mapping[str, Any]) -> int:
        """Append a journal entry, deleting the oldest ones beyond the store's limits; its id."""

    def complete_entry(self, entry_id: int, fields: Mapping[str, Any]) -> None:
        """Add `fields` to the entry `entry_id` of the current scope (what its response turned out to be, once it
        ended), keeping the journal within the store's limits; nothing if the entry is gone (deleted, cleared)."""

    def journal_page(
        self, *, after: int, limit: int, max_bytes: int, newest: bool = False, **filters: Any
    ) -> JournalPage:
        """Entries with ids above `after`, oldest first (or, `newest`, the newest of them first), matching `filters`
        (see FILTERS): at most `limit` of them and `max_bytes` of entries, but one at least."""

    def clear_entries(self) -> None:
        """Empty the journal (on a full disk too, when it can)."""

    def save_script(self, path: str, text: str, version: int) -> None:
        """Remember a script text that loaded without error, unless one of a later `version` is already kept.

        `version` grows with every edit of the file (its ctime): two workers that load two edits
        at once may save them in either order, and the later edit is kept all the same.
        """

    def last_script(self, path: str) -> str | None:
        """The last good script text for `path`, if any."""

    def put_cache_entry(self, prefix: str, expires_at: float) -> None:
        """Remember that the prompt prefix hashed as `prefix` is cached until `expires_at` (a Unix time)."""

    def cache_entry(self, prefix: str) -> float | None:
        """When the cache entry for `prefix` expires, if there is one (expired or not)."""

    def add_file(self, metadata: Mapping[str, Any]) -> int:
        """Record an uploaded file's metadata (its `id` among it); its number, larger than every earlier one."""

    def file(self, file_id: str) -> FileRow | None:
        """The number and metadata of the file `file_id`, if it exists."""

    def files(self, *, below: int | None = None, above: int | None = None, limit: int = 20) -> list[FileRow]:
        """Up to `limit` files, newest first: those numbered below `below`, or else the ones just above `above`."""

    def files_by_id(self, file_ids: Sequence[str]) -> list[FileRow]:
        """The files among `file_ids` that exist, newest first."""

    def delete_file(self, file_id: str) -> bool:
        """Forget the file `file_id`; whether it existed."""

    def take_tokens(self, subject: str, buckets: Sequence[Bucket], *, force: bool = False) -> BucketLevels:
        """Take each bucket's `cost` from its level, refilled first for the time since it was last touched, all or
        none of them, atomically: none when one has too few (unless `force`: corrections at a request's end).

        `subject` names whose buckets they are (an API key's hash, a scope); the store's clock refills them.
        """

    def writable(self) -> bool:
        """Whether the store can write now (a small write, tried)."""

    def close(self) -> None:
        """Let go of what the store holds open; it is not used afterwards."""
