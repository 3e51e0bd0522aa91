"""Scopes: one server shared by many test runs, each run's state kept apart from every other's.

A request names its scope in the `x-understudy-scope` header, or by an API key
configured to one (UNDERSTUDY_KEY_SCOPES); a request that names none is in the
default scope. Sequences, the journal, prompt caches, batches, files and rate
limits are kept per scope, so two runs that share one server never consume each
other's replies or read each other's journal.

The scope travels with the request as a context variable, as the request's own
context does in Flask: the stores read it where they key their state, so no
backend's signature carries it, and no backend can name another scope's state.
A thread that works for several scopes (the batch processor) enters each in turn
with `in_scope`. Scope names are a narrow alphabet, checked by the spec (the
header's pattern) and again here, so that a name can never reach into another
scope's keys (no separators, no braces, no path).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

#: The header a request names its scope in.
SCOPE_HEADER = "x-understudy-scope"
#: The scope of a request that names none.
DEFAULT_SCOPE = "default"
#: A scope's name: the spec's pattern for the header (openapi.yaml, ScopeHeader), checked here too.
SCOPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

_current: ContextVar[str] = ContextVar("understudy_scope", default=DEFAULT_SCOPE)


def is_scope_name(name: str) -> bool:
    """Whether `name` may name a scope."""
    return SCOPE_NAME.fullmatch(name) is not None


def current_scope() -> str:
    """The scope of the request being served (or of the work `in_scope` entered)."""
    return _current.get()


def enter_scope(name: str) -> None:
    """Make `name` the current scope for the rest of this context (a request's task); ValueError if not a name."""
    if not is_scope_name(name):
        raise ValueError(f"not a scope name: {name!r}")
    _current.set(name)


@contextlib.contextmanager
def in_scope(name: str) -> Iterator[None]:
    """Work in the scope `name` inside the block, then in the scope before it."""
    if not is_scope_name(name):
        raise ValueError(f"not a scope name: {name!r}")
    token = _current.set(name)
    try:
        yield
    finally:
        _current.reset(token)
