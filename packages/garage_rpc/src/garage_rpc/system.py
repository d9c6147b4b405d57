"""The node's view of the cluster: status exchange, known nodes, health.

Garage: src/rpc/system.rs. Every ``status_interval_s`` (Garage: 10 s) a node sends its
:class:`NodeStatus` (hostname, replication factor, layout digest, free space of its
metadata and data dirs, version) to every connected peer at high priority; a peer stores it
with the time it arrived. A peer advertising a *higher replication factor* than ours is a
misconfiguration that would corrupt data (it would place partitions on nodes we do not
write to), so the node stops with :class:`ReplicationFactorMismatch` (Garage aborts).

``GetKnownNodes`` answers what the CLI's ``garage status`` shows: each known node, its
address, whether it is up, when it was last seen, and its last status.

Health (:func:`cluster_health`) is a pure function of the live layout versions' node sets
and the set of up nodes: a partition "has quorum" when each of its sets has at least
``write_quorum`` up nodes, and is "all ok" when all of its nodes are up. The cluster is
``healthy`` when every partition is all ok and every storage node is up, ``degraded`` when
every partition has quorum, ``unavailable`` otherwise.
"""

from __future__ import annotations

import enum
import logging
import shutil
import socket
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Final, final

import anyio
import anyio.abc

# Needed at run time: garage_util.encode resolves the message fields' type hints.
from garage_util.data import FixedBytes32
from garage_util.errors import GarageError

from .layout import NB_PARTITIONS, LayoutDigest, partition_first_hash
from .net import PRIO_HIGH, Endpoint, NetApp, RpcError
from .replication_mode import ReplicationParams
from .rpc_helper import RpcHelper

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from anyio.abc import ByteReceiveStream

    from .layout_manager import LayoutManager
    from .net import AttachedStream, NodeId
    from .peering import Peering

__all__ = [
    "ADVERTISE_STATUS",
    "GET_KNOWN_NODES",
    "ClusterHealth",
    "DiskSpace",
    "GetKnownNodes",
    "HealthStatus",
    "KnownNode",
    "KnownNodes",
    "NodeStatus",
    "ReplicationFactorMismatch",
    "System",
    "cluster_health",
]

logger = logging.getLogger(__name__)

#: Garage sends its status every 10 s: often enough for `garage status` to be fresh,
#: rare enough to cost nothing.
DEFAULT_STATUS_INTERVAL_S: Final = 10.0


class ReplicationFactorMismatch(GarageError):
    """Raised (and stops the node) when a peer runs with a higher replication factor."""


@dataclass(frozen=True, slots=True)
class DiskSpace:
    """Free and total bytes of a filesystem."""

    avail: int
    total: int


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What a node tells its peers about itself every few seconds."""

    hostname: str | None
    public_addr: str | None
    replication_factor: int
    layout_digest: LayoutDigest | None
    meta_disk: DiskSpace | None
    data_disk: DiskSpace | None
    version: str


@dataclass(frozen=True, slots=True)
class GetKnownNodes:
    """Request of ``GetKnownNodes`` (no fields)."""


@dataclass(frozen=True, slots=True)
class KnownNode:
    """One node as seen by the answering node."""

    node_id: FixedBytes32
    host: str | None
    port: int | None
    is_up: bool
    last_seen_ms_ago: int | None
    status: NodeStatus | None


@dataclass(frozen=True, slots=True)
class KnownNodes:
    """Answer of ``GetKnownNodes``."""

    nodes: tuple[KnownNode, ...]


ADVERTISE_STATUS = Endpoint("garage_rpc/system.rs/AdvertiseStatus", NodeStatus, type(None))
GET_KNOWN_NODES = Endpoint("garage_rpc/system.rs/GetKnownNodes", GetKnownNodes, KnownNodes)


class HealthStatus(enum.StrEnum):
    """Overall cluster health."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    """The cluster's health, as `garage status` and the admin API report it."""

    status: HealthStatus
    storage_nodes: int
    storage_nodes_up: int
    partitions: int
    partitions_quorum: int
    partitions_all_ok: int
    replicas_up: tuple[int, ...]
    """Per partition, the up replicas in its worst live layout version."""


