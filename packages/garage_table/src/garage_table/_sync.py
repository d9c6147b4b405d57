"""Anti-entropy: replicas compare Merkle trees and push what the other lacks.

Garage: src/table/sync.rs. A *full sync* walks every sync partition of the table
(:meth:`TableReplication.sync_partitions`), one at a time:

- If this node stores the partition (it is in one of its node sets), it syncs with every
  other node of those sets. Sync with one peer is **push-only**: we send what we have and
  the peer may lack; the peer pushes its own differences when it syncs with us.

  1. Our root hash is empty: nothing to push. Otherwise ``RootCkHash``: the peer answers
     whether its root differs; if not, done.
  2. Walk the differing prefixes breadth first from the root. At a local Leaf, queue the
     stored value. At a local Intermediate, ask the peer for its node at that prefix
     (``GetNode``; anything but an Intermediate counts as empty) and descend into every
     child byte whose hash differs or that the peer lacks.
  3. Queued values go out in ``Items`` batches of 256 at background priority; the peer
     merges them like any write (CRDT merge, Merkle todo, hooks).

  The Merkle tree lags the store slightly (its worker applies the todo in batches); sync
  tolerates that: a pushed value is always the current stored one, and a difference the
  tree does not show yet is found by the next sync.

- If this node does not store the partition any more (after a layout change), it
  **offloads** it: reads up to 1024 local items of the range, sends them to every node of
  every set (all must acknowledge), then deletes each local item only if it is unchanged
  (compare-and-delete), until nothing is left.

A full sync runs 20 s after start, then every ``interval_s`` (Garage: 10 min), and at
once when triggered (:meth:`SyncWorker.add_full_sync`: layout change, a peer came back,
``garage repair tables``). When one completes for layout version v, the node records in
the layout's ``sync_map`` that it holds all data of v, which lets old layout versions be
retired once every node has done so.

Items pushed to and merged from peers are counted (:meth:`TableSyncer.statistics`;
Garage's ``table.sync_items_sent``/``sync_items_received``) for the node's metrics.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

import anyio
import anyio.abc

from garage_rpc.net import PRIO_BACKGROUND, Endpoint, NetApp, RpcError
from garage_util.background import Worker, WorkerState, WorkerStatus
from garage_util.data import Hash

from ._merkle import EMPTY_NODE_HASH, MerkleIntermediate, MerkleLeaf, MerkleNode

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import ByteReceiveStream

    from garage_rpc.layout_manager import LayoutManager
    from garage_rpc.net import AttachedStream, ConnectionInfo, NodeId
    from garage_util.data import Uuid

    from ._data import TableData
    from .replication import SyncPartition
    from .schema import TableEntry

__all__ = [
    "GetNode",
    "Items",
    "NodeAnswer",
    "RootCkDifferent",
    "RootCkHash",
    "SyncStatistics",
    "SyncWorker",
    "TableSyncer",
]

logger = logging.getLogger(__name__)

E = TypeVar("E", bound="TableEntry[Any, Any]")
Q = TypeVar("Q")
R = TypeVar("R")

#: Values per Items message (Garage: 256): small enough to interleave with other traffic.
ITEMS_BATCH: Final = 256
#: Items read per offload round (Garage: 1024).
OFFLOAD_BATCH: Final = 1024
#: Garage syncs every table every 10 minutes, and 20 s after start.
DEFAULT_SYNC_INTERVAL_S: Final = 600.0
DEFAULT_FIRST_SYNC_DELAY_S: Final = 20.0
#: Deadline of one sync RPC: generous, sync runs in the background.
_SYNC_RPC_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class RootCkHash:
    """Request: is your root of this partition different from this hash?"""

    partition: int
    hash: Hash


@dataclass(frozen=True, slots=True)
class RootCkDifferent:
    """Answer to RootCkHash."""

    different: bool


@dataclass(frozen=True, slots=True)
class GetNode:
    """Request: your Merkle node at this prefix of this partition."""

    partition: int
    prefix: bytes


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    """Answer to GetNode."""

    node: MerkleNode


@dataclass(frozen=True, slots=True)
class Items:
    """Request: encoded entries to merge."""

    values: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SyncStatistics:
    """The anti-entropy traffic of one table on this node since start.

    Attributes:
        items_sent: entries pushed to peers (sync and offload).
        items_received: entries received from peers' syncs and offloads.
    """

    items_sent: int
    items_received: int


@final
class TableSyncer(Generic[E]):
    """The anti-entropy protocol of one table on one node.

    Args:
        data: the local store.
        netapp: the transport (the sync endpoints are registered on it).
        on_synced: called with the layout version after a full sync succeeded everywhere
            (the node raises its ``sync_map`` tracker with it).
    """

    __slots__ = (
        "_data",
        "_ep_get_node",
        "_ep_items",
        "_ep_root",
        "_items_received",
        "_items_sent",
        "_netapp",
        "_on_synced",
    )

    def __init__(
        self,
        data: TableData[E],
        netapp: NetApp,
        *,
        on_synced: Callable[[int], Awaitable[object]] | None = None,
    ) -> None:
        self._data = data
        self._netapp = netapp
        self._on_synced = on_synced
        self._items_sent = self._items_received = 0
        prefix = f"garage_table/sync.rs/Rpc:{data.name}"
        self._ep_root = Endpoint(f"{prefix}/RootCkHash", RootCkHash, RootCkDifferent)
        self._ep_get_node = Endpoint(f"{prefix}/GetNode", GetNode, NodeAnswer)
        self._ep_items = Endpoint(f"{prefix}/Items", Items, type(None))
        netapp.endpoint(self._ep_root, self._handle_root)
        netapp.endpoint(self._ep_get_node, self._handle_get_node)
        netapp.endpoint(self._ep_items, self._handle_items)

    # ------------------------------------------------------------------ full sync

    async def full_sync(self) -> bool:
        """Syncs every partition of the table once; True when every one succeeded."""
        parts = self._data.replication.sync_partitions()
        order = list(parts.partitions)
        random.shuffle(order)  # spread the load of many nodes starting together
        ok = True
        for partition in order:
            try:
                await self.sync_partition(partition)
            except (RpcError, TimeoutError) as exc:
                ok = False
                logger.info(
                    "table %s: sync of partition %d failed: %s",
                    self._data.name,
                    partition.partition,
                    exc,
                )
        if ok:
            await self.synced(parts.layout_version)
        return ok

    @property
    def data(self) -> TableData[E]:
        """The local store this syncer pushes from."""
        return self._data

    def statistics(self) -> SyncStatistics:
        """The items sent and received so far (a snapshot; never blocks)."""
        return SyncStatistics(self._items_sent, self._items_received)

    async def synced(self, layout_version: int) -> None:
        """Reports that every partition was synced as of ``layout_version``."""
        if self._on_synced is not None:
            await self._on_synced(layout_version)

    async def sync_partition(self, partition: SyncPartition) -> None:
        """Syncs one partition with its other replicas, or offloads it if we left it.

        Raises:
            RpcError, TimeoutError: when a peer could not be synced with (or, offloading,
                when not every storage node acknowledged).
        """
        me = self._netapp.id
        if any(me in s for s in partition.storage_sets):
            peers = {n for s in partition.storage_sets for n in s if n != me}
            errors: list[Exception] = []
            for peer in sorted(peers):
                try:
                    await self.sync_with(peer, partition)
                except (RpcError, TimeoutError) as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
        elif partition.storage_sets and all(partition.storage_sets):
            await self.offload(partition)

    async def sync_with(self, peer: Uuid, partition: SyncPartition) -> int:
        """Pushes to ``peer`` the items of ``partition`` whose Merkle paths differ.

        Returns:
            How many items were sent.
        """
        updater = self._data.merkle_updater
        p = partition.partition
        root = await anyio.to_thread.run_sync(updater.root_hash, p)
        if root == EMPTY_NODE_HASH:
            return 0
        answer = await self._call(peer, self._ep_root, RootCkHash(p, root))
        if not answer.different:
            return 0
        todo: deque[bytes] = deque([b""])
        batch: list[bytes] = []
        sent = 0
        while todo:
            prefix = todo.popleft()
            local = await anyio.to_thread.run_sync(updater.read_node, p, prefix)
            if isinstance(local, MerkleLeaf):
                value = await anyio.to_thread.run_sync(self._data.store.get, local.tree_key)
                if value is not None:
                    batch.append(value)
            elif isinstance(local, MerkleIntermediate):
                remote = (await self._call(peer, self._ep_get_node, GetNode(p, prefix))).node
                for byte, child_hash in local.children:
                    theirs = remote.child(byte) if isinstance(remote, MerkleIntermediate) else None
                    if theirs != child_hash:
                        todo.append(prefix + bytes((byte,)))
            if len(batch) >= ITEMS_BATCH:
                await self._call(peer, self._ep_items, Items(tuple(batch)))
                sent += len(batch)
                self._items_sent += len(batch)
                batch = []
        if batch:
            await self._call(peer, self._ep_items, Items(tuple(batch)))
            sent += len(batch)
            self._items_sent += len(batch)
        return sent

    async def offload(self, partition: SyncPartition) -> int:
        """Hands every local item of a partition we no longer store to its storage nodes,
        then deletes it locally (compare-and-delete). Returns how many were offloaded.

        Raises:
            RpcError, TimeoutError: when a storage node did not acknowledge.
        """
        nodes = sorted({n for s in partition.storage_sets for n in s})
        start, end = bytes(partition.first_hash), bytes(partition.last_hash)
        total = 0
        while True:
            items = await anyio.to_thread.run_sync(self._read_local_range, start, end)
            if not items:
                return total
            message = Items(tuple(v for _, v in items))
            errors: list[RpcError | TimeoutError] = []

            async with anyio.create_task_group() as tg:
                for node in nodes:
                    tg.start_soon(self._send_collecting, node, message, errors)
            if errors:
                raise errors[0]  # every storage node must have the items before we drop them
            self._items_sent += len(items) * len(nodes)
            for key, value in items:
                await anyio.to_thread.run_sync(self._data.delete_if_equal, key, value)
            total += len(items)
            logger.info("table %s: offloaded %d items", self._data.name, len(items))

    async def _send_collecting(
        self, node: Uuid, message: Items, errors: list[RpcError | TimeoutError]
    ) -> None:
        """Sends ``message``, recording a failure in ``errors`` instead of raising it (so a
        task group of these never turns failures into an ExceptionGroup)."""
        try:
            await self._call(node, self._ep_items, message)
        except (RpcError, TimeoutError) as exc:
            errors.append(exc)

    def _read_local_range(self, first: bytes, last: bytes) -> list[tuple[bytes, bytes]]:
        items = []
        for key, value in self._data.store.range(first, None):
            if key[: len(last)] > last:
                break
            items.append((key, value))
            if len(items) >= OFFLOAD_BATCH:
                break
        return items

    async def _call(self, node: Uuid, endpoint: Endpoint[Q, R], msg: Q) -> R:
        with anyio.fail_after(_SYNC_RPC_TIMEOUT_S):
            return await self._netapp.call(node, endpoint, msg, prio=PRIO_BACKGROUND)

    # ------------------------------------------------------------------ handlers

    async def _handle_root(
        self, msg: RootCkHash, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[RootCkDifferent, AttachedStream | None]:
        ours = await anyio.to_thread.run_sync(self._data.merkle_updater.root_hash, msg.partition)
        return RootCkDifferent(ours != msg.hash), None

    async def _handle_get_node(
        self, msg: GetNode, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[NodeAnswer, AttachedStream | None]:
        node = await anyio.to_thread.run_sync(
            self._data.merkle_updater.read_node, msg.partition, msg.prefix
        )
        return NodeAnswer(node), None

    async def _handle_items(
        self, msg: Items, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[None, AttachedStream | None]:
        await anyio.to_thread.run_sync(self._data.update_many, list(msg.values))
        self._items_received += len(msg.values)
        return None, None


@final
class SyncWorker(Worker, Generic[E]):
    """Runs full syncs of one table: after a first delay, periodically, and on demand.

    Args:
        syncer: the table's sync protocol.
        interval_s: time between full syncs.
        first_delay_s: time before the first one.
    """

    def __init__(
        self,
        syncer: TableSyncer[E],
        *,
        interval_s: float = DEFAULT_SYNC_INTERVAL_S,
        first_delay_s: float = DEFAULT_FIRST_SYNC_DELAY_S,
    ) -> None:
        self._syncer = syncer
        self._interval_s = interval_s
        self._next_at: float | None = None
        self._first_delay_s = first_delay_s
        self._trigger = anyio.Event()
        self._todo: list[SyncPartition] = []
        self._version = 0
        self._all_ok = True
        self._syncs_done = 0
        self._layout: LayoutManager | None = None

    @property
    def name(self) -> str:
        return f"{self._syncer.data.name} sync"

    def status(self) -> WorkerStatus:
        return WorkerStatus(
            queue_length=len(self._todo),
            progress=f"{self._syncs_done} full syncs done",
        )

    def add_full_sync(self) -> None:
        """Asks for a full sync now (layout change, a peer came back, repair)."""
        self._trigger.set()

    @property
    def syncs_done(self) -> int:
        """How many full syncs completed (successfully or not)."""
        return self._syncs_done

    async def work(self) -> WorkerState:
        if not self._todo:
            return WorkerState.IDLE
        partition = self._todo.pop()
        try:
            await self._syncer.sync_partition(partition)
        except (RpcError, TimeoutError) as exc:
            self._all_ok = False
            logger.info("sync of partition %d failed: %s", partition.partition, exc)
        if not self._todo:
            self._syncs_done += 1
            if self._all_ok:
                await self._syncer.synced(self._version)
        return WorkerState.BUSY if self._todo else WorkerState.IDLE

    def watch(self, netapp: NetApp, layout: LayoutManager | None = None) -> None:
        """Triggers a full sync when a peer (re)connects and, with ``layout``, when the
        cluster layout changes (new replicas must receive their data).

        With ``layout``, only peers that have a role in a live layout version count: a CLI
        or any client that does not listen (``listen_addr`` None) connecting is no reason
        to sync every table.
        """
        self._layout = layout

        def connected(info: ConnectionInfo) -> None:
            if info.listen_addr is None:
                return
            if layout is not None and info.node_id not in layout.helper.all_nodes:
                return
            self.add_full_sync()

        netapp.on_connected(connected)

    def _sync_digest(self) -> tuple[int, int, int]:
        """What decides where data must be: Garage's layout sync digest."""
        assert self._layout is not None
        helper = self._layout.helper
        return (helper.current.version, helper.ack_map_min, helper.history.min_stored)

    async def _layout_moved(self) -> None:
        """Returns when the layout changed in a way that moves data (not on every tracker
        update, which would loop: a sync itself raises the trackers)."""
        before = self._sync_digest()
        while True:
            assert self._layout is not None
            await self._layout.wait_changed()
            if self._sync_digest() != before:
                return

    async def wait_for_work(self) -> WorkerState:
        now = anyio.current_time()
        if self._next_at is None:
            self._next_at = now + self._first_delay_s
        with anyio.move_on_after(max(0.0, self._next_at - now)):
            async with anyio.create_task_group() as tg:

                async def until(wait: Callable[[], Awaitable[object]]) -> None:
                    await wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(until, self._trigger.wait)
                if self._layout is not None:
                    tg.start_soon(until, self._layout_moved)
        self._trigger = anyio.Event()
        self._next_at = anyio.current_time() + self._interval_s
        parts = self._syncer.data.replication.sync_partitions()
        self._version = parts.layout_version
        self._todo = list(parts.partitions)
        random.shuffle(self._todo)
        self._all_ok = True
        return WorkerState.BUSY
