"""The HTTP boundary shared by the APIs: requests and responses, ASGI, and serving.

Every API (S3, K2V, admin, web) is a handler ``async (Request) -> Response``. :func:`asgi`
turns one into an ASGI application; :func:`serve` runs that application with hypercorn on
the current event loop (trio or asyncio, whichever anyio runs on), on a TCP address or a
Unix socket. Bodies are streamed both ways: :attr:`Request.body` yields the chunks as the
client sends them (hypercorn applies flow control), and a :class:`Response` body may be an
async iterable of chunks, so no object ever has to sit whole in memory.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias, final

import anyio
import anyio.abc
import sniffio
from hypercorn.config import Config as HypercornConfig

from garage_util.config import TcpAddr, UnixSocketAddr

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from types import ModuleType

__all__ = [
    "BODY_READ_TIMEOUT_S",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_COUNT",
    "MAX_HEADER_LINE_BYTES",
    "BodyTooLargeError",
    "Handler",
    "Request",
    "Response",
    "asgi",
    "serve",
]

logger = logging.getLogger(__name__)

#: The most bytes of request line and headers accepted (larger requests get 431/400).
MAX_HEADER_BYTES: Final = 64 * 1024
#: The longest header line accepted, name and value (431 above): nginx's and Apache's
#: default, and S3 caps user metadata at 2 KiB anyway.
MAX_HEADER_LINE_BYTES: Final = 8 * 1024
#: The most header lines accepted (431 above): hyper's limit, so Garage's, and Apache's.
MAX_HEADER_COUNT: Final = 100
#: Idle keep-alive connections are closed after this long. Hypercorn's keep-alive timer is
#: also the deadline for a request's head (bytes of an unfinished head do not reset it), so
#: this is the slow-loris bound too: 30 s, as hyper's header_read_timeout under Garage.
_KEEP_ALIVE_S: Final = 30
#: A request body from which nothing arrives for this long is dropped (the handler sees the
#: client as gone), so that a stalled upload cannot hold its connection forever (fault-testing
#: §3.9, Ceph CVE-2019-10222). Reset by every chunk received: slow but live uploads go on.
BODY_READ_TIMEOUT_S: Final = 30

Scope: TypeAlias = dict[str, Any]
Message: TypeAlias = dict[str, Any]


class BodyTooLargeError(ValueError):
    """A request body was larger than the handler allows."""


@final
class Request:
    """One HTTP request, as the handlers see it.

    Attributes:
        method: upper-case method.
        raw_path: the path as sent, still percent-encoded (SigV4 signs it so).
        query_string: the raw query string, without ``?``.
        headers: ``(lower-case name, value)`` pairs in order (repeated names kept).
        client: the peer's ``(host, port)``, if known.
    """

    __slots__ = (
        "_ended",
        "_receive",
        "_started",
        "client",
        "headers",
        "method",
        "query_string",
        "raw_path",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        query_string: str,
        headers: list[tuple[str, str]],
        receive: Callable[[], Awaitable[Message]] | None = None,
        *,
        client: tuple[str, int] | None = None,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.query_string = query_string
        self.headers = headers
        self.client = client
        self._receive = receive
        self._started = False
        self._ended = receive is None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def host(self) -> str:
        """The Host header (empty if absent)."""
        return self.header("host") or ""

    async def body(self) -> AsyncIterator[bytes]:
        """The body's chunks, as they arrive. Can be iterated once.

        Raises:
            anyio.BrokenResourceError: the client disconnected before the end, or sent
                nothing for :data:`BODY_READ_TIMEOUT_S`.
        """
        if self._started:
            raise RuntimeError("the request body was already read")
        self._started = True
        if self._receive is None:
            return
        while True:
            message = await self._next_message()
            if message is None:
                self._ended = True  # nothing to drain: the connection is dropped after
                raise anyio.BrokenResourceError(
                    f"the client sent nothing of the body for {BODY_READ_TIMEOUT_S} s"
                )
            kind = message["type"]
            if kind == "http.disconnect":
                self._ended = True
                raise anyio.BrokenResourceError("the client disconnected during the body")
            chunk = message.get("body", b"")
            if not message.get("more_body", False):
                self._ended = True
            if chunk:
                yield chunk
            if self._ended:
                return

    async def drain(self) -> None:
        """Reads and drops what the handler left of the body, so that the connection can
        serve its next request (HTTP/1.1 keep-alive) and a graceful stop is not held up
        by a client still sending."""
        if self._ended or self._receive is None:
            return
        if not self._started and (self.header("expect") or "").lower() == "100-continue":
            return  # the client waits for "100 Continue" before sending: no body will come
        while True:
            message = await self._next_message()
            if (
                message is None
                or message["type"] == "http.disconnect"
                or not message.get("more_body", False)
            ):
                self._ended = True
                return

    async def _next_message(self) -> Message | None:
        """The next ASGI message of the body; None when none came for
        :data:`BODY_READ_TIMEOUT_S` (hypercorn has no such deadline once a request has
        started: its ``read_timeout`` would also cut long downloads)."""
        assert self._receive is not None
        with anyio.move_on_after(BODY_READ_TIMEOUT_S):
            return await self._receive()
        return None

    async def read_body(self, limit: int) -> bytes:
        """The whole body, for small documents (XML, JSON).

        Raises:
            BodyTooLargeError: the body is longer than ``limit`` bytes.
        """
        buf = bytearray()
        async for chunk in self.body():
            buf += chunk
            if len(buf) > limit:
                raise BodyTooLargeError(f"the request body is over {limit} bytes")
        return bytes(buf)


@dataclass(slots=True)
class Response:
    """An HTTP response.

    Attributes:
        status: the status code.
        headers: ``(name, value)`` pairs.
        body: the whole body, or an async iterable of chunks (streamed; set
            ``Content-Length`` in ``headers`` when it is known).
        endpoint: the API operation that answered (``"GetObject"``), for metrics; empty
            when the request was not routed to one (metrics then use the method).
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterable[bytes] = b""
    endpoint: str = ""