def cluster_health(
    partition_sets: Sequence[Sequence[Sequence[FixedBytes32]]],
    up: set[FixedBytes32] | frozenset[FixedBytes32],
    write_quorum: int,
) -> ClusterHealth:
    """Computes health from each partition's node sets (one per live layout version).

    Args:
        partition_sets: for each partition, its node set in each live layout version.
        up: the nodes currently up (ourself included).
        write_quorum: successes a write needs in each set.
    """
    storage = {n for sets in partition_sets for s in sets for n in s}
    quorum = all_ok = 0
    replicas_up = tuple(
        min((sum(n in up for n in s) for s in sets), default=0) for sets in partition_sets
    )
    for sets in partition_sets:
        if all(sum(n in up for n in s) >= write_quorum for s in sets):
            quorum += 1
        if all(n in up for s in sets for n in s):
            all_ok += 1
    storage_up = len(storage & set(up))
    n = len(partition_sets)
    if not storage:
        status = HealthStatus.UNAVAILABLE  # no layout yet: nothing can be stored
    elif all_ok == n and storage_up == len(storage):
        status = HealthStatus.HEALTHY
    elif quorum == n:
        status = HealthStatus.DEGRADED
    else:
        status = HealthStatus.UNAVAILABLE
    return ClusterHealth(status, len(storage), storage_up, n, quorum, all_ok, replicas_up)


