"""StateStore in Redis (7 or later, or Valkey): the state of servers on several hosts, each scope's under one hash tag.

Servers that share one Redis share sequences, the journal, prompt caches, the
files' metadata and rate limits (Message Batches: backends/batches/redis_store.py),
so "a 529, then a reply" holds when the two calls go to different hosts. Each
step that must be atomic is one round trip: a counter is one HINCRBY, a journal
entry (with its retention) and a script's save are Lua scripts, run by SHA.

A scope's keys (`PREFIX:{scope=NAME}:…`, redis_client.py):

- `counters` — a hash of the scripted sequences' counters;
- `journal:next` — the last entry id given; `journal:ids` — the entries' ids, a sorted set scored by id;
  `journal:entries` — id → the entry as JSON; `journal:meta` — id → its filter fields and size, so a filtered
  page reads the entries it returns and no other; `journal:bytes` — the entries' total size;
- `cache:PREFIX_HASH` — a prompt-cache entry's expiry (the key itself expires an hour after it);
- `files:meta` — id → [number, metadata]; `files:numbers` — ids scored by number.

Shared by every scope: `{shared}:files:number` (the files' numbers, in upload order across hosts),
`{shared}:scripts` (the last good script per path, the server's own whatever the scope).

Retention is a scope's own: a scope's journal keeps its newest entries within the byte and entry limits
(a Redis Cluster cannot sum over slots); bound Redis as a whole with `maxmemory`, whose "OOM" refusals are
StoreFull (503), as a full disk is to the SQLite store.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from backends.state import buckets
from backends.state.base import FILTERS, Bucket, BucketLevels, FileRow, JournalPage, StoreFull, StoreUnavailable
from backends.state.redis_client import connect, needs_redis, reachable, scope_key, shared_key
from backends.state.scopes import current_scope

#: Over a limit, a scope's journal deletes its oldest entries down to this share under it (as SQLite's does).
PRUNE_SHARE = 1 / 20
#: A prompt-cache entry's key outlives its expiry by this much, so a read just after it still finds it expired.
CACHE_KEY_GRACE_SECONDS = 3600
#: Journal entries read per round trip while a filtered page looks for matches.
SCAN_CHUNK = 500

#: Deletes a scope's oldest journal entries while the journal is over a limit, down to the keep marks (never the
#: newest). KEYS[2..5]: entries, meta, ids, bytes; `total` the journal's size; ARGV[4..7]: max entries, max bytes,
#: keep entries, keep bytes. Part of both scripts below.
KEEP_WITHIN_LIMITS = """
local count = redis.call('ZCARD', KEYS[4])
if count > tonumber(ARGV[4]) or total > tonumber(ARGV[5]) then
  local keep_entries, keep_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
  while count > 1 and (count > keep_entries or total > keep_bytes) do
    local oldest = redis.call('ZPOPMIN', KEYS[4])[1]
    total = total - redis.call('HSTRLEN', KEYS[2], oldest)
    redis.call('HDEL', KEYS[2], oldest)
    redis.call('HDEL', KEYS[3], oldest)
    count = count - 1
  end
  redis.call('SET', KEYS[5], total)
