"""The Message Batches store in Redis, shared by the servers of several hosts (store.py has the contract).

Keys. A batch's keys are its scope's (`PREFIX:{scope=NAME}:batch:ID…`, one hash
tag, so Redis Cluster keeps them in one slot and one Lua script may change them
all at once):
- `…:batch:ID` (hash): the batch (StoredBatch's fields), its outcome counts,
  and `next`, the first request never claimed;
- `…:ids`, `…:params` (hashes): each request's custom_id and params, by position;
- `…:results` (hash): each answered request's result, by position; and
  `closed` = `FROM OUTCOME` once a close-out gave every request from FROM on,
  never claimed, that outcome (a canceled 100,000-request batch is one field);
- `…:claims` (hash): the claim token holding each claimed request, and
  `t:TOKEN` = the positions the claim took; `…:leases` (sorted set): each
  claimed request's lease time; `…:returned` (sorted set): requests handed back
  by a stopping worker, to be claimed again before the rest;
- `…:downloads` (sorted set): the downloads reading the results, by lease time.
And per scope, `PREFIX:{scope=NAME}:batches` (sorted set): its batch ids by
number, for listing.

Three keys every scope shares (tag `{shared}`): `batches:number`, the counter
that numbers the batches of every host in creation order; `batches:running`
(sorted set of `SCOPE/ID`), the batches the processors look at; and
`batches:downloads` (sorted set of `SCOPE/ID/TOKEN`), the downloads' leases, for
the sweep. A step that changes both a scope's keys and the shared ones cannot
be one script, so the shared step comes first and the others make do with what
a crash in between leaves: a batch is registered before it is written (and
`running()` skips a registered batch that is not there yet, or never will be),
its requests are written before the batch itself (with an expiry, lifted when
the batch is written, so those of a creation that died go by themselves), and a
download's lease is registered before the batch's copy of it.

Every claim, completion, close-out, finish, cancel and delete is one Lua script
(registered once), so workers on several hosts never step on each other. Lease
times are the caller's clock, as in the SQLite store. A Redis that cannot be
reached is a StoreUnavailable (backends/state/redis_client.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import redis

from backends.batches.store import DOWNLOAD_LEASE_SECONDS, OUTCOMES, Answer, Claimed, StoredBatch, bare_result
from backends.state import StoreUnavailable, current_scope
from backends.state.redis_client import needs_redis, reachable, scope_key, shared_key
from backends.wire import compact_json

#: Requests written per round trip when a batch is created.
CREATE_CHUNK = 5000
#: The requests of a batch being created expire after this long unless the batch is written (its creation died).
PENDING_SECONDS = 3600
#: Stale downloads swept per look.
SWEEP_CHUNK = 100
#: What a batch id may be to name a key: the ids this server makes, and nothing that reaches into another key.
BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

# Lua helpers shared by the scripts: HMGET of a long list in slices (unpack has a limit), split a list of positions.
_HELPERS = """
local function hmget(key, fields)
  local values = {}
  for start = 1, #fields, 1000 do
    local slice = {}
    for i = start, math.min(start + 999, #fields) do slice[#slice + 1] = fields[i] end
    for _, value in ipairs(redis.call('HMGET', key, unpack(slice))) do values[#values + 1] = value end
  end
  return values
end
local function held(claims, token)
  local positions = {}
  local list = redis.call('HGET', claims, 't:' .. token)
  if list then
    for p in string.gmatch(list, '%d+') do
      if redis.call('HGET', claims, p) == token then positions[#positions + 1] = p end
    end
  end
  return positions
end
"""

# KEYS: counter, running. ARGV: SCOPE/ID. The batch's number, and the batch registered as running under it.
_REGISTER = """
local number = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], number, ARGV[1])
return number
"""

# KEYS: batch, listing, ids, params. ARGV: id, number, then the batch's fields and values.
_CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('PERSIST', KEYS[3])
redis.call('PERSIST', KEYS[4])
"""

# KEYS: batch. ARGV: now. The batch afterwards (empty: none).
_CANCEL = """
if redis.call('HGET', KEYS[1], 'status') == 'in_progress' then
  redis.call('HSET', KEYS[1], 'status', 'canceling', 'cancel_initiated_at', ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: batch, listing, ids, params, results, claims, leases, returned, downloads. ARGV: now, id.
# The batch before (empty: none); deleted if it had ended, its requests too unless a live download reads them.
_DELETE = """
local batch = redis.call('HGETALL', KEYS[1])
if redis.call('HGET', KEYS[1], 'status') ~= 'ended' then return batch end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if redis.call('ZCOUNT', KEYS[9], ARGV[1], '+inf') == 0 then
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
end
return batch
"""

# KEYS: batch, ids, params, claims, leases, returned. ARGV: token, now, lease_until, limit, answerable.
# Flat: position, custom_id, params for each request claimed, in request order. Requests whose lease has passed and
# those handed back come first (they are all before `next`), then never-claimed ones from `next` on.
_CLAIM = (
    _HELPERS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local token, limit, answerable = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5])
local candidates = {}
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[2])) do
  if tonumber(p) < answerable then candidates[#candidates + 1] = tonumber(p) end
end
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', '(' .. answerable, 'LIMIT', 0, limit)) do
  candidates[#candidates + 1] = tonumber(p)
end
table.sort(candidates)
local taken = {}
for i = 1, math.min(limit, #candidates) do taken[i] = candidates[i] end
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next'))
local stop = math.min(answerable, tonumber(redis.call('HGET', KEYS[1], 'total')))
while #taken < limit and nxt < stop do
  taken[#taken + 1] = nxt
  nxt = nxt + 1
end
if #taken == 0 then return {} end
redis.call('HSET', KEYS[1], 'next', nxt)
for i, p in ipairs(taken) do
  taken[i] = tostring(p)
  redis.call('ZADD', KEYS[5], ARGV[3], taken[i])
  redis.call('HSET', KEYS[4], taken[i], token)
  redis.call('ZREM', KEYS[6], taken[i])
end
local before = redis.call('HGET', KEYS[4], 't:' .. token)
redis.call('HSET', KEYS[4], 't:' .. token, (before and (before .. ',') or '') .. table.concat(taken, ','))
local ids, params = hmget(KEYS[2], taken), hmget(KEYS[3], taken)
local claimed = {}
for i, p in ipairs(taken) do
  claimed[#claimed + 1] = p
  claimed[#claimed + 1] = ids[i]
  claimed[#claimed + 1] = params[i]
end
return claimed
"""
)

