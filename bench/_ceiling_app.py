"""The framework ceiling of bench_s3: the most trivial ASGI app, served as the node serves S3.

Same server as the node's S3 API (hypercorn, HTTP/1.1, the keep-alive, header-size and
logging settings of ``garage_api.http.serve``) on the same runtime (trio by default,
``--runtime asyncio``: hypercorn's asyncio worker), but the application does nothing:

- ``GET``: answers 200 with a fixed 4 KiB body, or with ``?size=N``, N bytes streamed in
  1 MiB chunks of one preallocated buffer (``bytes[:len]`` is the same object: no copy);
- anything else (``PUT``, ``HEAD``, ``DELETE``...): reads the whole request body, drops
  it, answers 200 with no body.

Whatever a request costs here (hypercorn's HTTP parsing, the ASGI calls, the runtime's
socket I/O) the node pays as well: a node request can be no cheaper than this.

Usage: ``python bench/_ceiling_app.py [--runtime trio|asyncio]``. It binds a free port of
127.0.0.1, prints it on one line, and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import functools
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

import anyio
from hypercorn.config import Config

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

SMALL_BODY: Final = bytes(range(256)) * 16  # 4 KiB, the small objects' size
CHUNK: Final = bytes(range(256)) * 4096  # 1 MiB, the node's block size
#: As garage_api.http: the same limits, so that both servers parse the same way.
KEEP_ALIVE_S: Final = 75
MAX_HEADER_BYTES: Final = 64 * 1024

Message = dict[str, Any]


async def app(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """The ASGI application (lifespan events acknowledged)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":
        await _answer_get(scope, send)
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


async def _answer_get(scope: Message, send: Callable[[Message], Awaitable[None]]) -> None:
    sizes = parse_qs(scope.get("query_string", b"").decode()).get("size")
    size = int(sizes[0]) if sizes else len(SMALL_BODY)
    headers = [(b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if size == len(SMALL_BODY):
        await send({"type": "http.response.body", "body": SMALL_BODY})
        return
    sent = 0
    while sent < size:
        n = min(len(CHUNK), size - sent)
        sent += n
        await send({"type": "http.response.body", "body": CHUNK[:n], "more_body": sent < size})


async def main(runtime: str) -> None:
    """Serves on a free port of 127.0.0.1 (printed first) until SIGTERM or SIGINT."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    print(sock.getsockname()[1], flush=True)
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.keep_alive_timeout = KEEP_ALIVE_S
    config.h11_max_incomplete_size = MAX_HEADER_BYTES
    config.include_server_header = False
    config.accesslog = None
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:

        async def stopped() -> None:
            async for _ in signals:
                return

        if runtime == "trio":
            from hypercorn.trio import serve as serve_trio

            await serve_trio(app, config, shutdown_trigger=stopped)  # type: ignore[arg-type]  # hypercorn's ASGI types are narrower than our dict messages
        else:
            from hypercorn.asyncio import serve as serve_asyncio

            await serve_asyncio(app, config, shutdown_trigger=stopped)  # type: ignore[arg-type]  # same


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python bench/_ceiling_app.py")
    parser.add_argument("--runtime", choices=("trio", "asyncio"), default="trio")
    args = parser.parse_args()
    anyio.run(functools.partial(main, args.runtime), backend=args.runtime)
    sys.exit(0)
