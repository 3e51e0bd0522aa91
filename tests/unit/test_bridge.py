"""The Flask bridge on its own: whole bodies in one hop, streams closed when the client leaves."""

from __future__ import annotations

import asyncio
import threading

from app.http.bridge import FlaskBridge, build_environ
from backends.wire import ON_DISCONNECT_KEY

SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/v1/messages",
    "root_path": "",
    "query_string": b"beta=true",
    "headers": [(b"content-type", b"application/json"), (b"x-thing", b"a"), (b"x-thing", b"b")],
    "http_version": "1.1",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 5000),
}


def run(app, receive_messages, *, disconnect_after_sends=None):
    """Call the ASGI app; the client disconnects after that many body messages (never, if None)."""
    sent = []
    gone = asyncio.Event()

    async def main():
        messages = list(receive_messages)

        async def receive():
            if messages:
                return messages.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
            bodies = [m for m in sent if m["type"] == "http.response.body"]
            if disconnect_after_sends is not None and len(bodies) >= disconnect_after_sends:
                gone.set()

        await app(SCOPE, receive, send)
        await asyncio.sleep(0.05)  # let the close scheduled on the pool run

    asyncio.run(main())
    return sent


def test_environ_follows_pep_3333():
    environ = build_environ(SCOPE, b"{}")
    assert environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/v1/messages"
    assert environ["QUERY_STRING"] == "beta=true" and environ["CONTENT_TYPE"] == "application/json"
    assert environ["HTTP_X_THING"] == "a,b" and environ["CONTENT_LENGTH"] == "2"
    assert environ["wsgi.input"].read() == b"{}"


def test_a_whole_body_is_sent_at_once():
    def wsgi_app(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body[:2], body[2:]]

    sent = run(FlaskBridge(wsgi_app, threads=2), [{"type": "http.request", "body": b"hello"}])
    assert sent[0] == {"type": "http.response.start", "status": 200, "headers": sent[0]["headers"]}
    assert (b"content-length", b"5") in sent[0]["headers"]
    assert sent[1:] == [{"type": "http.response.body", "body": b"hello"}]


def test_a_stream_is_sent_chunk_by_chunk_and_closed_at_its_end():
    closed = threading.Event()

    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream")])

        def events():
            try:
                yield from (b"one", b"two", b"three")
            finally:
                closed.set()

        return events()

    sent = run(FlaskBridge(wsgi_app, threads=2), [{"type": "http.request", "body": b""}])
    bodies = [m.get("body") for m in sent if m["type"] == "http.response.body"]
    assert bodies == [b"one", b"two", b"three", b""]
    assert sent[-1]["more_body"] is False
    assert closed.is_set()


def test_a_dropped_stream_is_closed_and_its_callbacks_run():
    closed = threading.Event()
    called = threading.Event()
    produced = []

    def wsgi_app(environ, start_response):
        environ[ON_DISCONNECT_KEY].append(called.set)
        start_response("200 OK", [("Content-Type", "text/event-stream")])

        def endless():
            try:
                while True:
                    produced.append(1)
                    yield b"event"
            finally:
                closed.set()

        return endless()

    run(FlaskBridge(wsgi_app, threads=2), [{"type": "http.request", "body": b""}], disconnect_after_sends=3)
    assert closed.wait(2) and called.is_set()
    assert len(produced) < 10  # it stopped producing when the client left


def test_lifespan_is_acknowledged():
    sent = []

    async def main():
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message["type"])

        await FlaskBridge(lambda environ, start: [], threads=1)({"type": "lifespan"}, receive, send)

    asyncio.run(main())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_the_operations_named_run_on_the_loops_thread_and_the_rest_on_a_pool_thread():
    ran_on = []

    def wsgi_app(environ, start_response):
        ran_on.append(threading.current_thread())
        start_response("200 OK", [("Content-Length", "2")])
        return [b"{}"]

    bridge = FlaskBridge(wsgi_app, threads=2, on_the_loop={"app.api.messages.create"})
    for operation_id in ("app.api.messages.create", "app.api.batches.create"):
        scope = {**SCOPE, "extensions": {"connexion_routing": {"operation_id": operation_id}}}
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"{}"}

        async def send(message, sent=sent):
            sent.append(message)

        asyncio.run(bridge(scope, receive, send))
        assert [message.get("body") for message in sent] == [None, b"{}"]
    assert ran_on[0] is threading.current_thread()  # asyncio.run's loop runs on this thread
    assert ran_on[1] is not threading.current_thread() and ran_on[1].name.startswith("flask")


def test_create_app_runs_on_the_loop_only_what_asks_a_backend_that_answers_in_memory(tmp_path):
    from app import create_app  # the whole app: a unit test of the composition root's choice

    script = tmp_path / "script.yaml"
    script.write_text("rules:\n  - reply: {text: scripted}\n")
    for overrides, on_the_loop in (({}, True), ({"backend": "scripted", "script": str(script)}, False)):
        bridge = create_app(overrides)._middleware_app.asgi_app
        assert ("app.api.messages.create" in bridge.on_the_loop) is on_the_loop
        assert "app.api.batches.create" not in bridge.on_the_loop