# KEYS: claims, leases. ARGV: token, lease_until.
_RENEW = (
    _HELPERS
    + """
for _, p in ipairs(held(KEYS[1], ARGV[1])) do redis.call('ZADD', KEYS[2], 'XX', ARGV[2], p) end
"""
)

# KEYS: batch, claims, leases, results. ARGV: token, then position, outcome, result for each answer.
# The positions kept: those the claim still held.
_COMPLETE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local kept = {}
for i = 2, #ARGV, 3 do
  local p = ARGV[i]
  if redis.call('HGET', KEYS[2], p) == ARGV[1] then
    redis.call('HSET', KEYS[4], p, ARGV[i + 2])
    redis.call('HDEL', KEYS[2], p)
    redis.call('ZREM', KEYS[3], p)
    redis.call('HINCRBY', KEYS[1], ARGV[i + 1], 1)
    kept[#kept + 1] = p
  end
end
if #kept > 0 then redis.call('HINCRBY', KEYS[1], 'unanswered', -#kept) end
return kept
"""

# KEYS: claims, leases, returned. ARGV: token.
_RELEASE = (
    _HELPERS
    + """
for _, p in ipairs(held(KEYS[1], ARGV[1])) do
  redis.call('HDEL', KEYS[1], p)
  redis.call('ZREM', KEYS[2], p)
  redis.call('ZADD', KEYS[3], p, p)
end
redis.call('HDEL', KEYS[1], 't:' .. ARGV[1])
"""
)

# KEYS: batch, claims, leases, returned, results. ARGV: outcome, now, the outcome's bare result. How many closed.
_CLOSE_OUT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local closed = 0
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2])) do
  redis.call('HSET', KEYS[5], p, ARGV[3])
  redis.call('HDEL', KEYS[2], p)
  closed = closed + 1
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2])
for _, p in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  redis.call('HSET', KEYS[5], p, ARGV[3])
  closed = closed + 1
end
redis.call('DEL', KEYS[4])
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next'))
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
if nxt < total then
  redis.call('HSET', KEYS[5], 'closed', nxt .. ' ' .. ARGV[1])
  redis.call('HSET', KEYS[1], 'next', total)
  closed = closed + total - nxt
end
if closed > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], closed)
  redis.call('HINCRBY', KEYS[1], 'unanswered', -closed)
end
return closed
"""

# KEYS: batch. ARGV: now. 1 if the batch ended.
_FINISH = """
local batch = redis.call('HMGET', KEYS[1], 'status', 'unanswered', 'done_after', 'expires_at')
if not batch[1] or batch[1] == 'ended' or tonumber(batch[2]) ~= 0 then return 0 end
local now = tonumber(ARGV[1])
if batch[1] == 'canceling' or tonumber(batch[3]) <= now or tonumber(batch[4]) <= now then
  redis.call('HSET', KEYS[1], 'status', 'ended', 'ended_at', ARGV[1])
  return 1
end
return 0
"""

# KEYS: batch, ids, params, results, claims, leases, returned, downloads. ARGV: token, now.
# The download is over: its lease goes, and so do the requests if the batch was deleted and no live download reads them.
_END_DOWNLOAD = """
redis.call('ZREM', KEYS[8], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('ZCOUNT', KEYS[8], ARGV[2], '+inf') == 0 then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
end
"""


class BatchKeys(NamedTuple):
    """The keys of one batch, all in its scope's slot."""

    batch: str
    listing: str  # the scope's batches
    ids: str
    params: str
    results: str
    claims: str
    leases: str
    returned: str
    downloads: str

    @property
    def requests(self) -> list[str]:
        """What goes when the batch's requests go."""
        return [self.ids, self.params, self.results, self.claims, self.leases, self.returned, self.downloads]


class RedisBatchStore:
    """BatchStore in Redis: each step one command or one Lua script, keys under `prefix`."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.counter = shared_key(prefix, "batches", "number")
        self.running_key = shared_key(prefix, "batches", "running")
        self.downloads_key = shared_key(prefix, "batches", "downloads")
        script = client.register_script
        self._register = script(_REGISTER)
        self._create = script(_CREATE)
        self._cancel = script(_CANCEL)
        self._delete = script(_DELETE)
        self._claim = script(_CLAIM)
        self._renew = script(_RENEW)
        self._complete = script(_COMPLETE)
        self._release = script(_RELEASE)
        self._close_out = script(_CLOSE_OUT)
        self._finish = script(_FINISH)
        self._end_download = script(_END_DOWNLOAD)

    def batch_keys(self, scope: str, batch_id: str) -> BatchKeys:
        """The keys of the batch `batch_id` of `scope`."""
        base = scope_key(self.prefix, scope, "batch", batch_id)
        parts = ("ids", "params", "results", "claims", "leases", "returned", "downloads")
        return BatchKeys(base, self.listing_key(scope), *(f"{base}:{part}" for part in parts))

    def listing_key(self, scope: str) -> str:
        """The sorted set of the batches of `scope`, their ids by number."""
        return scope_key(self.prefix, scope, "batches")

    def _keys(self, batch: StoredBatch) -> BatchKeys:
        return self.batch_keys(batch.scope, batch.id)

    # ------------------------------------------- by id, in the current scope
    @needs_redis
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
        if not BATCH_ID.fullmatch(batch_id):
            raise ValueError(f"not a batch id: {batch_id!r}")
        scope = current_scope()
        keys = self.batch_keys(scope, batch_id)
        number = int(self._register(keys=[self.counter, self.running_key], args=[f"{scope}/{batch_id}"]))
        for start in range(0, len(requests), CREATE_CHUNK):
            chunk = requests[start : start + CREATE_CHUNK]
            pipeline = self.client.pipeline(transaction=False)
            pipeline.hset(keys.ids, mapping={start + n: custom_id for n, (custom_id, _) in enumerate(chunk)})
            pipeline.hset(keys.params, mapping={start + n: params for n, (_, params) in enumerate(chunk)})
            pipeline.expire(keys.ids, PENDING_SECONDS)
            pipeline.expire(keys.params, PENDING_SECONDS)
            pipeline.execute()
        batch = StoredBatch(
            number, batch_id, scope, "in_progress", len(requests), len(requests), created_at, expires_at, done_after,
            None, None, None, headers,
        )  # fmt: skip
        fields = {**_fields(batch), "next": 0, **dict.fromkeys(OUTCOMES, 0)}
        self._create(
            keys=[keys.batch, keys.listing, keys.ids, keys.params],
            args=[batch_id, number, *(item for pair in fields.items() for item in pair)],
        )
        return batch

    @needs_redis
    def get(self, batch_id: str) -> StoredBatch | None:
        if not BATCH_ID.fullmatch(batch_id):
            return None
        return _stored(self.client.hgetall(self.batch_keys(current_scope(), batch_id).batch))

    @needs_redis
    def page(
        self, *, after: StoredBatch | None, before: StoredBatch | None, limit: int
    ) -> tuple[list[StoredBatch], bool]:
        listing = self.listing_key(current_scope())
        if before is not None:
            ids = self.client.zrangebyscore(listing, f"({before.number}", "+inf", start=0, num=limit + 1)
            newer = self._batches(current_scope(), ids[:limit])
            return newer[::-1], len(ids) > limit
        top = f"({after.number}" if after is not None else "+inf"
        ids = self.client.zrevrangebyscore(listing, top, "-inf", start=0, num=limit + 1)
        return self._batches(current_scope(), ids[:limit]), len(ids) > limit

    def _batches(self, scope: str, ids: Iterable[Any]) -> list[StoredBatch]:
        """The batches of `scope` with these ids, in their order (leaving out any deleted meanwhile)."""
        pipeline = self.client.pipeline(transaction=False)
        for batch_id in ids:
            pipeline.hgetall(self.batch_keys(scope, _text(batch_id)).batch)
        return [batch for batch in map(_stored, pipeline.execute()) if batch is not None]

    @needs_redis
    def request_cancel(self, batch_id: str, now: float) -> StoredBatch | None:
        if not BATCH_ID.fullmatch(batch_id):
            return None
        keys = self.batch_keys(current_scope(), batch_id)
        return _stored(_pairs(self._cancel(keys=[keys.batch], args=[repr(now)])))

    @needs_redis
    def delete(self, batch_id: str, now: float) -> StoredBatch | None:
        if not BATCH_ID.fullmatch(batch_id):
            return None
        scope = current_scope()
        keys = self.batch_keys(scope, batch_id)
        found = self._delete(keys=[keys.batch, keys.listing, *keys.requests], args=[repr(now), batch_id])
        batch = _stored(_pairs(found))
        if batch is not None and batch.status == "ended":
            self.client.zrem(self.running_key, f"{scope}/{batch_id}")  # gone already, unless a crash kept it
        return batch

    # ------------------------------------------------- the processor's work
    @needs_redis
    def running(self) -> list[StoredBatch]:
        members = [_text(member) for member in self.client.zrange(self.running_key, 0, -1)]
        pipeline = self.client.pipeline(transaction=False)
        for member in members:
            scope, _, batch_id = member.partition("/")
            pipeline.hgetall(self.batch_keys(scope, batch_id).batch)
        running, ended = [], []
        for member, fields in zip(members, pipeline.execute(), strict=True):
            batch = _stored(fields)
            if batch is None:
                continue  # not written yet (or its creation died)
            if batch.status == "ended":
                ended.append(member)  # a finish whose step off the list was lost
            else:
                running.append(batch)
        if ended:
            self.client.zrem(self.running_key, *ended)
        return running

    @needs_redis
    def claim(self, batch: StoredBatch, token: str, *, now: float, lease_until: float, limit: int) -> list[Claimed]:
        keys = self._keys(batch)
        flat = self._claim(
            keys=[keys.batch, keys.ids, keys.params, keys.claims, keys.leases, keys.returned],
            args=[token, repr(now), repr(lease_until), limit, batch.answerable(now)],
        )
        return [Claimed(int(flat[i]), _text(flat[i + 1]), _text(flat[i + 2])) for i in range(0, len(flat), 3)]

    @needs_redis
    def renew(self, batch: StoredBatch, token: str, lease_until: float) -> None:
        keys = self._keys(batch)
        self._renew(keys=[keys.claims, keys.leases], args=[token, repr(lease_until)])

    @needs_redis
    def complete(self, batch: StoredBatch, token: str, answers: Sequence[Answer]) -> list[Answer]:
        keys = self._keys(batch)
        args: list[Any] = [token]
        for answer in answers:
            args += [answer.position, answer.outcome, answer.result]
        kept = self._complete(keys=[keys.batch, keys.claims, keys.leases, keys.results], args=args)
        kept_positions = {int(position) for position in kept}
        return [answer for answer in answers if answer.position in kept_positions]

    @needs_redis
    def release(self, batch: StoredBatch, token: str) -> None:
        keys = self._keys(batch)
        self._release(keys=[keys.claims, keys.leases, keys.returned], args=[token])

    @needs_redis
    def close_out(self, batch: StoredBatch, outcome: str, now: float) -> int:
        keys = self._keys(batch)
        return int(
            self._close_out(
                keys=[keys.batch, keys.claims, keys.leases, keys.returned, keys.results],
                args=[outcome, repr(now), bare_result(outcome)],
            )
        )

    @needs_redis
    def finish(self, batch: StoredBatch, now: float) -> bool:
        ended = bool(self._finish(keys=[self._keys(batch).batch], args=[repr(now)]))
        if ended:
            self.client.zrem(self.running_key, f"{batch.scope}/{batch.id}")
        return ended

    # ---------------------------------------------------------------- results
    def result_pages(
        self, batch: StoredBatch, *, page_size: int, clock: Callable[[], float] = time.time
    ) -> Generator[str, None, None]:
        """Each page is two HMGETs of its positions; the download's lease is registered (for the sweep) before
        the batch's own copy of it, which a delete consults."""
        keys = self._keys(batch)
        token = secrets.token_hex(16)
        member = f"{batch.scope}/{batch.id}/{token}"
        lease_until = clock() + DOWNLOAD_LEASE_SECONDS
        self._hold(keys, member, token, lease_until)
        try:
            for start in range(0, batch.total, page_size):
                if clock() > lease_until - DOWNLOAD_LEASE_SECONDS / 2:
                    lease_until = clock() + DOWNLOAD_LEASE_SECONDS
                    self._hold(keys, member, token, lease_until)
                page = self._page(keys, range(start, min(start + page_size, batch.total)))
                if page is None:
                    return  # the requests are gone (a sweep past the lease): the file comes out short
                if page:
                    yield page
        finally:
            # Redis gone: the lease stays, and once it passes, sweep_downloads does this.
            with contextlib.suppress(StoreUnavailable), reachable():
                self._end_download(keys=[keys.batch, *keys.requests], args=[token, repr(clock())])
                self.client.zrem(self.downloads_key, member)

    def _hold(self, keys: BatchKeys, member: str, token: str, lease_until: float) -> None:
        with reachable():
            self.client.zadd(self.downloads_key, {member: lease_until})
            self.client.zadd(keys.downloads, {token: lease_until})

    def _page(self, keys: BatchKeys, positions: range) -> str | None:
        """The JSON Lines of these requests' results (of those answered); None if the requests are gone."""
        with reachable():
            pipeline = self.client.pipeline(transaction=False)
            pipeline.hmget(keys.ids, list(positions))
            pipeline.hmget(keys.results, [*positions, "closed"])
            custom_ids, results = pipeline.execute()
        closed = results.pop()
        closed_from, _, closed_outcome = _text(closed).partition(" ") if closed is not None else ("", "", "")
        lines = []
        for position, custom_id, result in zip(positions, custom_ids, results, strict=True):
            if result is None and closed is not None and position >= int(closed_from):
                result = bare_result(closed_outcome)
            if custom_id is None:
                return None
            if result is None:
                continue  # not answered yet (a batch still running)
            lines.append(f'{{"custom_id":{compact_json(_text(custom_id))},"result":{_text(result)}}}\n')
        return "".join(lines)

    @needs_redis
    def sweep_downloads(self, now: float) -> None:
        stale = self.client.zrangebyscore(self.downloads_key, "-inf", f"({now!r}", start=0, num=SWEEP_CHUNK)
        for member in map(_text, stale):  # usually none: one read, and no write
            scope, batch_id, token = member.split("/")
            keys = self.batch_keys(scope, batch_id)
            self._end_download(keys=[keys.batch, *keys.requests], args=[token, repr(now)])
            self.client.zrem(self.downloads_key, member)


def _text(value: Any) -> str:
    """A string Redis answered with (bytes, unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    """A hash as HGETALL returns it from a script (field, value, field, value …), as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _fields(batch: StoredBatch) -> dict[str, str | int]:
    """The batch as its hash holds it (times as Python writes them, so that they read back exactly)."""
    fields: dict[str, str | int] = {
        "number": batch.number, "id": batch.id, "scope": batch.scope, "status": batch.status, "total": batch.total,
        "unanswered": batch.unanswered, "created_at": repr(batch.created_at), "expires_at": repr(batch.expires_at),
        "done_after": repr(batch.done_after), "headers": compact_json(batch.headers),
    }  # fmt: skip
    return fields


def _stored(raw: Mapping[Any, Any]) -> StoredBatch | None:
    """The batch from its hash (None: empty, so there is none)."""
    if not raw:
        return None
    fields = {_text(name): _text(value) for name, value in raw.items()}

    def moment(name: str) -> float | None:
        return float(fields[name]) if name in fields else None

    ended = fields["status"] == "ended"
    return StoredBatch(
        number=int(fields["number"]),
        id=fields["id"],
        scope=fields["scope"],
        status=fields["status"],
        total=int(fields["total"]),
        unanswered=int(fields["unanswered"]),
        created_at=float(fields["created_at"]),
        expires_at=float(fields["expires_at"]),
        done_after=float(fields["done_after"]),
        cancel_initiated_at=moment("cancel_initiated_at"),
        ended_at=moment("ended_at"),
        counts={outcome: int(fields.get(outcome, 0)) for outcome in OUTCOMES} if ended else None,
        headers=json.loads(fields["headers"]),
    )
