"""Full-mesh peering over the transport: the driver of :mod:`garage_rpc._peering_core`.

Garage: src/net/peering.rs. Every ``loop_interval_s`` the driver asks the core what to do
and does it, each action in its own task so that a slow peer never delays the others:

- ``Ping``: call ``Ping`` at high priority under ``fail_after(ping_timeout_s)``; the round
  trip feeds the peer's moving average (used by the RPC helper to order quorum calls). If
  the answer's peer-list digest differs from ours, both sides exchange ``PeerList`` and
  learn the peers they lacked: this is how a node given one bootstrap peer meets all.
- ``Connect``: try each known address in turn; success is reported by the transport's
  ``on_connected`` callback, failure of all of them goes back to the core (back-off).
- ``Disconnect``: after too many failed pings, drop the connection; the core retries later.

Connections from nodes that do not listen (the CLI, a test client) are not peers: they are
never added to the peer table, so they neither count as up nodes nor spread in peer lists.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

import anyio
import anyio.abc

# Needed at run time: garage_util.encode resolves the message fields' type hints.
from garage_util.data import FixedBytes32

from ._peering_core import Connect, Disconnect, PeerAddr, PeerInfo, PeeringConfig, PeeringCore, Ping
from .net import PRIO_HIGH, Endpoint, HandshakeError, NetApp, RpcError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import ByteReceiveStream

    from .net import AttachedStream, ConnectionInfo, NodeId

__all__ = [
    "PEER_LIST",
    "PING",
    "PeerListEntry",
    "PeerListMessage",
    "Peering",
    "PeeringConfig",
    "PingMessage",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PingMessage:
    """A ping and its answer: a sequence number and the sender's peer-list digest."""

    id: int
    peer_list_hash: bytes


@dataclass(frozen=True, slots=True)
class PeerListEntry:
    """A peer and where it listens."""

    node_id: FixedBytes32
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class PeerListMessage:
    """The connected peers of the sender (request and answer)."""

    peers: tuple[PeerListEntry, ...]


_DEFAULT_CONFIG = PeeringConfig()

PING = Endpoint("garage_net/peering.rs/Ping", PingMessage, PingMessage)
PEER_LIST = Endpoint("garage_net/peering.rs/PeerList", PeerListMessage, PeerListMessage)


