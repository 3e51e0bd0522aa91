"""app/http/worker.py's hooks (in app/internals.py): one accept per wake-up, and a drain that loses no connection."""

from __future__ import annotations

import asyncio
import socket

from app.internals import _one_per_wake_up, stop_accepting


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


def test_a_connection_accepted_in_the_turn_the_drain_starts_is_served():
    """The loop accepts a connection, then (same turn) the drain starts: the connection is still made."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        listening = socket.create_server(("127.0.0.1", 0))
        made: list[asyncio.BaseTransport] = []

        class Recording(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                made.append(transport)

        server = await loop.create_server(Recording, sock=listening)
        # The drain starts from a reader that becomes ready just after the listening socket, so the
        # loop runs the accept and then the drain in one turn (what a SIGTERM under load can do).
        signal_side, sending_side = socket.socketpair()
        loop.add_reader(signal_side.fileno(), lambda: (signal_side.recv(1), stop_accepting(loop, [server])))
        client = socket.create_connection(listening.getsockname())
        sending_side.send(b"!")
        for _ in range(20):
            await asyncio.sleep(0.01)
        loop.remove_reader(signal_side.fileno())
        for transport in made:
            transport.close()
        server.close()
        for closing in (client, signal_side, sending_side):
            closing.close()
        return len(made)

    assert asyncio.run(main()) == 1  # closing the server there instead leaves it unserved (0)
