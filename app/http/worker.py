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

gunicorn has no hook for how its asgi worker creates its server, so the
change is one of the private hooks in `app/internals.py` (`install_worker`),
with two more: a deadline for a new connection's headers, and a drain before
the worker stops, so that a reload loses no request. With
UNDERSTUDY_INTERNALS off this class is gunicorn's asgi worker as shipped, as
is `gunicorn wsgi:app -k asgi`.

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

import gc

from gunicorn.workers.gasgi import ASGIWorker

from app import internals
from app.settings import load_settings


class Worker(ASGIWorker):
    """gunicorn's `asgi` worker, accepting one connection at a time on asyncio's loop (UNDERSTUDY_INTERNALS on)."""

    def run(self) -> None:
        settings = load_settings()
        if settings.internals:
            internals.install_worker(self, header_timeout=settings.header_timeout)
        # The app is built: its objects (the spec, the validators, the catalogue …) live as long as the worker, so
        # the collector need not go through them again on every collection of the oldest generation.
        gc.freeze()
        super().run()
