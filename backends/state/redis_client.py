"""Talking to Redis: the connection a Redis store opens, the names of its keys, and its faults as the API's errors.

Keys. Every key starts with the configured prefix (UNDERSTUDY_STATE_PREFIX), so
that several servers (or test suites) share one Redis apart. A scope's keys
share one hash tag, `{scope=NAME}`, so that Redis Cluster keeps them in one slot
and a Lua script may touch any of them at once; the few keys every scope shares
(the running batches, the last good scripts) have the tag `{shared}`, and rate
limits one tag per subject. Scope names never hold `{`, `}`, `=` or `:`
(scopes.py), so no scope's keys can be another's.

Faults. A write refused for want of memory (`maxmemory` reached) is a
StoreFull (503), as a full disk is to the SQLite store. A connection refused,
a timeout or a lost connection is a StoreUnavailable (503) to the request
that met it, never a hang or a 500:
redis-py gives up after the connect and read timeouts below, and the pool
opens a new connection on the next call, so the store recovers by itself when
Redis is back.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from backends.state.base import StoreFull, StoreUnavailable

logger = logging.getLogger("understudy")

#: Seconds to connect, and to wait for an answer: well inside an SDK's timeout (600 s by default, and the
#: tests' 20 s), so that a request meeting a lost Redis gets its 503 while its client still listens.
CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 5.0
#: A command that meets a dropped connection is tried again this many times, on a new one, before it fails.
RETRIES = 2
#: The faults that mean Redis cannot be reached now (a command's own error, like a wrong type, is a bug: a 500).
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)

#: While Redis is away every request that needs it meets the fault: the log says so this often, not each time.
WARN_EVERY_SECONDS = 10.0

_last_warned = -WARN_EVERY_SECONDS

P = ParamSpec("P")
T = TypeVar("T")


def connect(url: str) -> redis.Redis:
    """A client of the Redis at `url` (a pool of connections, shared by a worker's threads), not yet connected."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=READ_TIMEOUT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), RETRIES),
        health_check_interval=30,
        client_name="understudy",
    )


def scope_key(prefix: str, scope: str, *parts: str) -> str:
    """The key `parts` of the scope `scope`: `PREFIX:{scope=NAME}:PART:…`."""
    return ":".join((prefix, f"{{scope={scope}}}", *parts))


def shared_key(prefix: str, *parts: str) -> str:
    """A key every scope shares: `PREFIX:{shared}:PART:…`."""
    return ":".join((prefix, "{shared}", *parts))


@contextlib.contextmanager
def reachable() -> Iterator[None]:
    """Inside it, Redis being unreachable is a StoreUnavailable (logged at most every WARN_EVERY_SECONDS a
    process, by the fault's kind: never the URL, which may hold a password), and Redis refusing a write for want
    of memory a StoreFull."""
    global _last_warned
    try:
        yield
    except redis.exceptions.OutOfMemoryError as error:  # maxmemory reached, with the noeviction policy
        raise StoreFull() from error
    except UNREACHABLE as error:
        if time.monotonic() - _last_warned > WARN_EVERY_SECONDS:
            _last_warned = time.monotonic()
            logger.warning("state store: Redis is unreachable (%s: %s)", type(error).__name__, error)
        raise StoreUnavailable() from error


def needs_redis(method: Callable[P, T]) -> Callable[P, T]:
    """A store method whose Redis faults are StoreUnavailable."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with reachable():
            return method(*args, **kwargs)

    return wrapper
