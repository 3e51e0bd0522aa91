"""A purpose-built faulty upstream for the proxy's tests: real sockets, misbehaving on request.

Run as `python tests/fault_upstream.py PORT`. The request's model name picks
the fault (the body is read as JSON):
- `reset`: the connection is reset (RST) as soon as the request is read;
- `stall`: the request is read and never answered;
- `cut-stream`: a 200 event stream that stops after two events, connection closed;
- `slow-stream`: one event every 0.2 s for 10 s, printing `client gone after N events` when the reader leaves;
- `stalled-stream`: two events, then silence, printing `closed after S s` when the reader hangs up;
- `rate-limited`: a 429 error with retry and rate-limit headers, and hop-by-hop ones that must not pass;
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


def event(payload: dict) -> bytes:
    return EVENT.format(type=payload["type"], data=json.dumps(payload)).encode()


MESSAGE_START = {
    "type": "message_start",
    "message": {
        "id": "msg_01fault", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1},
    },
}  # fmt: skip


RATE_LIMITED = {
    "type": "error",
    "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your rate limit."},
    "request_id": "req_01upstreamRateLimited000",
}
RATE_LIMIT_HEADERS = (
    "retry-after: 7\r\nanthropic-ratelimit-requests-remaining: 0\r\nrequest-id: req_01upstreamRateLimited000\r\n"
    "keep-alive: timeout=5\r\nproxy-authenticate: Basic\r\n"
)


async def read_request(reader: asyncio.StreamReader) -> dict:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    body = await reader.readexactly(length) if length else b"{}"
    return json.loads(body)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        model = (await read_request(reader)).get("model")
    except (asyncio.IncompleteReadError, ValueError):
        writer.close()
        return
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
    else:
        message = {**MESSAGE_START["message"], "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"}
        await answer(writer, "200 OK", message)


async def answer(writer: asyncio.StreamWriter, status: str, payload: dict, headers: str = "") -> None:
    """A JSON answer, the last on its connection (and it says so)."""
    body = json.dumps(payload)
    head = f"HTTP/1.1 {status}\r\nconnection: close\r\n{headers}content-type: application/json\r\n"
    writer.write(f"{head}content-length: {len(body)}\r\n\r\n{body}".encode())
    await writer.drain()
    writer.close()


async def stream(writer: asyncio.StreamWriter, *, cut: bool) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
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
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
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
