"""A replicated table: quorum reads and writes, read repair (Garage: src/table/table.rs).

Entries travel as their stored (versioned) encoding; the receiver merges the bytes it got
into its local copy (:class:`TableData`), so every replica converges on the join of every
write it saw. Operations:

- ``insert``: send the encoded entry to every node of every live layout version's set
  (``try_write_many_sets``) and return once each set has a write quorum; the remaining
  replicas keep being written in the background.
- ``insert_many``: one ``Update`` per destination node carrying every entry it stores,
  with a quorum in every distinct node set involved (so each entry has its quorum in each
  of its own sets).
- ``get``: ask the read quorum of the partition's read nodes, merge the answers. If they
  differed, the merged entry is written back to the read nodes in the background
  (read repair): the next read will find them agreeing.
- ``get_range``: the same over a range of one partition. Nodes filter their own copies,
  so keys that not every answering node returned are read again with ``get`` and the
  filter is applied to the merge (a stale replica cannot bring back a deleted entry);
  merged entries past the last key of a node that returned a full page are left to the
  next round, since that node did not look there. Fewer than ``limit`` entries means the
  partition ends.

Deleting is inserting a tombstone (an entry whose ``is_tombstone()`` is true); tombstone
garbage collection removes it later, once every replica has it.

Background read repairs run in the table's own task group (:meth:`Table.run`), never in
the caller's, so a request is not held up by them.

Each operation is counted, with its duration, in plain integers (:meth:`Table.statistics`;
Garage: src/table/metrics.rs ``get_request_*``/``put_request_*``), which the node's
metrics exporter reads at scrape time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

import anyio
import anyio.abc

from garage_rpc.net import PRIO_NORMAL, Endpoint, NetApp
from garage_rpc.rpc_helper import RequestStrategy, RpcHelper
from garage_util.background import BackgroundTasks
from garage_util.data import Hash
from garage_util.encode import pack, unpack

from .errors import NoLayoutError, TableError
from .schema import EnumerationOrder, PartitionKey, SortKey, TableEntry, TableSchema

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import ByteReceiveStream

    from garage_rpc.layout_manager import LayoutManager
    from garage_rpc.net import AttachedStream, NodeId
    from garage_util.data import Uuid

    from ._data import TableData
    from .replication import TableReplication

__all__ = [
    "ReadEntry",
    "ReadEntryResponse",
    "ReadRange",
    "Table",
    "TableRequestStatistics",
    "Update",
]

logger = logging.getLogger(__name__)

E = TypeVar("E", bound="TableEntry[Any, Any]")

#: A read repair is best effort: give up on a replica after this long.
_REPAIR_TIMEOUT_S: Final = 30.0
_DEFAULT_STRATEGY: Final = RequestStrategy()
#: Quorum reads in flight at once while a range read completes its divergent keys.
_COMPLETE_CONCURRENCY: Final = 16


@dataclass(frozen=True, slots=True)
class ReadEntry:
    """Request: the stored bytes of one entry."""

    partition_hash: Hash
    sort_key: bytes


@dataclass(frozen=True, slots=True)
class ReadEntryResponse:
    """Answer to ReadEntry: the entry's bytes, or None when absent."""

    value: bytes | None


@dataclass(frozen=True, slots=True)
class ReadRange:
    """Request: entries of one partition from a sort key, filtered, in an order."""

    partition_hash: Hash
    begin_sort_key: bytes | None
    filter: bytes | None
    limit: int
    reverse: bool


@dataclass(frozen=True, slots=True)
class Update:
    """Request (and ReadRange answer): encoded entries to merge."""

    values: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class TableRequestStatistics:
    """The quorum operations this node made on one table since start (ended ones, whether
    they succeeded or not).

    Attributes:
        get_requests: ``get`` and ``get_range`` calls.
        get_duration_s: their total duration in seconds.
        put_requests: ``insert`` and ``insert_many`` calls.
        put_duration_s: their total duration in seconds.
    """

    get_requests: int
    get_duration_s: float
    put_requests: int
    put_duration_s: float


@dataclass(frozen=True, slots=True)
class _HashKey:
    """A partition key known only by its hash (as received over RPC)."""

    value: Hash

    def hash(self) -> Hash:
        return self.value


@dataclass(frozen=True, slots=True)
class _BytesKey:
    """A sort key known only by its bytes (as received over RPC)."""

    value: bytes

    def sort_key(self) -> bytes:
        return self.value