end
"""
#: KEYS: next, entries, meta, ids, bytes. ARGV: entry, meta, size, then KEEP_WITHIN_LIMITS's. Appends the entry,
#: then keeps the journal within its limits. Returns the new entry's id.
ADD_ENTRY = (
    """
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], id, ARGV[1])
redis.call('HSET', KEYS[3], id, ARGV[2])
redis.call('ZADD', KEYS[4], id, id)
local total = redis.call('INCRBY', KEYS[5], ARGV[3])
"""
    + KEEP_WITHIN_LIMITS
    + "return id\n"
)
#: KEYS: next (unused), entries, meta, ids, bytes. ARGV: the completed entry, its meta, its id, then
#: KEEP_WITHIN_LIMITS's. Replaces the entry if it is still there (not deleted, not cleared), then keeps the journal
#: within its limits.
COMPLETE_ENTRY = (
    """
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0 then return 0 end
local grown = string.len(ARGV[1]) - redis.call('HSTRLEN', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[2])
local total = redis.call('INCRBY', KEYS[5], grown)
"""
    + KEEP_WITHIN_LIMITS
    + "return 1\n"
)
#: KEYS: scripts. ARGV: path, version, text. Keeps the text unless a later version is kept already.
SAVE_SCRIPT = """
local kept = redis.call('HGET', KEYS[1], ARGV[1])
if kept and tonumber(cjson.decode(kept)[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({tonumber(ARGV[2]), ARGV[3]}))
return 1
"""
#: KEYS: files:meta, files:numbers. ARGV: id. Forgets the file; 1 if it was there.
DELETE_FILE = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


class RedisStore:
    """StateStore in the Redis at `url`, every key under `prefix`. Connects on first use (a worker's own pool).

    `ping()` connects at once: the master calls it before forking, so that a Redis that cannot be reached stops
    start-up with one line; a worker never does, so that one booting while Redis is away waits for it (its
    requests that need state get a 503) instead of failing to boot.
    """

    def __init__(self, url: str, *, prefix: str, max_journal_bytes: int, max_journal_entries: int) -> None:
        self.url = url
        self.prefix = prefix
        self.max_journal_bytes = max_journal_bytes
        self.max_journal_entries = max_journal_entries
        self.client = connect(url)
        self._add_entry = self.client.register_script(ADD_ENTRY)
        self._complete_entry = self.client.register_script(COMPLETE_ENTRY)
        self._save_script = self.client.register_script(SAVE_SCRIPT)
        self._delete_file = self.client.register_script(DELETE_FILE)

    @property
    def location(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        host = parts.netloc.rpartition("@")[2]  # never the password
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))

    def _key(self, *parts: str) -> str:
        return scope_key(self.prefix, current_scope(), *parts)

    @needs_redis
    def ping(self) -> None:
        """Reach Redis now (StoreUnavailable if it cannot be reached)."""
        self.client.ping()

    # ------------------------------------------------------------- counters
    @needs_redis
    def next_count(self, key: str) -> int:
        return int(self.client.hincrby(self._key("counters"), key, 1))

    @needs_redis
    def reset_counters(self) -> None:
        self.client.delete(self._key("counters"))

    # -------------------------------------------------------------- journal
    def _journal_keys(self) -> list[str]:
        return [self._key("journal", part) for part in ("next", "entries", "meta", "ids", "bytes")]

    def _limits(self) -> tuple[int, int, int, int]:
        """KEEP_WITHIN_LIMITS's arguments: the limits, and the marks a journal over one is cut down to."""
        return (
            self.max_journal_entries,
            self.max_journal_bytes,
            self.max_journal_entries - int(self.max_journal_entries * PRUNE_SHARE),
            self.max_journal_bytes - int(self.max_journal_bytes * PRUNE_SHARE),
        )

    @needs_redis
    def add_entry(self, entry: Mapping[str, Any]) -> int:
        text, meta = _entry_and_meta(entry)
        return int(self._add_entry(self._journal_keys(), [text, meta, len(text.encode()), *self._limits()]))

    @needs_redis
    def complete_entry(self, entry_id: int, fields: Mapping[str, Any]) -> None:
        keys = self._journal_keys()
        kept = self.client.hget(keys[1], str(entry_id))
        if kept is None:  # deleted or cleared meanwhile
            return
        # Read, then replaced by a script that checks the entry is still there: nothing else changes an entry.
        text, meta = _entry_and_meta({**json.loads(kept), **fields})
        self._complete_entry(keys, [text, meta, entry_id, *self._limits()])

    @needs_redis
    def journal_page(
        self, *, after: int, limit: int, max_bytes: int, newest: bool = False, **filters: Any
    ) -> JournalPage:
        _, entries_key, meta_key, ids_key, _ = self._journal_keys()
        wanted = {FILTERS.index(name): value for name, value in filters.items() if value is not None}
        chosen: list[int] = []
        size = 0
        chunk = SCAN_CHUNK if wanted else limit
        for entry_id, meta in self._entries_beyond(ids_key, meta_key, after, chunk, newest=newest):
            if any(meta[place] != value for place, value in wanted.items()):
                continue
            entry_bytes = meta[len(FILTERS)]
            if len(chosen) == limit or (chosen and size + entry_bytes > max_bytes):
                return JournalPage(self._entries(entries_key, chosen), has_more=True)
            size += entry_bytes
            chosen.append(entry_id)
        return JournalPage(self._entries(entries_key, chosen), has_more=False)

    def _entries_beyond(
        self, ids_key: str, meta_key: str, after: int, chunk: int, *, newest: bool
    ) -> Iterator[tuple[int, list[Any]]]:
        """The ids after `after`, oldest first (`newest`: newest first), each with its filter fields and size (the
        entry's `meta`); read `chunk` and one more at a time, so that an unfiltered page takes one round trip for
        its ids and one for their fields."""
        top = "+inf"
        while True:
            if newest:
                found = self.client.zrevrangebyscore(ids_key, top, f"({after}", 0, chunk + 1)
            else:
                found = self.client.zrangebyscore(ids_key, f"({after}", "+inf", 0, chunk + 1)
            ids = [int(member) for member in _members(found)]
            if not ids:
                return
            for entry_id, meta in zip(ids, self.client.hmget(meta_key, ids), strict=True):
                if meta is not None:  # deleted meanwhile
                    yield entry_id, json.loads(meta)
            if len(ids) <= chunk:
                return
            if newest:
                top = f"({ids[-1]}"
            else:
                after = ids[-1]

    def _entries(self, entries_key: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        texts = self.client.hmget(entries_key, [str(entry_id) for entry_id in ids])
        return [
            {"id": entry_id, **json.loads(text)} for entry_id, text in zip(ids, texts, strict=True) if text is not None
        ]

    @needs_redis
    def clear_entries(self) -> None:
        _, *entries = self._journal_keys()  # ids are never given again: `next` stays
        self.client.delete(*entries)

    # -------------------------------------------------------------- scripts
    @needs_redis
    def save_script(self, path: str, text: str, version: int) -> None:
        self._save_script([shared_key(self.prefix, "scripts")], [path, version, text])

    @needs_redis
    def last_script(self, path: str) -> str | None:
        kept = self.client.hget(shared_key(self.prefix, "scripts"), path)
        return None if kept is None else str(json.loads(kept)[1])

    # --------------------------------------------------------- prompt cache
    @needs_redis
    def put_cache_entry(self, prefix: str, expires_at: float) -> None:
        key = self._key("cache", prefix)
        self.client.set(key, repr(expires_at), exat=int(expires_at) + CACHE_KEY_GRACE_SECONDS)

    @needs_redis
    def cache_entry(self, prefix: str) -> float | None:
        expires_at = self.client.get(self._key("cache", prefix))
        return None if expires_at is None else float(expires_at)

    # ---------------------------------------------------------------- files
    @needs_redis
    def add_file(self, metadata: Mapping[str, Any]) -> int:
        number = int(self.client.incr(shared_key(self.prefix, "files", "number")))
        pipeline = self.client.pipeline(transaction=True)
        pipeline.hset(self._key("files", "meta"), metadata["id"], json.dumps([number, metadata]))
        pipeline.zadd(self._key("files", "numbers"), {metadata["id"]: number})
        pipeline.execute()
        return number

    @needs_redis
    def file(self, file_id: str) -> FileRow | None:
        kept = self.client.hget(self._key("files", "meta"), file_id)
        return None if kept is None else _file_row(kept)

    @needs_redis
    def files(self, *, below: int | None = None, above: int | None = None, limit: int = 20) -> list[FileRow]:
        numbers = self._key("files", "numbers")
        if above is not None:  # the page just above `above`: read upwards from it, then turn it newest first
            ids = _members(self.client.zrangebyscore(numbers, f"({above}", "+inf", 0, limit))[::-1]
        else:
            top = f"({below}" if below is not None else "+inf"
            ids = _members(self.client.zrevrangebyscore(numbers, top, "-inf", 0, limit))
        return self._file_rows(ids)

    @needs_redis
    def files_by_id(self, file_ids: Sequence[str]) -> list[FileRow]:
        return sorted(self._file_rows(file_ids), key=lambda row: row[0], reverse=True)

    def _file_rows(self, file_ids: Sequence[str | bytes]) -> list[FileRow]:
        if not file_ids:
            return []
        return [_file_row(kept) for kept in self.client.hmget(self._key("files", "meta"), file_ids) if kept is not None]

    @needs_redis
    def delete_file(self, file_id: str) -> bool:
        keys = [self._key("files", "meta"), self._key("files", "numbers")]
        return bool(self._delete_file(keys, [file_id]))

    # ---------------------------------------------------------- rate limits
    @needs_redis
    def take_tokens(self, subject: str, buckets_: Sequence[Bucket], *, force: bool = False) -> BucketLevels:
        key = f"{self.prefix}:{{limits={subject}}}:buckets"
        return buckets.take_in_redis(self.client, key, buckets_, force)

    # --------------------------------------------------------------- health
    def writable(self) -> bool:
        try:
            with reachable():
                self.client.set(shared_key(self.prefix, "probe"), repr(time.time()))
        except (StoreFull, StoreUnavailable):
            return False
        return True

    def close(self) -> None:
        """Close the pool's connections (in this process; a forked worker's pool is its own)."""
        self.client.close()


def _entry_and_meta(entry: Mapping[str, Any]) -> tuple[str, str]:
    """An entry as the journal keeps it, and its `meta`: its filter fields and its size."""
    text = json.dumps(entry, ensure_ascii=False, default=str)
    return text, json.dumps([*(entry.get(name) for name in FILTERS), len(text.encode())])


def _members(found: Any) -> list[bytes]:
    """A sorted set's members as a range read without scores returns them (redis-py types every form it may)."""
    return cast(list[bytes], found)


def _file_row(kept: bytes | str) -> FileRow:
    number, metadata = json.loads(kept)
    return int(number), metadata
