"""Typed endpoints and the registry that serves them (Garage: src/net/endpoint.rs).

An :class:`Endpoint` names a path and the types of its request and response (dataclasses,
or anything :mod:`garage_util.encode` encodes and decodes). A :data:`Handler` is registered
once per path on a node; it gets the decoded request, the caller's node id and the attached
stream (or None), and returns the response and an attached stream (or None).

The :class:`EndpointRegistry` serves two kinds of callers with the same handlers:

- remote requests (:meth:`EndpointRegistry.dispatch`): bytes in, bytes out; the connection
  turns exceptions into error chunks, so the caller sees :class:`RemoteError`;
- calls to the local node (:meth:`EndpointRegistry.call_local`): no encoding at all, as
  Garage does (``into_req_local``), but the same errors, so that quorum logic treats the
  local node like any other (the original exception is the ``__cause__``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeAlias, TypeVar, cast, final

import anyio
from anyio.abc import ByteReceiveStream

from garage_util.encode import pack, unpack
from garage_util.errors import GarageError

from ._errors import NoSuchEndpoint, RemoteError, error_text
from ._keys import NodeId
from ._stream import AttachedStream, LocalStream, aclose_source

if TYPE_CHECKING:
    from ._keys import NodeKey

__all__ = ["Endpoint", "EndpointRegistry", "Handler", "close_attached"]

logger = logging.getLogger(__name__)

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

#: A handler: ``(request, from_node, attached stream or None) -> (response, attached stream
#: or None)``. The attached stream it gets is valid until its own response is sent.
Handler: TypeAlias = Callable[
    [ReqT, NodeId, ByteReceiveStream | None], Awaitable[tuple[RespT, AttachedStream | None]]
]

_MAX_PATH_LEN: Final = 255  # the request head stores its length in one byte


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[ReqT, RespT]):
    """A named RPC: its path, and the types of its request and response.

    Declare them as module constants, e.g.
    ``PING = Endpoint("garage_net/peering.rs/Ping", PingMessage, PingMessage)``.

    Attributes:
        path: unique name, at most 255 UTF-8 bytes (Garage names them after the file).
        request_type: the request's type, decoded with ``garage_util.encode.unpack``.
        response_type: the response's type (``type(None)`` for no answer).
    """

    path: str
    request_type: type[ReqT]
    response_type: type[RespT]

    def __post_init__(self) -> None:
        if not self.path or len(self.path.encode()) > _MAX_PATH_LEN:
            raise ValueError(f"endpoint path must be 1 to {_MAX_PATH_LEN} bytes: {self.path!r}")


@dataclass(frozen=True, slots=True)
class _Registered:
    endpoint: Endpoint[object, object]
    handler: Handler[object, object]


@final
class EndpointRegistry:
    """The handlers of one node, by path."""

    __slots__ = ("_endpoints", "_key")

    def __init__(self, node_key: NodeKey) -> None:
        self._key = node_key
        self._endpoints: dict[str, _Registered] = {}

    def register(self, endpoint: Endpoint[ReqT, RespT], handler: Handler[ReqT, RespT]) -> None:
        """Adds the handler of ``endpoint``.

        Raises:
            ValueError: when a handler is already registered for the path.
        """
        if endpoint.path in self._endpoints:
            raise ValueError(f"endpoint {endpoint.path!r} already has a handler")
        self._endpoints[endpoint.path] = _Registered(
            cast("Endpoint[object, object]", endpoint), cast("Handler[object, object]", handler)
        )

    async def dispatch(
        self, path: str, raw: bytes, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[bytes, AttachedStream | None]:
        """Serves a remote request: decode, handle, encode.

        Raises:
            NoSuchEndpoint: no handler for ``path``.
            DecodeError: the request does not decode as the endpoint's request type.
            Exception: whatever the handler raised.
        """
        registered = self._endpoints.get(path)
        if registered is None:
            raise NoSuchEndpoint(path)
        msg: object = unpack(registered.endpoint.request_type, raw)
        try:
            response, out = await registered.handler(msg, from_node, stream)
        except GarageError:
            logger.debug("handler of %s refused a request from %s", path, from_node, exc_info=True)
            raise
        except Exception:
            logger.warning(
                "handler of %s failed on a request from %s", path, from_node, exc_info=True
            )
            raise
        try:
            return pack(response), out
        except BaseException:
            await close_attached(out)
            raise

    async def call_local(
        self, endpoint: Endpoint[ReqT, RespT], msg: ReqT, stream: AttachedStream | None
    ) -> tuple[RespT, ByteReceiveStream | None]:
        """Runs the handler of ``endpoint`` in-process, as a call from this node.

        Raises:
            NoSuchEndpoint: no handler for the endpoint's path.
            RemoteError: the handler raised (its exception is the ``__cause__``).
        """
        registered = self._endpoints.get(endpoint.path)
        if registered is None:
            await close_attached(stream)
            raise NoSuchEndpoint(endpoint.path, self._key.node_id.short_hex())
        handler = cast("Handler[ReqT, RespT]", registered.handler)
        inp = None if stream is None else LocalStream(stream)
        try:
            response, out = await handler(msg, self._key.node_id, inp)
        except Exception as exc:
            if inp is not None:
                await inp.aclose()
            raise RemoteError(error_text(exc)) from exc
        except BaseException:
            if inp is not None:
                with anyio.CancelScope(shield=True):
                    await inp.aclose()
            raise
        if out is None:
            if inp is not None:
                await inp.aclose()
            return response, None
        return response, LocalStream(out, also_close=inp)


async def close_attached(stream: AttachedStream | None) -> None:
    """Closes an attached stream's source that will not be sent (shielded)."""
    if stream is not None and not isinstance(stream, bytes | bytearray | memoryview):
        with anyio.CancelScope(shield=True):
            await aclose_source(stream)