@final
class Table(Generic[E]):
    """One replicated table on one node.

    Args:
        schema: the table's declaration.
        replication: where its entries live.
        data: the local store of this node.
        netapp: the transport (the table's endpoints are registered on it).
        rpc: the RPC helper (must be running for writes: it owns their continuations).
        strategy: timeouts of the table's requests.
        layout: the node's layout manager, for sharded tables: writes are registered as in
            flight under their layout version, so the node does not acknowledge a newer
            version before they are done (reads and writes then follow the layout
            history rules during a transition).
    """

    __slots__ = (
        "_background",
        "_data",
        "_ep_range",
        "_ep_read",
        "_ep_update",
        "_get_s",
        "_gets",
        "_layout",
        "_netapp",
        "_put_s",
        "_puts",
        "_replication",
        "_rpc",
        "_schema",
        "_strategy",
    )

    def __init__(
        self,
        schema: TableSchema[Any, Any, E, Any],
        replication: TableReplication,
        data: TableData[E],
        netapp: NetApp,
        rpc: RpcHelper,
        *,
        strategy: RequestStrategy = _DEFAULT_STRATEGY,
        layout: LayoutManager | None = None,
    ) -> None:
        self._schema = schema
        self._layout = layout
        self._replication = replication
        self._data = data
        self._netapp = netapp
        self._rpc = rpc
        self._strategy = strategy
        self._background = BackgroundTasks(f"read repairs of table {schema.TABLE_NAME}")
        self._gets = self._puts = 0
        self._get_s = self._put_s = 0.0
        prefix = f"garage_table/table.rs/Rpc:{schema.TABLE_NAME}"
        self._ep_read = Endpoint(f"{prefix}/ReadEntry", ReadEntry, ReadEntryResponse)
        self._ep_range = Endpoint(f"{prefix}/ReadRange", ReadRange, Update)
        self._ep_update = Endpoint(f"{prefix}/Update", Update, type(None))
        netapp.endpoint(self._ep_read, self._handle_read)
        netapp.endpoint(self._ep_range, self._handle_range)
        netapp.endpoint(self._ep_update, self._handle_update)

    @property
    def _name(self) -> str:
        return self._schema.TABLE_NAME

    @property
    def data(self) -> TableData[E]:
        """The local store of this table."""
        return self._data

    @property
    def replication(self) -> TableReplication:
        """The placement of this table."""
        return self._replication

    def statistics(self) -> TableRequestStatistics:
        """The operations made so far on this table (a snapshot; never blocks)."""
        return TableRequestStatistics(self._gets, self._get_s, self._puts, self._put_s)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Owns the task group of background read repairs; runs until cancelled."""
        await self._background.run(task_status=task_status)

    # ------------------------------------------------------------------ writes

    async def insert(self, entry: E) -> None:
        """Writes ``entry`` (merged into each replica's copy) with a write quorum.

        Raises:
            QuorumError: when too few replicas acknowledged.
            NoLayoutError: when the cluster has no layout yet.
        """
        await self.insert_many([entry])

    async def insert_many(self, entries: Sequence[E]) -> None:
        """Writes several entries, one message per destination node.

        Raises:
            QuorumError: when some node set did not reach its write quorum.
            NoLayoutError: when the cluster has no layout yet.
        """
        if not entries:
            return
        start = anyio.current_time()
        try:
            if self._layout is None:
                await self._insert_many(entries)
                return
            # The node sets below come from the current layout; until this write is done,
            # the node does not acknowledge a newer version.
            with self._layout.write_in_flight():
                await self._insert_many(entries)
        finally:
            self._puts += 1
            self._put_s += anyio.current_time() - start

    async def _insert_many(self, entries: Sequence[E]) -> None:
        per_node: dict[Uuid, list[bytes]] = {}
        all_sets: dict[tuple[Uuid, ...], None] = {}
        for entry in entries:
            value = entry.encode()
            sets = self._replication.write_sets(entry.partition_key().hash())
            if not sets or any(not s for s in sets):
                raise NoLayoutError(
                    f"table {self._schema.TABLE_NAME}: no node stores this partition yet; "
                    "the cluster needs a layout (garage layout assign, then apply)"
                )
            for s in sets:
                all_sets[tuple(sorted(s))] = None
                for node in s:
                    values = per_node.setdefault(node, [])
                    if not values or values[-1] is not value:
                        values.append(value)

        # A table that reads locally (full copy) must also have this node's own write done
        # before returning: a quorum that left it out would let the caller's next read here
        # miss what it just wrote.
        own = self._netapp.id
        local_reads = own in per_node and self._replication.read_nodes(
            entries[0].partition_key().hash()
        ) == [own]
        own_done = anyio.Event() if local_reads else None
        own_outcome: list[str] = []  # "ok", or why this node's own write failed

        async def send(node: Uuid) -> None:
            outcome = "cancelled (timed out)"
            try:
                await self._netapp.call(
                    node, self._ep_update, Update(tuple(per_node[node])), prio=PRIO_NORMAL
                )
                outcome = "ok"
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                if node == own and own_done is not None:
                    own_outcome.append(outcome)
                    own_done.set()

        await self._rpc.try_write_many_sets(
            send, list(all_sets), quorum=self._replication.write_quorum(), strategy=self._strategy
        )
        if own_done is not None:
            with anyio.move_on_after(self._strategy.timeout_s):
                await own_done.wait()
            if own_outcome != ["ok"]:
                why = own_outcome[0] if own_outcome else "timed out"
                raise TableError(
                    f"table {self._schema.TABLE_NAME}: the write reached a quorum but not "
                    f"this node, which serves this table's reads: {why}"
                )

    # ------------------------------------------------------------------ reads

    async def get(self, partition_key: PartitionKey, sort_key: SortKey) -> E | None:
        """Reads one entry from a read quorum and returns the merge of the answers.

        Raises:
            QuorumError: when too few replicas answered.
            NoLayoutError: when the cluster has no layout yet.
        """
        start = anyio.current_time()
        try:
            return await self._get(partition_key, sort_key)
        finally:
            self._gets += 1
            self._get_s += anyio.current_time() - start

    async def _get(
        self, partition_key: PartitionKey, sort_key: SortKey, *, repair: bool = True
    ) -> E | None:
        pk_hash = partition_key.hash()
        nodes = self._read_nodes(pk_hash)
        request = ReadEntry(pk_hash, sort_key.sort_key())

        async def read(node: Uuid) -> ReadEntryResponse:
            return await self._netapp.call(node, self._ep_read, request, prio=PRIO_NORMAL)

        answers = await self._rpc.try_call_many(
            read, nodes, quorum=self._replication.read_quorum(), strategy=self._strategy
        )
        values = [a.value for a in answers]
        present = [v for v in values if v is not None]
        if not present:
            return None
        merged = self._merge(present)
        if repair and any(v != present[0] for v in values):
            self._repair(nodes, [merged])
        return merged

    async def get_range(
        self,
        partition_key: PartitionKey,
        begin_sort_key: SortKey | None = None,
        *,
        filter: object | None = None,
        limit: int = 1000,
        order: EnumerationOrder = EnumerationOrder.FORWARD,
    ) -> list[E]:
        """Reads up to ``limit`` entries of one partition from a read quorum, merged.

        Raises:
            QuorumError: when too few replicas answered.
            NoLayoutError: when the cluster has no layout yet.
            ValueError: when ``limit`` is not positive.
        """
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        start = anyio.current_time()
        try:
            return await self._get_range(partition_key, begin_sort_key, filter, limit, order)
        finally:
            self._gets += 1
            self._get_s += anyio.current_time() - start

    async def _get_range(
        self,
        partition_key: PartitionKey,
        begin_sort_key: SortKey | None,
        filter: object | None,
        limit: int,
        order: EnumerationOrder,
    ) -> list[E]:
        out: list[E] = []
        start = None if begin_sort_key is None else begin_sort_key.sort_key()
        after: bytes | None = None  # sort key already returned by the previous round
        while len(out) < limit:
            # A continuing round starts at the previous round's bound (inclusive) and asks
            # for one more entry, so a full answer always reaches past it: progress.
            want = limit - len(out) + (0 if after is None else 1)
            entries, bound = await self._range_round(partition_key, start, filter, want, order)
            out.extend(e for e in entries if e.sort_key().sort_key() != after)
            if bound is None:
                break
            start = after = bound
        return out[:limit]

    async def _range_round(
        self,
        partition_key: PartitionKey,
        start: bytes | None,
        filter: object | None,
        limit: int,
        order: EnumerationOrder,
    ) -> tuple[list[E], bytes | None]:
        """One quorum range read, merged, then filtered.

        Each node applies the filter to its own copy, so a node holding a newer state that
        fails the filter (say a delete) returns nothing for that key while a stale node
        returns its old state. Every key that not all answering nodes returned is therefore
        read again with a quorum ``get`` and the filter applied to the merge. A node that
        returned ``limit`` entries may hold more past its last one: merged entries beyond
        the first such last key are left for the next round.

        Returns:
            The merged entries that pass the filter, in order, and the sort key the next
            round starts from (None when every node reached the end of the partition).
        """
        pk_hash = partition_key.hash()
        nodes = self._read_nodes(pk_hash)
        request = ReadRange(
            partition_hash=pk_hash,
            begin_sort_key=start,
            filter=None if filter is None else pack(filter),
            limit=limit,
            reverse=order is EnumerationOrder.REVERSE,
        )

        async def read(node: Uuid) -> Update:
            return await self._netapp.call(node, self._ep_range, request, prio=PRIO_NORMAL)

        answers = await self._rpc.try_call_many(
            read, nodes, quorum=self._replication.read_quorum(), strategy=self._strategy
        )
        reverse = order is EnumerationOrder.REVERSE
        by_key: dict[bytes, list[bytes]] = {}
        merged: dict[bytes, E] = {}
        bound: bytes | None = None
        for answer in answers:
            last: bytes | None = None
            for value in answer.values:
                entry = self._schema.decode_entry(value)
                last = entry.sort_key().sort_key()
                by_key.setdefault(last, []).append(value)
                seen = merged.get(last)
                merged[last] = entry if seen is None else seen.merge(entry)
            if (  # a full answer: this node did not look past its last key
                last is not None
                and len(answer.values) >= limit
                and (bound is None or (last > bound if reverse else last < bound))
            ):
                bound = last
        keys = sorted(by_key, reverse=reverse)
        if bound is not None:
            keys = [k for k in keys if (k >= bound if reverse else k <= bound)]
        partial = [k for k in keys if len(by_key[k]) != len(answers)]
        if filter is not None and partial:
            await self._complete(partition_key, merged, partial)
        to_repair = [
            merged[k]
            for k in keys
            if len(by_key[k]) != len(answers) or any(v != by_key[k][0] for v in by_key[k])
        ]
        if to_repair:
            self._repair(nodes, to_repair)
        entries = [merged[k] for k in keys]
        if filter is not None:
            entries = [e for e in entries if self._schema.matches_filter(e, filter)]
        return entries, bound

    async def _complete(
        self, partition_key: PartitionKey, merged: dict[bytes, E], keys: list[bytes]
    ) -> None:
        """Merges a quorum ``get`` of each of ``keys`` into ``merged``, in parallel."""
        limiter = anyio.CapacityLimiter(_COMPLETE_CONCURRENCY)

        async def complete(key: bytes) -> None:
            async with limiter:
                # No repair here: the range read repairs every divergent key it returns.
                found = await self._get(partition_key, merged[key].sort_key(), repair=False)
            if found is not None:
                merged[key] = merged[key].merge(found)

        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(complete, key)

    def _read_nodes(self, pk_hash: Hash) -> list[Uuid]:
        nodes = self._replication.read_nodes(pk_hash)
        if not nodes:
            raise NoLayoutError(
                f"table {self._schema.TABLE_NAME}: no node stores this partition yet; "
                "the cluster needs a layout (garage layout assign, then apply)"
            )
        return nodes

    def _merge(self, values: list[bytes]) -> E:
        entries = [self._schema.decode_entry(v) for v in values]
        merged = entries[0]
        for other in entries[1:]:
            merged = merged.merge(other)
        return merged

    def _repair(self, nodes: list[Uuid], entries: list[E]) -> None:
        """Sends merged entries back to the read nodes, in the background."""
        background = self._background
        if not background.running:
            logger.debug("table %s: no read repair (Table.run not running)", self._name)
            return
        update = Update(tuple(e.encode() for e in entries))

        async def repair() -> None:
            async def send(node: Uuid) -> None:
                await self._netapp.call(node, self._ep_update, update, prio=PRIO_NORMAL)

            outcomes = await self._rpc.call_many(
                send, nodes, strategy=RequestStrategy(timeout_s=_REPAIR_TIMEOUT_S)
            )
            failed = [o.node for o in outcomes if not o.ok]
            if failed:
                logger.debug(
                    "table %s: read repair failed on %d nodes", self._schema.TABLE_NAME, len(failed)
                )

        background.start_soon(repair)

    # ------------------------------------------------------------------ handlers

    async def _handle_read(
        self, msg: ReadEntry, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[ReadEntryResponse, AttachedStream | None]:
        value = await anyio.to_thread.run_sync(
            self._data.read_entry, _HashKey(msg.partition_hash), _BytesKey(msg.sort_key)
        )
        return ReadEntryResponse(value), None

    async def _handle_range(
        self, msg: ReadRange, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[Update, AttachedStream | None]:
        if msg.limit < 1:
            raise TableError(f"limit must be positive, got {msg.limit}")
        filter = None if msg.filter is None else unpack(self._schema.FILTER, msg.filter)
        values = await anyio.to_thread.run_sync(
            lambda: self._data.read_range(
                _HashKey(msg.partition_hash),
                None if msg.begin_sort_key is None else _BytesKey(msg.begin_sort_key),
                filter,
                msg.limit,
                EnumerationOrder.REVERSE if msg.reverse else EnumerationOrder.FORWARD,
            )
        )
        return Update(tuple(values)), None

    async def _handle_update(
        self, msg: Update, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[None, AttachedStream | None]:
        await anyio.to_thread.run_sync(self._data.update_many, list(msg.values))
        return None, None
