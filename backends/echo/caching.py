"""Prompt caching, as the echo backend accounts for it in usage.

The prompt is read as the API reads it — the tools, then the system prompt, then the messages, block by
block — and every block with a `cache_control` is a breakpoint; a top-level `cache_control` puts one on
the last block. The prefix up to a breakpoint is cacheable when it holds at least the model's minimum
(the catalogue's `min_cache_tokens`: 1024 to 4096 tokens by model).

- The longest cacheable prefix still cached is read: `cache_read_input_tokens`.
- The cacheable prefixes after it are written: `cache_creation_input_tokens`, split by each breakpoint's
  ttl (`5m`, the default, or `1h`) in `cache_creation`.
- `input_tokens` is the rest, as on the API: the three add up to the prompt's tokens.

Entries live in the shared state store, keyed by a hash of the model and the prefix, so a repeat hits
whichever worker answers it; an entry lives for its ttl from its last use, as the API's do. (The API also
looks for hits a few blocks before each breakpoint; here only the breakpoints' own prefixes count.)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from backends import text
from backends.state import StateStore
from backends.tokens import CLASSIC, Tokenizer
from backends.wire import JSON, compact_json

TTL_SECONDS = {"5m": 300, "1h": 3600}


@dataclass(frozen=True)
class Breakpoint:
    """A cacheable prefix: its key, how many tokens it holds and the ttl its breakpoint asks for."""

    key: str
    tokens: int
    ttl: str


class PromptCache:
    """Accounts for a request's cache reads and writes, keeping the entries in the shared store."""

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def account(
        self, body: Mapping[str, Any], usage: JSON, *, model: str, min_tokens: int, tokenizer: Tokenizer = CLASSIC
    ) -> JSON:
        """`usage` with the request's cache reads and writes taken out of input_tokens."""
        if not has_breakpoints(body):
            return usage  # most requests: no hashing, no store
        breakpoints = [point for point in breakpoints_of(body, model, tokenizer) if point.tokens >= min_tokens]
        if not breakpoints:
            return usage
        now = self.clock()
        hit = next(
            (place for place in range(len(breakpoints) - 1, -1, -1) if self._alive(breakpoints[place].key, now)),
            None,
        )
        read = breakpoints[hit].tokens if hit is not None else 0
        written = {"5m": 0, "1h": 0}
        covered = read
        for point in breakpoints[0 if hit is None else hit + 1 :]:
            written[point.ttl] += point.tokens - covered
            covered = point.tokens
        for point in breakpoints:
            self.store.put_cache_entry(point.key, now + TTL_SECONDS[point.ttl])
        creation = written["5m"] + written["1h"]
        return {
            **usage,
            "input_tokens": usage["input_tokens"] - read - creation,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": creation,
            "cache_creation": {"ephemeral_5m_input_tokens": written["5m"], "ephemeral_1h_input_tokens": written["1h"]},
        }

    def _alive(self, key: str, now: float) -> bool:
        expires_at = self.store.cache_entry(key)
        return expires_at is not None and expires_at > now


def has_breakpoints(body: Mapping[str, Any]) -> bool:
    """Whether the request marks any cache breakpoint (a quick look, before any hashing)."""
    blocks = [*(body.get("tools") or ()), *_system_blocks(body)]
    blocks += [
        block
        for message in body["messages"]
        if isinstance(message.get("content"), list)
        for block in message["content"]
    ]
    return bool(body.get("cache_control")) or any(block.get("cache_control") for block in blocks)


def breakpoints_of(body: Mapping[str, Any], model: str, tokenizer: Tokenizer = CLASSIC) -> list[Breakpoint]:
    """Every breakpoint of the prompt, in order, with the tokens of the prefix it ends (by the model's tokenizer)."""
    digest = hashlib.sha256(model.encode())
    total = 0
    found: list[Breakpoint] = []
    blocks = list(_blocks(body))
    automatic = body.get("cache_control")
    for position, (hashed, counted, cache_control) in enumerate(blocks):
        digest.update(hashed.encode() + b"\x00")
        total += tokenizer.count(counted)
        if cache_control is None and automatic and position == len(blocks) - 1:
            cache_control = automatic
        if cache_control:
            found.append(Breakpoint(digest.copy().hexdigest(), total, cache_control.get("ttl") or "5m"))
    return found


def _blocks(body: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any] | None]]:
    """The prompt block by block: what its key hashes, the text its tokens are counted from, its cache_control.

    The counted texts are those `Tokenizer.count_input` counts, so their tokens add up to the prompt's.
    """
    for tool in body.get("tools") or ():
        yield _key("tool", tool), compact_json(tool), tool.get("cache_control")
    if isinstance(body.get("system"), str):
        yield f"system:{body['system']}", body["system"], None
    for block in _system_blocks(body):
        yield _key("system", block), text.block_text(block), block.get("cache_control")
    for message in body["messages"]:
        content = message.get("content", "")  # a beta system message may carry only an output_config
        if isinstance(content, str):
            yield f"{message['role']}:{content}", content, None
            continue
        for block in content:
            yield _key(message["role"], block), text.block_text(block), block.get("cache_control")


def _system_blocks(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    system = body.get("system") or ()
    return [] if isinstance(system, str) else list(system)


def _key(place: str, block: Mapping[str, Any]) -> str:
    """A block as its cache key sees it: where a breakpoint sits does not change the prefix."""
    return f"{place}:{compact_json({name: value for name, value in block.items() if name != 'cache_control'})}"