def _format_addr(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _disk(path: Path | None) -> DiskSpace | None:
    if path is None:
        return None
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return DiskSpace(usage.free, usage.total)


@final
class System:
    """Status exchange and the known-nodes view of one node.

    Args:
        netapp: the transport.
        peering: the peering service of this node.
        replication_factor: this node's ``replication_factor``.
        layout: the layout manager; peers whose layout digest differs from ours are asked
            for their layout. None: no layout (a transport-only node).
        metadata_dir, data_dir: whose free space is reported (None: not reported).
        status_interval_s: how often the status is sent to every peer.
    """

    __slots__ = (
        "_data_dir",
        "_fatal",
        "_layout",
        "_meta_dir",
        "_netapp",
        "_peering",
        "_rf",
        "_status_interval_s",
        "_statuses",
        "_to_pull",
    )

    def __init__(
        self,
        netapp: NetApp,
        peering: Peering,
        *,
        replication_factor: int,
        layout: LayoutManager | None = None,
        metadata_dir: Path | None = None,
        data_dir: Path | None = None,
        status_interval_s: float = DEFAULT_STATUS_INTERVAL_S,
    ) -> None:
        self._netapp = netapp
        self._peering = peering
        self._rf = replication_factor
        self._layout = layout
        self._meta_dir = metadata_dir
        self._data_dir = data_dir
        self._status_interval_s = status_interval_s
        self._statuses: dict[FixedBytes32, tuple[float, NodeStatus]] = {}
        self._fatal: anyio.Event = anyio.Event()
        self._to_pull: set[FixedBytes32] = set()
        netapp.endpoint(ADVERTISE_STATUS, self._handle_status)
        netapp.endpoint(GET_KNOWN_NODES, self._handle_known_nodes)

    def local_status(self) -> NodeStatus:
        """This node's status now (reads the free space of its directories)."""
        addr = self._netapp.public_addr
        return NodeStatus(
            hostname=socket.gethostname(),
            public_addr=None if addr is None else _format_addr(addr),
            replication_factor=self._rf,
            layout_digest=None if self._layout is None else self._layout.digest(),
            meta_disk=_disk(self._meta_dir),
            data_disk=_disk(self._data_dir),
            version=version("garage-rpc"),
        )

    def known_nodes(self) -> list[KnownNode]:
        """Every known node with its address, liveness, age of last contact and status."""
        now = anyio.current_time()
        out = []
        for peer in self._peering.peers():
            addr = peer.connected_addr or (peer.addrs[0] if peer.addrs else None)
            is_self = peer.node_id == self._netapp.id
            status = (
                self.local_status() if is_self else self._statuses.get(peer.node_id, (0, None))[1]
            )
            seen = None if peer.last_seen is None else int((now - peer.last_seen) * 1000)
            out.append(
                KnownNode(
                    node_id=peer.node_id,
                    host=None if addr is None else addr[0],
                    port=None if addr is None else addr[1],
                    is_up=peer.is_up,
                    last_seen_ms_ago=0 if is_self else seen,
                    status=status,
                )
            )
        return out

    def rpc_helper(self) -> RpcHelper:
        """An RPC helper that orders nodes by our zone (from the current layout) and by the
        round trips peering measured."""
        layout = self._layout

        def zone_of(node: FixedBytes32) -> str | None:
            if layout is None:
                return None
            role = layout.helper.current.get_node_role(node)
            return None if role is None else role.zone

        return RpcHelper(self._netapp.id, zone_of=zone_of, rtt_of=self._peering.avg_ping_s)

    def health(self, consistency: ReplicationParams | None = None) -> ClusterHealth:
        """The cluster's health from the live layout versions and the peers that are up.

        Raises:
            RuntimeError: when this System has no layout manager.
        """
        if self._layout is None:
            raise RuntimeError("cluster health needs a layout manager")
        helper = self._layout.helper
        params = consistency or ReplicationParams(helper.current.replication_factor)
        sets = [helper.storage_sets_of(partition_first_hash(p)) for p in range(NB_PARTITIONS)]
        return cluster_health(sets, frozenset(self._peering.up_peers()), params.write_quorum)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Sends the status to every peer periodically until cancelled.

        Raises:
            ReplicationFactorMismatch: when a peer runs with a higher replication factor.
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_fatal)
            task_status.started()
            while True:
                status = await anyio.to_thread.run_sync(self.local_status)
                for peer in self._peering.up_peers():
                    if peer != self._netapp.id:
                        tg.start_soon(self._advertise, peer, status)
                await self._pull_layouts()
                if self._layout is not None:
                    # Acknowledges the newest version no write in flight still needs.
                    await self._layout.ack_versions(push_to=self._peering.up_peers())
                await anyio.sleep(self._status_interval_s)

    async def _pull_layouts(self) -> None:
        """Pulls the layout from the peers whose last status showed another digest."""
        layout, peers = self._layout, sorted(self._to_pull)
        self._to_pull.clear()
        if layout is None:
            return
        for peer in peers:
            if await layout.pull_from(peer):
                # Our layout changed: tell everyone at once rather than at their next pull.
                await layout.push(self._peering.up_peers())

    async def _watch_fatal(self) -> None:
        await self._fatal.wait()
        raise ReplicationFactorMismatch(
            f"a peer runs with a higher replication factor than ours ({self._rf}); "
            "every node of a cluster must use the same replication_factor"
        )

    async def _advertise(self, peer: FixedBytes32, status: NodeStatus) -> None:
        try:
            with anyio.fail_after(self._status_interval_s):
                await self._netapp.call(peer, ADVERTISE_STATUS, status, prio=PRIO_HIGH)
        except (RpcError, TimeoutError) as exc:
            logger.debug("status to %s failed: %s", peer, exc)

    async def _handle_status(
        self, msg: NodeStatus, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[None, AttachedStream | None]:
        if msg.replication_factor > self._rf:
            logger.error(
                "node %s has replication factor %d, ours is %d: stopping",
                from_node,
                msg.replication_factor,
                self._rf,
            )
            self._fatal.set()
        self._statuses[from_node] = (anyio.current_time(), msg)
        if self._layout is not None and msg.layout_digest not in (None, self._layout.digest()):
            self._to_pull.add(from_node)
        return None, None

    async def _handle_known_nodes(
        self, msg: GetKnownNodes, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[KnownNodes, AttachedStream | None]:
        return KnownNodes(tuple(self.known_nodes())), None
