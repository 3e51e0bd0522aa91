"""The bridge from Connexion's ASGI stack to the Flask app, rebuilt for streams.

Connexion's FlaskApp hands each request to Flask through a2wsgi, which keeps
one of ten threads busy for the whole response and, when a client drops a
stream, leaves that thread blocked for good. This bridge uses threads only to
compute, never to wait on a client:
- one hop to a thread runs the Flask view and, for a response with a
  Content-Length, collects the whole body; a view that only computes in
  memory (the operations `on_the_loop` names: create_app names them for a
  backend that answers in memory) runs on the event loop's own thread, since
  the hop to a pool thread and back costs more than the echo view itself
  (a worker's CPU per request, echo under wrk: 763 µs with the hop, 603 µs
  without);
- a streamed body is pulled one chunk per hop (for a view that ran on the
  loop, one chunk per turn of the loop, with no hop), and the event loop —
  not a thread — waits while the client reads, so open streams cost no
  threads;
- when the client disconnects, the body's iterator is closed (a generator's
  `finally` runs, so a backend releases what it holds), and any callbacks a
  handler registered under `understudy.on_disconnect` run at once: during a
  stream, or while a view that has worked for `WATCH_AFTER_SECONDS` still
  works (a proxied call waiting on its upstream).
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.types import Message, Receive, Scope, Send

from app.http.parsed_body import release
from backends.wire import ON_DISCONNECT_KEY, ConnectionAbort

logger = logging.getLogger("understudy")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_DONE = object()
#: A view still working after this long is watched for its client leaving, and its disconnect callbacks run the
#: moment it leaves; a quicker one is not watched: a listener costs a task and a wait, some 4% of an echo reply.
WATCH_AFTER_SECONDS = 0.02


class FlaskBridge:
    """An ASGI app that runs a WSGI app in a thread pool, one hop per request or stream chunk."""

    def __init__(self, wsgi_app: WSGIApp, *, threads: int, on_the_loop: Collection[str] = ()) -> None:
        self.app = wsgi_app  # `app`, the name Connexion's add_wsgi_middleware wraps
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="flask")
        self.on_the_loop = frozenset(on_the_loop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        environ = build_environ(scope, await _read_body(receive))
        context = contextvars.copy_context()
        here = scope.get("extensions", {}).get(ROUTING_CONTEXT, {}).get("operation_id") in self.on_the_loop
        started = _here(context, self._start, environ) if here else self._in_thread(context, self._start, environ)
        listener = _DisconnectListener(receive, environ, started)
        # A view that ran here has ended: there is nothing to watch (a timer set and cancelled, some 3% of an echo
        # reply's time).
        watch = None if started.done() else asyncio.get_running_loop().call_later(WATCH_AFTER_SECONDS, listener.start)
        try:
            try:
                status, headers, body, rest = await started
            except ConnectionAbort:
                # Promise a body and send none: the server closes the connection mid-response.
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
                return
            finally:
                if watch is not None:
                    watch.cancel()
            await send({"type": "http.response.start", "status": status, "headers": headers})
            if rest is None:
                await send({"type": "http.response.body", "body": body})
            else:
                await self._stream(rest, body, environ, context, listener.start(), send, here=here)
        finally:
            listener.stop()

    def _in_thread(self, context: contextvars.Context, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run `function(*args)` in `context` on a pool thread; a future of its result, on this loop.

        Lighter than `loop.run_in_executor`, whose future chaining (`_chain_future`, `_copy_future_state`)
        took some 4% of a worker's time in a py-spy profile of the echo benchmark: the thread settles
        an asyncio future directly, with one `call_soon_threadsafe`.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def run() -> None:
            try:
                result = context.run(function, *args)
            except BaseException as error:
                loop.call_soon_threadsafe(_settle, future, None, error)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

        self.executor.submit(run)
        return future

    def _start(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes, Iterator[bytes] | None]:
        """Run the view (in a thread): the status, headers, the first or only body, and the rest of a stream."""
        started: dict[str, Any] = {}
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            started["status"] = int(status.split(" ", 1)[0])
            started["headers"] = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
            return written.append

        try:
            iterable = self.app(environ, start_response)
        finally:
            release(environ["asgi.scope"])  # the view has what it needs of the parsed body (parsed_body.py)
        iterator = iter(iterable)
        first = next(iterator, b"")
        if any(name == b"content-length" for name, _ in started["headers"]):
            try:
                body = b"".join([*written, first, *iterator])
            finally:
                _close(iterable)
            return started["status"], started["headers"], body, None
        return started["status"], started["headers"], b"".join([*written, first]), _Closing(iterable, iterator)

    async def _stream(
        self,
        rest: Iterator[bytes],
        first: bytes,
        environ: dict[str, Any],
        context: contextvars.Context,
        disconnected: asyncio.Task[None],
        send: Send,
        *,
        here: bool,
    ) -> None:
        """Send a streamed body chunk by chunk until it ends or the client goes away (`disconnected` is done).

        Each chunk is made on a pool thread, or, for a view that ran `here` (on the loop: its backend answers in
        memory), on the loop between turns of the others: a hop to a thread and back cost more than the event it
        made, and a stream its client reads slowly is made until the kernel's buffer for it is full (some 1 MB).
        """
        pending: asyncio.Future[Any] | None = None
        complete = False
        try:
            chunk: Any = first
            while True:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if disconnected.done():
                    break
                if here:
                    await asyncio.sleep(0)  # the other requests' turn, as a hop to a thread would give it them
                    pending = _here(context, _next_chunk, rest)
                else:
                    pending = self._in_thread(context, _next_chunk, rest)
                    await asyncio.wait({pending, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                if not pending.done():
                    break
                chunk, pending = pending.result(), None
                if chunk is _DONE:
                    complete = True
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
        except (OSError, ConnectionAbort):
            pass  # the client is gone, or the backend cuts the connection: the response stays unfinished
        except Exception:
            logger.exception("a streamed response failed")
        finally:
            if not complete:
                _run_disconnect_callbacks(environ)
            self._close_after(pending, rest, context)

    def _close_after(self, pending: asyncio.Future[Any] | None, rest: Iterator[bytes], context: Any) -> None:
        """Close the stream in a thread once its current step, if any, is done."""
        if pending is None:
            self.executor.submit(context.run, _close, rest)
        else:
            pending.add_done_callback(lambda _: self.executor.submit(context.run, _close, rest))


class _DisconnectListener:
    """Listens for the client leaving, once started: from a slow view's first moments, or a stream's start.

    If the client leaves while the view is still working, the view's disconnect callbacks run at once.
    """

    def __init__(self, receive: Receive, environ: dict[str, Any], view: asyncio.Future[Any]) -> None:
        self.receive = receive
        self.environ = environ
        self.view = view
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """The listening task (done when the client has left), started on the first call."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(_wait_for_disconnect(self.receive))
            self.task.add_done_callback(self._left)
        return self.task

    def _left(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and not self.view.done():
            _run_disconnect_callbacks(self.environ)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


class _Closing:
    """An iterator over a WSGI body that remembers the iterable, whose close() must be called."""

    def __init__(self, iterable: Iterable[bytes], iterator: Iterator[bytes]) -> None:
        self.iterable = iterable
        self.iterator = iterator

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self.iterator)

    def close(self) -> None:
        _close(self.iterable)


