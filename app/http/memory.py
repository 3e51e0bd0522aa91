"""Memory given back after a large request: once its answer is sent, the heap it freed returns to the system.

A Message Batch or a JSON body of hundreds of MB is parsed into many Python
objects; once they are freed, glibc's malloc keeps what CPython gave back
for later instead of returning it to the system. After a request whose body
passed `LARGE_BODY_BYTES`, once its answer has gone, this layer collects
its garbage and asks glibc to give its free memory back (`malloc_trim`), on
a thread. It also keeps glibc's mmap threshold at its default of 128 KiB:
left to itself, glibc raises it to 32 MiB the first time a block that large
is freed (a batch's body), and from then on the blocks of up to 32 MiB that
a large request makes come from the heap, where the few that outlive it
hold pages no trim can give back (the worker kept some 10 MB more after
each round of batch creates at the size limit).

Both are glibc's own calls, made through ctypes; elsewhere (musl, macOS)
there are none, and only the collection is done. (The parsed body itself is
let go of by the bridge, app/http/bridge.py, as soon as the view has it.)
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: A request whose body is larger than this is followed by a trim: small ones leave little behind.
LARGE_BODY_BYTES = 16 * 1024 * 1024
#: glibc's mallopt parameter for the mmap threshold, and the value it is kept at (glibc's default).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def _glibc() -> ctypes.CDLL | None:
    """The C library, when it is glibc (it has malloc_trim); None elsewhere."""
    try:
        library = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return library if hasattr(library, "malloc_trim") and hasattr(library, "mallopt") else None


GLIBC = _glibc()


def keep_large_blocks_apart() -> None:
    """Fix glibc's mmap threshold at its default, so that large blocks stay out of the heap (module docstring)."""
    if GLIBC is not None:
        GLIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def give_memory_back() -> None:
    """Free the unreachable objects (a request's may form cycles), then return the free heap to the system."""
    gc.collect()
    if GLIBC is not None:
        GLIBC.malloc_trim(0)


class MemoryReturnMiddleware:
    """After a request whose body passed LARGE_BODY_BYTES, gives the memory it used back to the system."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        keep_large_blocks_apart()

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
                await asyncio.to_thread(give_memory_back)  # the answer has gone: no client waits on this


def _may_be_large(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a body may pass LARGE_BODY_BYTES: its declared length does, or it declares none (chunked)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            return not value.isdigit() or int(value) > LARGE_BODY_BYTES
    return any(name.lower() == b"transfer-encoding" for name, _ in headers)
