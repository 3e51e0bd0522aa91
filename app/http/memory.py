"""Memory given back after a large request: once its answer is sent, the heap it freed returns to the system.

A Message Batch or a JSON body of hundreds of MB is parsed into many Python
objects; once they are freed, glibc's malloc keeps what CPython gave back
for later instead of returning it to the system. After a request whose body
passed `LARGE_BODY_BYTES`, this layer waits for the server to let go of the
request, then collects its garbage and asks glibc to give its free memory
back (`malloc_trim`, from C, through ctypes), on a thread. Elsewhere than
glibc (musl, macOS) there is no such call, and only the collection is done.
(The parsed body itself is let go of by the bridge, app/http/bridge.py, as
soon as the view has it.)
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: A request whose body is larger than this is followed by a trim: small ones leave little behind.
LARGE_BODY_BYTES = 16 * 1024 * 1024
#: How long after the answer the trim waits for the server to let go of the request.
SETTLE_SECONDS = 0.2


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


MALLOC_TRIM = _malloc_trim()


def give_memory_back() -> None:
    """Free the unreachable objects (a request's may form cycles), then return the free heap to the system."""
    gc.collect()
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


class MemoryReturnMiddleware:
    """After a request whose body passed LARGE_BODY_BYTES, gives the memory it used back to the system."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _may_be_large(scope["headers"]):
            await self.app(scope, receive, send)  # the common case, at no cost
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        try:
            await self.app(scope, counting_receive, send)
        finally:
            if received > LARGE_BODY_BYTES:
                _after_the_request(give_memory_back)


def _may_be_large(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a body may pass LARGE_BODY_BYTES: its declared length does, or it declares none (chunked)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            return not value.isdigit() or int(value) > LARGE_BODY_BYTES
    return any(name.lower() == b"transfer-encoding" for name, _ in headers)


#: The trims waiting for their request to be let go of (a task no one holds may be collected before it runs).
_pending: set[asyncio.Task[None]] = set()


def _after_the_request(work: Callable[[], None]) -> None:
    """Run `work` on a thread once the server has let go of the request (gunicorn holds its body until the app
    has returned, so a trim made before that gives back nothing of it)."""

    async def later() -> None:
        await asyncio.sleep(SETTLE_SECONDS)
        await asyncio.to_thread(work)

    task = asyncio.get_running_loop().create_task(later())
    _pending.add(task)
    task.add_done_callback(_pending.discard)
