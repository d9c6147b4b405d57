"""The exceptions of the transport, and the translation of runtime errors into them.

Every error the transport raises on purpose derives from :class:`RpcError`, itself a
:class:`~garage_util.errors.GarageError`. Names say who is at fault (h11's Local/Remote):
``Remote*`` means the other node said no, ``Peer*`` means the connection is gone,
``Handshake*`` means we never got a session. Socket and anyio exceptions never reach users:
the drivers translate them with :func:`map_transport_errors` at the socket boundary.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio

from garage_util.errors import GarageError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "HandshakeError",
    "MessageTooLarge",
    "NoSuchEndpoint",
    "NodeKeyError",
    "NotConnected",
    "PeerDisconnected",
    "ProtocolError",
    "RemoteError",
    "RpcError",
    "RpcTimeout",
    "VersionMismatch",
    "error_text",
    "map_transport_errors",
]


class RpcError(GarageError):
    """Base of every error raised on purpose by garage_rpc's transport."""


class NodeKeyError(RpcError):
    """Raised when the node key file cannot be used.

    The file has the wrong size, is readable by group or others, or does not match its
    ``node_key.pub``. The message names the file and what to do about it.
    """


class HandshakeError(RpcError):
    """Raised when a connection fails before a session is established.

    Causes: the peer does not know our network key (``rpc_secret``), the peer is not the
    node we expected (it cannot prove it holds the key of the id we dialled), the peer
    closed the connection or sent garbage during the secret handshake.
    """


class VersionMismatch(HandshakeError):
    """Raised when the peer completed the handshake but speaks another protocol version.

    The message shows both version tags; the connection is dropped.
    """


class RpcTimeout(RpcError):
    """Raised when the transport's own deadline expires.

    The only such deadline is ``NetApp``'s ``handshake_timeout_s``: connecting, handshaking
    and exchanging version tags took too long (a silent or overloaded peer). Deadlines of
    calls are the caller's ``anyio.fail_after``, which raise ``TimeoutError`` as usual.
    """


class PeerDisconnected(RpcError):
    """Raised when the connection carrying a call or a stream is lost.

    Every call pending on a connection fails with this when the peer goes away (EOF,
    connection reset, a packet that fails authentication, a protocol violation) or when
    the connection is closed locally. ``__cause__`` holds the underlying reason.
    """


class NotConnected(PeerDisconnected):
    """Raised when there is no connection to the node a call is addressed to, or when a
    connection attempt fails at the TCP level (refused, unreachable)."""


class ProtocolError(RpcError):
    """Raised when the peer broke the framing protocol.

    Examples: a chunk longer than allowed, a stream that ends inside its header, more data
    than the flow-control window allows, a response that does not decode as the
    endpoint's response type. Inside a connection this drops the connection (pending calls
    then see :class:`PeerDisconnected` caused by it).
    """


class NoSuchEndpoint(RpcError):
    """Raised by a call when the target node has no handler for the endpoint's path.

    Attributes:
        path: the endpoint path that was called.
        node: the short id of the node that lacks it ("" when raised by that node itself).
    """

    def __init__(self, path: str, node: str = "") -> None:
        self.path = path
        self.node = node
        where = f"node {node}" if node else "this node"
        super().__init__(f"no endpoint {path!r} on {where}")


class RemoteError(RpcError):
    """Raised by a call when the remote handler raised an exception.

    The exception does not cross the network: its type name and message do, as
    ``"TypeName: message"`` in :attr:`message`. Also raised when reading an attached
    stream whose sender failed midway. For calls to the local node the handler's original
    exception is kept as ``__cause__``.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"remote error: {message}")


class MessageTooLarge(RpcError):
    """Raised when a message (the msgpack part of a request or response, not its attached
    stream) is larger than the limit of the sender or of the receiver.

    Attributes:
        size: the size of the message in bytes (0 when the receiver refused it and did not
            say).
        limit: the limit that was exceeded (0 when unknown).
    """

    def __init__(self, message: str, *, size: int = 0, limit: int = 0) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message)


@contextlib.contextmanager
def map_transport_errors(what: str) -> Iterator[None]:
    """Translates socket and anyio stream errors into :class:`PeerDisconnected`.

    Args:
        what: names the connection in the message (e.g. ``"connection to 1a2b…"``).
    """
    try:
        yield
    except anyio.EndOfStream as exc:
        raise PeerDisconnected(f"{what}: closed by the peer") from exc
    except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
        raise PeerDisconnected(f"{what}: connection broken") from exc
    except OSError as exc:
        raise PeerDisconnected(f"{what}: {exc.strerror or exc}") from exc


def error_text(exc: BaseException) -> str:
    """What travels over the network for a handler exception: ``"TypeName: message"``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