Handler: TypeAlias = "Callable[[Request], Awaitable[Response]]"
"""An API: answers one request."""


def asgi(handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Awaitable[None]]:
    """The ASGI application serving ``handler`` (lifespan events are acknowledged).

    A handler that raises is a bug: the client gets a bare 500 and the error is logged.
    APIs render their own errors (S3 XML, JSON) before that.
    """

    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if _head_too_large(scope):
            await _send(Response(431, [("connection", "close")]), send, head=False)
            return
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        request = Request(
            scope["method"],
            raw_path.decode("latin-1").partition("?")[0],
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            receive,
            client=scope.get("client"),
        )
        try:
            response = await handler(request)
        except Exception:
            logger.exception("unhandled error serving %s %s", request.method, request.raw_path)
            response = Response(500, [("content-length", "0")])
        await _send(response, send, head=request.method == "HEAD")
        await request.drain()

    return app


def _head_too_large(scope: Scope) -> bool:
    """Whether a request's head breaks :data:`MAX_HEADER_BYTES`,
    :data:`MAX_HEADER_LINE_BYTES` or :data:`MAX_HEADER_COUNT`. h11 checks the first only
    while the head is incomplete, so a head that arrives whole in one read (hypercorn reads
    64 KiB at a time) could be nearly twice as large."""
    if len(scope["headers"]) > MAX_HEADER_COUNT:
        return True
    total = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    for name, value in scope["headers"]:
        line = len(name) + len(value) + 4  # ": " and CRLF
        if line > MAX_HEADER_LINE_BYTES:
            return True
        total += line
    return total > MAX_HEADER_BYTES


