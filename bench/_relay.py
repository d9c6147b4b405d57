"""A delaying TCP relay: the WAN between bench_geo's nodes, in user space.

The kernel here has no netem, so each node's announced RPC address is a relay port that
forwards to the node's real one; every node-to-node connection crosses exactly one relay
(the one in front of the node that was dialled), which delays each direction by the
one-way delay. A round trip between two nodes is then ``2 x delay``.

Each direction of a relayed connection is two tasks and a queue: the reader stamps every
chunk with ``arrival + delay`` and queues it at once; the writer sleeps until the stamp of
the chunk at the head of the queue, then sends it. Chunks keep their order, and the delay
does not accumulate (a burst of chunks arrives a delay later as a burst, not one delay per
chunk), as on a long link with plenty of bandwidth. End of stream travels the same way.

Usage: ``python -m bench._relay --delay-ms 50 LISTEN_PORT:TARGET_PORT [...]`` (all on
127.0.0.1). It prints ``READY`` once every port listens, and relays until SIGTERM.
SIGUSR1 sets the delay to zero (chunks already queued keep theirs), SIGUSR2 restores it:
bench_geo measures the same cluster both ways, to tell the network's share of a latency
from the nodes' own.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import signal
import socket
from typing import TYPE_CHECKING, Final

import anyio
from anyio.abc import SocketAttribute

if TYPE_CHECKING:
    from anyio.abc import SocketStream
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["Delay", "main", "relay", "serve"]

#: Bytes read at once: a large read keeps the per-chunk cost low on bulk transfers.
READ_BYTES: Final = 256 * 1024

Chunk = tuple[float, bytes | None]  # (when to send it, data or None for end of stream)


class Delay:
    """The one-way delay now (SIGUSR1 and SIGUSR2 change it)."""

    def __init__(self, seconds: float) -> None:
        self.configured_s = seconds
        self.seconds = seconds


def _nodelay(stream: SocketStream) -> None:
    with contextlib.suppress(OSError):  # closed by the peer already: the relay notices later
        stream.extra(SocketAttribute.raw_socket).setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )


#: A relayed socket's failures: the peer reset or closed it.
_GONE: Final = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


async def _read(src: SocketStream, queue: MemoryObjectSendStream[Chunk], delay: Delay) -> None:
    async with queue:
        while True:
            try:
                data: bytes | None = await src.receive(READ_BYTES)
            except _GONE:
                data = None
            try:
                await queue.send((anyio.current_time() + delay.seconds, data))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the writer gave up: the connection is closing
            if data is None:
                return


async def _write(
    dst: SocketStream, queue: MemoryObjectReceiveStream[Chunk], connection: anyio.CancelScope
) -> None:
    async with queue:
        async for due, data in queue:
            await anyio.sleep_until(due)
            try:
                if data is None:
                    await dst.send_eof()
                    return
                await dst.send(data)
            except _GONE:
                connection.cancel()  # one side is gone: drop both directions
                return


async def relay(client: SocketStream, target_port: int, delay: Delay) -> None:
    """Relays one accepted connection to ``target_port``, both ways delayed by ``delay``.

    A connection that fails ends quietly (both sides closed): the relay keeps serving.
    """
    async with client:
        try:
            server = await anyio.connect_tcp("127.0.0.1", target_port)
        except OSError:
            return
        async with server, anyio.create_task_group() as tg:
            _nodelay(client)
            _nodelay(server)
            for src, dst in ((client, server), (server, client)):
                send, receive = anyio.create_memory_object_stream[Chunk](math.inf)
                tg.start_soon(_read, src, send, delay)
                tg.start_soon(_write, dst, receive, tg.cancel_scope)


async def serve(pairs: list[tuple[int, int]], delay_s: float) -> None:
    """Listens on each ``(listen, target)`` pair's port until SIGTERM or SIGINT."""
    delay = Delay(delay_s)
    wanted = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
    with anyio.open_signal_receiver(*wanted) as signals:
        async with anyio.create_task_group() as tg:
            for listen, target in pairs:
                listener = await anyio.create_tcp_listener(
                    local_host="127.0.0.1", local_port=listen
                )
                handler = functools.partial(relay, target_port=target, delay=delay)
                tg.start_soon(listener.serve, handler)
            print("READY", flush=True)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    delay.seconds = 0.0
                elif signum == signal.SIGUSR2:
                    delay.seconds = delay.configured_s
                else:
                    break
            tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._relay")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    parser.add_argument("pairs", nargs="+", help="LISTEN_PORT:TARGET_PORT on 127.0.0.1")
    args = parser.parse_args(argv)
    pairs = [(int(a), int(b)) for a, b in (p.split(":") for p in args.pairs)]
    anyio.run(serve, pairs, args.delay_ms / 1000, backend="trio")


if __name__ == "__main__":
    main()