@final
class Peering:
    """Keeps this node connected to every node it knows of.

    Args:
        netapp: the transport (its endpoints and connection callbacks are registered here).
        bootstrap_peers: ``(node id, address)`` to start from.
        config: the timings (Garage's by default).
    """

    __slots__ = ("_bootstrap", "_core", "_netapp", "_ping_ids")

    def __init__(
        self,
        netapp: NetApp,
        *,
        bootstrap_peers: Sequence[tuple[FixedBytes32, PeerAddr]] = (),
        config: PeeringConfig = _DEFAULT_CONFIG,
    ) -> None:
        self._netapp = netapp
        self._core = PeeringCore(netapp.id, config)
        self._bootstrap = list(bootstrap_peers)
        self._ping_ids = itertools.count()
        netapp.endpoint(PING, self._handle_ping)
        netapp.endpoint(PEER_LIST, self._handle_peer_list)
        netapp.on_connected(self._on_connected)
        netapp.on_disconnected(self._on_disconnected)

    # ------------------------------------------------------------------ queries

    def peers(self) -> list[PeerInfo]:
        """Every known node (ourself included), by id. The values are live: do not modify."""
        return self._core.peers()

    def is_up(self, node_id: FixedBytes32) -> bool:
        """True for ourself and for connected peers."""
        peer = self._core.get(node_id)
        return peer is not None and peer.is_up

    def avg_ping_s(self, node_id: FixedBytes32) -> float | None:
        """The moving average of the round trips to ``node_id``, or None if never pinged."""
        peer = self._core.get(node_id)
        return None if peer is None else peer.avg_ping_s

    def up_peers(self) -> list[FixedBytes32]:
        """Ourself and the connected peers."""
        return self._core.up_peers()

    # ------------------------------------------------------------------ service

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Runs the peering loop until cancelled (the transport must be running)."""
        self._core.learn_many(self._bootstrap, anyio.current_time())
        async with anyio.create_task_group() as tg:
            task_status.started()
            while True:
                for action in self._core.tick(anyio.current_time()):
                    if isinstance(action, Ping):
                        tg.start_soon(self._ping, action.node_id)
                    elif isinstance(action, Connect):
                        tg.start_soon(self._connect, action)
                await anyio.sleep(self._core.config.loop_interval_s)

    async def connect_to(self, node_id: FixedBytes32, addr: PeerAddr) -> None:
        """Connects now to ``node_id`` at ``addr`` and remembers it (``garage node connect``).

        Raises:
            RpcError: when the connection fails.
        """
        self._core.learn(node_id, addr, anyio.current_time())
        await self._netapp.connect(node_id, addr)

    # ------------------------------------------------------------------ actions

    async def _connect(self, action: Connect) -> None:
        for addr in action.addrs:
            try:
                await self._netapp.connect(action.node_id, addr)
            except HandshakeError as exc:
                # Reachable but refusing us: a configuration problem an operator must see
                # (Garage: CONNECT_ERROR_MESSAGE, src/rpc/system.rs). A node that is down
                # is routine and stays at DEBUG below.
                logger.warning(
                    "connecting to %s at %s:%d failed: %s. This happens when the two nodes "
                    "are not configured with the same rpc_secret, or when another node "
                    "listens at that address",
                    action.node_id,
                    addr[0],
                    addr[1],
                    exc,
                )
                continue
            except RpcError as exc:
                logger.debug("connecting to %s at %s failed: %s", action.node_id, addr, exc)
                continue
            return
        self._core.connect_failed(action.node_id, anyio.current_time())

    async def _ping(self, node_id: FixedBytes32) -> None:
        digest = self._core.peer_list_digest()
        start = anyio.current_time()
        try:
            with anyio.fail_after(self._core.config.ping_timeout_s):
                answer = await self._netapp.call(
                    node_id,
                    PING,
                    PingMessage(next(self._ping_ids), digest),
                    prio=PRIO_HIGH,
                )
        except (RpcError, TimeoutError) as exc:
            logger.debug("ping to %s failed: %s", node_id, exc)
            for action in self._core.ping_failed(node_id):
                if isinstance(action, Disconnect):
                    logger.info("node %s failed too many pings: disconnecting", node_id)
                    self._netapp.disconnect(node_id)
            return
        now = anyio.current_time()
        self._core.ping_ok(node_id, now - start, now)
        if answer.peer_list_hash != self._core.peer_list_digest():
            await self._exchange_peer_lists(node_id)

    async def _exchange_peer_lists(self, node_id: FixedBytes32) -> None:
        try:
            with anyio.fail_after(self._core.config.ping_timeout_s):
                theirs = await self._netapp.call(
                    node_id,
                    PEER_LIST,
                    self._peer_list_message(),
                    prio=PRIO_HIGH,
                )
        except (RpcError, TimeoutError) as exc:
            logger.debug("peer list exchange with %s failed: %s", node_id, exc)
            return
        self._learn(theirs)

    # ------------------------------------------------------------------ handlers

    async def _handle_ping(
        self, msg: PingMessage, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[PingMessage, AttachedStream | None]:
        return PingMessage(msg.id, self._core.peer_list_digest()), None

    async def _handle_peer_list(
        self, msg: PeerListMessage, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[PeerListMessage, AttachedStream | None]:
        self._learn(msg)
        return self._peer_list_message(), None

    def _learn(self, msg: PeerListMessage) -> None:
        now = anyio.current_time()
        self._core.learn_many(((p.node_id, (p.host, p.port)) for p in msg.peers), now)

    def _peer_list_message(self) -> PeerListMessage:
        return PeerListMessage(
            tuple(PeerListEntry(node, host, port) for node, (host, port) in self._core.peer_list())
        )

    # ------------------------------------------------------------------ transport events

    def _on_connected(self, info: ConnectionInfo) -> None:
        if info.listen_addr is None:
            return  # a client that does not listen (CLI): not a peer
        now = anyio.current_time()
        self._core.connected(info.node_id, info.listen_addr, now)
        self._core.announced(info.node_id, info.listen_addr)

    def _on_disconnected(self, info: ConnectionInfo) -> None:
        self._core.disconnected(info.node_id, anyio.current_time())
