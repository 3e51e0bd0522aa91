"""Token buckets, as the stores keep them: the arithmetic, once in Python (SQLite's) and once in Lua (Redis's).

A bucket holds up to its capacity and refills continuously at its rate since it
was last touched (the real API's algorithm: "your capacity is continuously
replenished up to your maximum limit, rather than being reset at fixed
intervals"). A take takes each bucket's cost from its refilled level, all of
them or none; a forced take (a correction at a request's end, whose cost may be
negative: tokens given back) always applies, and never lifts a level above its
capacity. A bucket never touched is full.

SQLite keeps one row per subject, read and written under the store's writer
lock. Redis keeps one HASH per subject (`take_in_redis`), each bucket's level and
time in a field named as the bucket, changed by one Lua script in one round
trip; the script reads Redis's clock (TIME), so hosts whose clocks
disagree still agree on every bucket. A key expires once every bucket in it
would be full again: an absent key is a full one, so nothing is lost, and
subjects not heard from for a while take no room.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from backends.state.base import Bucket, BucketLevels

if TYPE_CHECKING:  # only the Redis store imports redis-py
    import redis

#: SQLite's table of buckets (the state file's): one row a subject, its buckets' levels and times in one text.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS rate_levels (
        subject TEXT PRIMARY KEY,     -- whose buckets: a scope, an API key's hash (never the key)
        levels TEXT NOT NULL          -- "NAME LEVEL TIME NAME LEVEL TIME ...", TIME in Unix seconds
    ) WITHOUT ROWID""",
)


def refilled(level: float, updated_at: float, bucket: Bucket, now: float) -> float:
    """`level` as it stands at `now`, refilled since `updated_at`, never above capacity."""
    return min(bucket.capacity, level + max(0.0, now - updated_at) * bucket.per_second)


def take(
    connection: sqlite3.Connection, subject: str, buckets: Sequence[Bucket], now: float, force: bool
) -> BucketLevels:
    """The take on `connection`: the subject's levels read, and written back if taken.

    Two statements, not a transaction: the caller holds the store's writer lock (sqlite_store.WriterLock), which
    every write of the store takes, so no other writer comes between the read and the write; and a transaction's
    BEGIN and COMMIT would cost two more statements on every request's path.
    """
    row = connection.execute("SELECT levels FROM rate_levels WHERE subject = ?", (subject,)).fetchone()
    stored: dict[str, tuple[float, float]] = {}
    if row is not None:
        words = row[0].split()
        stored = {words[place]: (float(words[place + 1]), float(words[place + 2])) for place in range(0, len(words), 3)}
    levels = [
        refilled(*stored[bucket.name], bucket, now) if bucket.name in stored else bucket.capacity for bucket in buckets
    ]
    taken = force or all(level >= bucket.cost for level, bucket in zip(levels, buckets, strict=True))
    if taken:
        levels = [min(bucket.capacity, level - bucket.cost) for level, bucket in zip(levels, buckets, strict=True)]
        stored.update((bucket.name, (level, now)) for level, bucket in zip(levels, buckets, strict=True))
        text = " ".join(f"{name} {level!r} {at!r}" for name, (level, at) in stored.items())
        connection.execute(
            "INSERT INTO rate_levels (subject, levels) VALUES (?, ?)"
            " ON CONFLICT (subject) DO UPDATE SET levels = excluded.levels",
            (subject, text),
        )
    return BucketLevels(taken, tuple(levels), now)


def given_text(buckets: Sequence[Bucket]) -> str:
    """The buckets as TAKE_SCRIPT's argument: each one's name, capacity, per_second and cost, separated by spaces
    (repr: the shortest text that reads back as the same float, in Lua too)."""
    return " ".join(
        f"{bucket.name} {float(bucket.capacity)!r} {float(bucket.per_second)!r} {float(bucket.cost)!r}"
        for bucket in buckets
    )


#: The take in Lua. KEYS[1]: the subject's hash. ARGV[1]: "1" to force; ARGV[2]: each bucket's name, capacity,
#: per_second and cost, separated by spaces. Each bucket is one field of the hash, NAME: "LEVEL TIME". Returns one
#: string: "TAKEN SECONDS MICROSECONDS LEVEL…" (TIME's, and the levels as %.17g: Redis would cut a Lua number to an
#: integer). One argument and one answer, not a dozen of each: redis-py spends more on each than Redis does.
TAKE_SCRIPT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local names, capacities, rates, costs = {}, {}, {}, {}
local count, word = 0, 0
for item in string.gmatch(ARGV[2], '%S+') do
  local place = word % 4
  if place == 0 then count = count + 1; names[count] = item
  elseif place == 1 then capacities[count] = tonumber(item)
  elseif place == 2 then rates[count] = tonumber(item)
  else costs[count] = tonumber(item) end
  word = word + 1
end
local stored = redis.call('HMGET', KEYS[1], unpack(names))
local levels = {}
local taken = true
for i = 1, count do
  local level, at = nil, nil
  if stored[i] then
    local space = string.find(stored[i], ' ', 1, true)
    level, at = tonumber(string.sub(stored[i], 1, space - 1)), tonumber(string.sub(stored[i], space + 1))
  end
  if level == nil or at == nil then
    levels[i] = capacities[i]
  else
    levels[i] = math.min(capacities[i], level + math.max(0, now - at) * rates[i])
  end
  if levels[i] < costs[i] then taken = false end
end
taken = taken or ARGV[1] == '1'
local answer = {taken and '1' or '0', time[1], time[2]}
if taken then
  local written, full_in = {}, 0
  local at = ' ' .. string.format('%.17g', now)
  for i = 1, count do
    levels[i] = math.min(capacities[i], levels[i] - costs[i])
    written[2 * i - 1] = names[i]
    written[2 * i] = string.format('%.17g', levels[i]) .. at
    full_in = math.max(full_in, (capacities[i] - levels[i]) / rates[i])
  end
  redis.call('HSET', KEYS[1], unpack(written))
  redis.call('PEXPIRE', KEYS[1], math.ceil(full_in * 1000) + 1000)
end
for i = 1, count do answer[3 + i] = string.format('%.17g', levels[i]) end
return table.concat(answer, ' ')
"""
TAKE_SHA = hashlib.sha1(TAKE_SCRIPT.encode()).hexdigest()


def take_in_redis(client: redis.Redis, key: str, buckets: Sequence[Bucket], force: bool) -> BucketLevels:
    """The take, by TAKE_SCRIPT on the HASH `key`: one EVALSHA (an EVAL the first time a Redis meets it)."""
    import redis  # here, not above: redis-py is imported only where Redis is used

    given = given_text(buckets)
    flag = "1" if force else "0"
    try:
        answer = client.evalsha(TAKE_SHA, 1, key, flag, given)
    except redis.exceptions.NoScriptError:
        answer = client.eval(TAKE_SCRIPT, 1, key, flag, given)
    taken, seconds, microseconds, *levels = answer.split()
    taken_ = taken in (b"1", "1")  # bytes, or text from a client that decodes answers
    return BucketLevels(taken_, tuple(map(float, levels)), int(seconds) + int(microseconds) / 1_000_000)