async def _lifespan(
    receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send(
    response: Response, send: Callable[[Message], Awaitable[None]], *, head: bool
) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    body = response.body
    if isinstance(body, bytes) and not any(k == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if isinstance(body, bytes) or head:
        data = b"" if head or not isinstance(body, bytes) else body
        await send({"type": "http.response.body", "body": data, "more_body": False})
        if head and not isinstance(body, bytes):
            await _close(body)
        return
    try:
        async for chunk in body:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await _close(body)


async def _close(body: AsyncIterable[bytes]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


def _free_closed_connections(run_module: ModuleType) -> None:
    """Makes hypercorn close a connection as soon as its client has closed it.

    Hypercorn's TCP servers (0.18, trio and asyncio alike) run the keep-alive timer in the
    connection's task group and close the socket only once that group is done: a connection
    the client closed kept its descriptor until the timer fired, so a client connecting and
    hanging up in a loop could run the node out of descriptors. Once nothing more can be
    read, the timer has nothing left to guard: stop it. Idempotent.
    """
    server = run_module.TCPServer
    if getattr(server, "frees_closed_connections", False):
        return

    class TCPServer(server):  # type: ignore[misc,valid-type]  # hypercorn's class, at run time
        frees_closed_connections = True

        async def _read_data(self) -> None:
            await super()._read_data()
            await self.idle_task.stop()

    setattr(run_module, "TCPServer", TCPServer)  # noqa: B010  # a module global, on purpose


def _listening_socket(bind: TcpAddr | UnixSocketAddr, unix_mode: int) -> socket.socket:
    if isinstance(bind, UnixSocketAddr):
        path = str(bind.path)
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # a stale socket of an earlier run
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, unix_mode)
    else:
        family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((bind.host, bind.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(
    handler: Callable[[Request], Awaitable[Response]],
    bind: TcpAddr | UnixSocketAddr,
    *,
    shutdown: anyio.Event | None = None,
    unix_mode: int = 0o222,
    graceful_timeout_s: float = 30.0,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serves ``handler`` over HTTP/1.1 until ``shutdown`` is set or the call is cancelled,
    then stops gracefully: no new connection, and requests in flight get
    ``graceful_timeout_s`` to finish before their connections are dropped.

    Reports the bound address (``host:port``, with the real port when asked for port 0,
    or the socket path) once listening.

    Args:
        handler: the API.
        bind: a TCP address or a Unix socket path.
        shutdown: set it to stop gracefully.
        unix_mode: permissions of a Unix socket (Garage: 0222 for S3 and web, 0220 admin).
        graceful_timeout_s: how long requests in flight may take after a stop.
        task_status: see ``TaskGroup.start``.

    Raises:
        OSError: the address cannot be bound.
    """
    sock = _listening_socket(bind, unix_mode)
    if isinstance(bind, UnixSocketAddr):
        bound = str(bind.path)
    else:
        host, port = sock.getsockname()[:2]
        bound = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    fd = sock.detach()  # hypercorn owns the socket from here, and closes it
    config = HypercornConfig()
    config.bind = [f"fd://{fd}"]
    config.keep_alive_timeout = _KEEP_ALIVE_S
    config.graceful_timeout = graceful_timeout_s
    config.h11_max_incomplete_size = MAX_HEADER_BYTES
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logger
    app = asgi(handler)
    stop = shutdown if shutdown is not None else anyio.Event()
    done = anyio.Event()

    async def run_server() -> None:
        # Shielded: a cancellation of serve() becomes a graceful stop (below), which
        # hypercorn handles on both runtimes; cancelling hypercorn's own tasks on asyncio
        # leaves it in a broken state.
        try:
            with anyio.CancelScope(shield=True):
                if sniffio.current_async_library() == "trio":
                    import hypercorn.trio
                    import hypercorn.trio.run

                    _free_closed_connections(hypercorn.trio.run)
                    await hypercorn.trio.serve(app, config, shutdown_trigger=stop.wait)
                else:
                    import hypercorn.asyncio
                    import hypercorn.asyncio.run

                    _free_closed_connections(hypercorn.asyncio.run)
                    await hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait)
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_server)
        task_status.started(bound)
        try:
            await done.wait()
        finally:
            stop.set()