def _here(context: contextvars.Context, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """Run `function(*args)` in `context` on this thread; a future of its result, already settled."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    try:
        future.set_result(context.run(function, *args))
    except BaseException as error:  # as a pool thread's view would give it
        future.set_exception(error)
    return future


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _next_chunk(rest: Iterator[bytes]) -> Any:
    return next(rest, _DONE)


def _run_disconnect_callbacks(environ: dict[str, Any]) -> None:
    """Run each callback the view registered, once (they are taken off the list as they run)."""
    callbacks = environ.get(ON_DISCONNECT_KEY, [])
    while callbacks:
        callback = callbacks.pop(0)
        try:
            callback()
        except Exception:
            logger.exception("an on-disconnect callback failed")


def _close(iterable: Any) -> None:
    close = getattr(iterable, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.exception("closing a response body failed")


async def _lifespan(receive: Receive, send: Send) -> None:
    """Flask has nothing to start or stop: acknowledge each lifespan message."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


def build_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The WSGI environ for an ASGI HTTP scope and its body (PEP 3333)."""
    root_path = scope.get("root_path", "")
    path = scope["path"][len(root_path) :] if scope["path"].startswith(root_path) else scope["path"]
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode().decode("latin-1"),
        "PATH_INFO": path.encode().decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1] or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "asgi.scope": scope,
        ON_DISCONNECT_KEY: [],
    }
    if scope.get("client"):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = scope["client"][0], str(scope["client"][1])
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    environ.setdefault("CONTENT_LENGTH", str(len(body)))
    return environ
