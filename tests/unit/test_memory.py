"""The memory layer (app/http/memory.py): the heap is given back after a large body, and only then."""

from __future__ import annotations

import asyncio

import pytest

from app.http import memory
from app.http.memory import LARGE_BODY_BYTES, MemoryReturnMiddleware


def exchange(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> None:
    messages = iter(
        [{"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1} for n, chunk in enumerate(chunks)]
    )

    async def app(scope, receive, send):
        while (await receive())["more_body"]:
            pass

    async def receive():
        return next(messages)

    scope = {"type": "http", "method": "POST", "path": "/v1/messages/batches", "headers": headers}
    asyncio.run(MemoryReturnMiddleware(app)(scope, receive, None))


@pytest.mark.parametrize(
    ("headers", "chunks", "given_back"),
    [
        ([(b"content-length", b"10")], [b"x" * 10], False),
        ([(b"content-length", str(LARGE_BODY_BYTES + 1).encode())], [b"x" * (LARGE_BODY_BYTES + 1)], True),
        ([(b"transfer-encoding", b"chunked")], [b"x" * 1000, b"y" * 1000], False),  # chunked, and small after all
        ([(b"transfer-encoding", b"chunked")], [b"x" * LARGE_BODY_BYTES, b"y"], True),
    ],
)
def test_memory_is_given_back_after_a_large_body_only(monkeypatch, headers, chunks, given_back):
    calls: list[None] = []
    monkeypatch.setattr(memory, "give_memory_back", lambda: calls.append(None))
    exchange(headers, chunks)
    assert calls == ([None] if given_back else [])


def test_the_mmap_threshold_is_kept_at_its_default(monkeypatch):
    if memory.GLIBC is None:
        pytest.skip("not glibc")
    set_to: list[tuple[int, int]] = []

    class Library:
        def mallopt(self, parameter: int, value: int) -> int:
            set_to.append((parameter, value))
            return 1

    monkeypatch.setattr(memory, "GLIBC", Library())
    MemoryReturnMiddleware(lambda scope, receive, send: None)
    assert set_to == [(memory.M_MMAP_THRESHOLD, 128 * 1024)]
