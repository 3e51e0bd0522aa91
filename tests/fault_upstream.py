"""A purpose-built faulty upstream for the proxy's tests: real sockets, misbehaving on request.

Run as `python tests/fault_upstream.py PORT`. The request's model name picks
the fault (the body is read as JSON):
- `reset`: the connection is reset (RST) as soon as the request is read;
- `stall`: the request is read and never answered;
- `cut-stream`: a 200 event stream that stops after two events, connection closed;
- `slow-stream`: one event every 0.2 s for 10 s, printing `client gone after N events` when the reader leaves;
- `stalled-stream`: two events, then silence, printing `closed after S s` when the reader hangs up;
- `rate-limited`: a 429 error with retry and rate-limit headers, and hop-by-hop ones that must not pass;
- `huge-body`: a 200 JSON body declared as 2 GB, sent as fast as it is read, printing
  `client gone after N bytes` when the reader leaves (or `sent all N bytes`);
- `endless-body`: the same with no length declared (the body ends when the connection does);
- `endless-event`: a 200 event stream whose second event never ends, sent as fast as it is read;
- `bad-utf8-event`, `not-json-event`, `untyped-event`: a stream whose second event is malformed so;
- `not-json-first`: a stream whose very first event is not JSON;
- `echo-text`: a 400 text/plain echoing the request's head (its headers, keys included);
- `echo-json`: a 400 API error whose message echoes the request's head, and a header echoing it too;
- `hop-headers`: a 200 message with `Connection: x-up-hop` and the `x-up-hop` header it names;
- anything else: a normal, tiny 200 JSON message.
It prints `ready` once it listens. Only 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
import time

EVENT = "event: {type}\ndata: {data}\n\n"
STREAM_START = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"


def event(payload: dict) -> bytes:
    return EVENT.format(type=payload["type"], data=json.dumps(payload)).encode()


MESSAGE_START = {
    "type": "message_start",
    "message": {
        "id": "msg_01fault", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1},
    },
}  # fmt: skip
OK_MESSAGE = {**MESSAGE_START["message"], "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"}


RATE_LIMITED = {
    "type": "error",
    "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your rate limit."},
    "request_id": "req_01upstreamRateLimited000",
}
RATE_LIMIT_HEADERS = (
    "retry-after: 7\r\nanthropic-ratelimit-requests-remaining: 0\r\nrequest-id: req_01upstreamRateLimited000\r\n"
    "keep-alive: timeout=5\r\nproxy-authenticate: Basic\r\n"
)


#: The second event of each malformed stream.
MALFORMED_EVENTS = {
    "bad-utf8-event": b'event: ping\ndata: {"type": "ping", "note": "\xff\xfe"}\n\n',
    "not-json-event": b"event: ping\ndata: {not json\n\n",
    "untyped-event": b'event: ping\ndata: {"index": 0}\n\n',
}
#: What `huge-body` declares: 2 GB.
HUGE = 2 * 1024**3
PIECE = 64 * 1024


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict]:
    """The request's head (as text) and its JSON body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    body = await reader.readexactly(length) if length else b"{}"
    return head.decode("latin-1"), json.loads(body)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head, body = await read_request(reader)
    except (asyncio.IncompleteReadError, ValueError):
        writer.close()
        return
    model = body.get("model")
    if model == "reset":
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    elif model == "stall":
        await asyncio.sleep(3600)
    elif model in ("cut-stream", "slow-stream"):
        await stream(writer, cut=model == "cut-stream")
    elif model == "stalled-stream":
        await stalled_stream(reader, writer)
    elif model == "rate-limited":
        await answer(writer, "429 Too Many Requests", RATE_LIMITED, RATE_LIMIT_HEADERS)
    elif model in ("huge-body", "endless-body"):
        length = f"content-length: {HUGE}\r\n" if model == "huge-body" else ""
        start = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}connection: close\r\n\r\n"
        await flood(writer, start.encode() + b'{"pad": "')
    elif model == "endless-event":
        await flood(writer, STREAM_START + event(MESSAGE_START) + b'event: ping\ndata: {"type": "ping", "pad": "')
    elif model in MALFORMED_EVENTS:
        await send_and_close(writer, STREAM_START + event(MESSAGE_START) + MALFORMED_EVENTS[model])
    elif model == "not-json-first":
        await send_and_close(writer, STREAM_START + b"event: message_start\ndata: {not json\n\n")
    elif model == "echo-text":
        await answer(writer, "400 Bad Request", head.encode("latin-1"), content_type="text/plain")
    elif model == "echo-json":
        echoed = {"type": "error", "error": {"type": "invalid_request_error", "message": f"You sent: {head}"}}
        await answer(writer, "400 Bad Request", echoed, f"x-echo: {' | '.join(head.splitlines())}\r\n")
    elif model == "hop-headers":
        await answer(writer, "200 OK", OK_MESSAGE, "connection: x-up-hop\r\nx-up-hop: v\r\nx-up-kept: w\r\n")
    else:
        await answer(writer, "200 OK", OK_MESSAGE)


async def answer(
    writer: asyncio.StreamWriter,
    status: str,
    payload: dict | bytes,
    headers: str = "",
    content_type: str = "application/json",
) -> None:
    """A whole answer (JSON, or bytes as they are), the last on its connection (and it says so)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    head = f"HTTP/1.1 {status}\r\nconnection: close\r\n{headers}content-type: {content_type}\r\n"
    await send_and_close(writer, f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)


async def send_and_close(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
    writer.close()


async def flood(writer: asyncio.StreamWriter, start: bytes) -> None:
    """`start`, then "a" after "a" as fast as the reader takes them, until it leaves or HUGE bytes are sent."""
    writer.write(start)
    sent, piece = 0, b"a" * PIECE
    try:
        while sent < HUGE:
            writer.write(piece)
            await writer.drain()
            sent += PIECE
            if writer.transport.is_closing():
                raise ConnectionResetError
    except (ConnectionError, OSError):
        print(f"client gone after {sent} bytes", flush=True)
        return
    print(f"sent all {sent} bytes", flush=True)
    writer.close()


async def stream(writer: asyncio.StreamWriter, *, cut: bool) -> None:
    writer.write(STREAM_START)
    writer.write(event(MESSAGE_START))
    writer.write(event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
    await writer.drain()
    if cut:
        writer.close()
        return
    started, sent = time.monotonic(), 0
    try:
        while time.monotonic() - started < 10:
            await asyncio.sleep(0.2)
            delta = {"type": "text_delta", "text": f"{sent} "}
            writer.write(event({"type": "content_block_delta", "index": 0, "delta": delta}))
            await writer.drain()
            sent += 1
            if writer.transport.is_closing():
                raise ConnectionResetError
    except (ConnectionError, OSError):
        print(f"client gone after {sent} events, {time.monotonic() - started:.2f} s", flush=True)
        return
    writer.close()


async def stalled_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(STREAM_START)
    writer.write(event(MESSAGE_START))
    writer.write(event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
    await writer.drain()
    started = time.monotonic()
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
        await asyncio.wait_for(reader.read(1), timeout=30)  # b"" the moment the reader hangs up
    print(f"closed after {time.monotonic() - started:.2f} s", flush=True)
    writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
