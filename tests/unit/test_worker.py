"""app/http/worker.py's hook (in app/internals.py): one connection accepted per wake-up, from a queue as deep as set."""

from __future__ import annotations

import asyncio
import socket

from app.internals import _one_per_wake_up


def test_one_connection_per_wake_up_from_a_queue_as_deep_as_configured():
    async def main() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        listening = socket.create_server(("127.0.0.1", 0))
        accepted: list[asyncio.BaseTransport] = []

        class Counting(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.append(transport)

        server = await _one_per_wake_up(loop.create_server, 64, Counting, sock=listening)
        # 40 connections wait at once (the loop is not running): a queue of 1 would leave most hanging
        clients = [socket.create_connection(listening.getsockname(), timeout=1) for _ in range(40)]
        seen = []
        for _ in range(4):
            await asyncio.sleep(0)
            seen.append(len(accepted))
        for _ in range(200):
            if len(accepted) == len(clients):
                break
            await asyncio.sleep(0.005)
        total = len(accepted)
        for client in clients:
            client.close()
        server.close()
        return seen, total

    seen, total = asyncio.run(main())
    assert seen[-1] <= 4, seen  # a few loop turns took a few connections, not all that were waiting
    assert total == 40
