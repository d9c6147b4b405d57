"""Index counters: per-bucket statistics kept up to date without scanning.

Garage: src/model/index_counter.rs (design §8.5). The object table feeds
``bucket_object_counter`` (objects, unfinished uploads, bytes), the multipart-upload table
feeds ``bucket_mpu_counter`` (uploads, parts, bytes); quotas and ``bucket info`` read them.

Theory of operation
-------------------
A *counted item* (an object, a multipart upload) says which counter row it contributes to
(:meth:`CountedItem.counter_partition_key` / :meth:`~CountedItem.counter_sort_key`) and
how much (:meth:`CountedItem.counts`, e.g. ``{"objects": 1, "bytes": 1234}``).

**Local part.** Each node counts the items *it stores*. The counted table's ``updated``
hook calls :meth:`IndexCounter.count` with the old and new item, inside the write
transaction. The delta ``counts(new) - counts(old)`` is added to the node's row in the
local tree ``local_counter_v2:<counter table>``, and each changed counter gets the
timestamp ``max(ts + 1, now)``. Being in the same transaction as the change, the local
count always equals the sum over the locally stored items.

**Distributed part.** The local row is itself a :class:`CounterEntry` carrying only this
node's ``(ts, value)`` per counter; after updating it, the hook queue-inserts it into the
counter table (``TableData.queue_insert``, same transaction). The counter table merges,
per counter and per node, the value with the larger timestamp (an ``Lww`` per node), so
every replica of the counter row ends up with the latest value of every node.

**Reading.** The replicas of an item's partition each count it, so the true count is any
one of their values; :meth:`CounterEntry.filtered_values` keeps the storage nodes of the
current layout (values of nodes that left are stale) and takes the **max**, which is right
as soon as one up-to-date replica has reported.

Invariants: a local row is written only in the transaction that changed the counted
items (or by the offline :meth:`IndexCounter.offline_recount_all`); the distributed entry
of a node is only ever replaced by a newer timestamp of the same node. Counter rows are
never tombstones (they are never garbage-collected).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Final,
    Generic,
    Protocol,
    TypeAlias,
    TypeVar,
    cast,
    final,
)

from garage_table.schema import (
    DeletedFilter,
    PartitionKey,
    SortKey,
    TableEntry,
    TableSchema,
    tree_key,
)
from garage_util.clock import increment_logical_clock, now_msec
from garage_util.crdt import Lww, Map
from garage_util.data import Uuid
from garage_util.db import Excluded
from garage_util.encode import decode_versioned

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from garage_table import TableData
    from garage_util.db import Bound, Db, Transaction, Tree

__all__ = [
    "LOCAL_COUNTER_TREE_PREFIX",
    "CountedItem",
    "CounterEntry",
    "CounterFilter",
    "CounterSchema",
    "IndexCounter",
]

logger = logging.getLogger(__name__)

P = TypeVar("P", bound=PartitionKey)
S = TypeVar("S", bound=SortKey)
P_co = TypeVar("P_co", bound=PartitionKey, covariant=True)
S_co = TypeVar("S_co", bound=SortKey, covariant=True)

#: Prefix of the local counter trees (Garage's name: ``local_counter_v2:<table>``).
LOCAL_COUNTER_TREE_PREFIX: Final = "local_counter_v2:"

#: Per counter row (by tree key): its keys and the sums of a batch's counts.
_Rows: TypeAlias = dict[bytes, tuple[P, S, dict[str, int]]]

# Rows handled per transaction by the offline recount: large enough to amortise a
# transaction, small enough that one batch holds the db's write lock only briefly.
_RECOUNT_BATCH: Final = 1000


class CountedItem(Protocol[P_co, S_co]):
    """An entry that contributes to an index counter row."""

    def counter_partition_key(self) -> P_co:
        """The partition key of the counter row (the bucket id for the S3 counters)."""
        ...

    def counter_sort_key(self) -> S_co:
        """The sort key of the counter row (``EmptyKey`` for the S3 counters)."""
        ...

    def counts(self) -> dict[str, int]:
        """How much this item adds to each counter of its row."""
        ...


@dataclass(frozen=True, slots=True)
class CounterEntry(TableEntry[P, S]):
    """One counter row: for each counter, the latest ``(ts, value)`` of each node.

    Generic over the row's keys; decode it through :meth:`CounterSchema.decode_entry`,
    which knows the concrete key types (``CounterEntry.decode`` alone cannot).

    Attributes:
        pk: the row's partition key (a bucket).
        sk: the row's sort key.
        values: counter name -> node id -> ``Lww`` of that node's count. Merging keeps,
            per node, the value with the larger timestamp.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G08cnt"

    pk: P
    sk: S
    values: Map[str, Map[Uuid, Lww[int]]]

    def partition_key(self) -> P:
        return self.pk

    def sort_key(self) -> S:
        return self.sk

    def merge(self, other: CounterEntry[P, S]) -> CounterEntry[P, S]:
        if tree_key(self.pk, self.sk) != tree_key(other.pk, other.sk):
            raise ValueError("cannot merge counter entries of different rows")
        values = self.values.merge(other.values)
        return self if values is self.values else CounterEntry(self.pk, self.sk, values)

    def node_values(self, node_id: Uuid) -> dict[str, tuple[int, int]]:
        """``{counter: (ts, value)}`` as last reported by ``node_id``."""
        out: dict[str, tuple[int, int]] = {}
        for name, per_node in self.values.items():
            reg = per_node.get(node_id)
            if reg is not None:
                out[name] = (reg.ts, reg.v)
        return out

    def filtered_values(self, nodes: Iterable[Uuid]) -> dict[str, int]:
        """The value of each counter: the max over the given storage nodes' values.

        Args:
            nodes: the nodes whose reports count: the storage nodes of the live layout
                versions (gateways and nodes that left have no or stale values).

        Returns:
            ``{counter: value}`` for the counters at least one of ``nodes`` reported.
        """
        wanted = frozenset(nodes)
        out: dict[str, int] = {}
        for name, per_node in self.values.items():
            reported = [reg.v for node, reg in per_node.items() if node in wanted]
            if reported:
                out[name] = max(reported)
        return out


@dataclass(frozen=True, slots=True)
class CounterFilter:
    """Range-read filter of counter tables (Garage: ``(DeletedFilter, Vec<Uuid>)``).

    A row counts as *deleted* when every counter is zero on the given nodes.

    Attributes:
        deleted: which rows to keep.
        nodes: the storage nodes whose values count (see ``filtered_values``).
    """

    deleted: DeletedFilter = DeletedFilter.ANY
    nodes: tuple[Uuid, ...] = ()


class CounterSchema(TableSchema[P, S, CounterEntry[P, S], CounterFilter]):
    """The schema of a counter table, e.g. ``bucket_object_counter``.

    Args:
        table_name: the counter table's name.
        partition_key_type: the class of the rows' partition keys.
        sort_key_type: the class of the rows' sort keys.
    """

    FILTER = CounterFilter

    def __init__(
        self, table_name: str, partition_key_type: type[P], sort_key_type: type[S]
    ) -> None:
        # Counter tables share one schema class, so the class attributes are per instance.
        self.TABLE_NAME = table_name  # type: ignore[misc]  # ClassVar set per instance
        self.PARTITION_KEY = partition_key_type  # type: ignore[misc]  # idem
        self.SORT_KEY = sort_key_type  # type: ignore[misc]  # idem
        # The parametrised alias decodes pk/sk with their concrete types.
        self.ENTRY = CounterEntry[partition_key_type, sort_key_type]  # type: ignore[misc,valid-type]  # runtime alias

    def decode_entry(self, data: bytes) -> CounterEntry[P, S]:
        entry_type = cast("type[CounterEntry[P, S]]", self.ENTRY)
        return decode_versioned(entry_type, data)

    def matches_filter(self, entry: CounterEntry[P, S], filter: CounterFilter) -> bool:
        if filter.deleted is DeletedFilter.ANY:
            return True
        is_zero = all(v == 0 for v in entry.filtered_values(filter.nodes).values())
        return filter.deleted.apply(is_zero)


@final
class IndexCounter(Generic[P, S]):
    """The counters that one counted table maintains (the local part and its propagation).

    Args:
        name: the counter table's name (``counter_data.name``); names the local tree.
        db: the metadata db (the local tree is opened there).
        counter_data: the counter table's local data, whose schema is a
            :class:`CounterSchema`; rows are queue-inserted into it.
        node_id: this node's id: the key of its values in the counter rows.
        clock_ms: the wall clock in ms, for the counters' timestamps.

    Raises:
        ValueError: ``name`` is not the counter table's name.
    """

    __slots__ = ("_clock_ms", "_counter_data", "_db", "_local", "_name", "_node_id")

    def __init__(
        self,
        name: str,
        db: Db,
        counter_data: TableData[CounterEntry[P, S]],
        node_id: Uuid,
        *,
        clock_ms: Callable[[], int] = now_msec,
    ) -> None:
        if counter_data.name != name:
            raise ValueError(
                f"counter {name!r} needs the table {name!r}, not {counter_data.name!r}"
            )
        self._name = name
        self._db = db
        self._counter_data = counter_data
        self._node_id = node_id
        self._clock_ms = clock_ms
        self._local = db.open_tree(LOCAL_COUNTER_TREE_PREFIX + name)

    def __repr__(self) -> str:
        return f"<IndexCounter {self._name!r}>"

    @property
    def name(self) -> str:
        """The counter table's name."""
        return self._name

    @property
    def counter_data(self) -> TableData[CounterEntry[P, S]]:
        """The counter table's local data."""
        return self._counter_data

    @property
    def local_tree(self) -> Tree:
        """The ``local_counter_v2:<name>`` tree: this node's rows, as counter entries."""
        return self._local

    # ------------------------------------------------------------------ counting

    def count(
        self,
        tx: Transaction,
        old: CountedItem[P, S] | None,
        new: CountedItem[P, S] | None,
    ) -> None:
        """Accounts for a change of a counted item, in the caller's transaction.

        Call it from the counted table's ``updated`` hook. Both items, when present,
        belong to the same counter row.
        """
        item = old if old is not None else new
        if item is None:
            return
        old_counts = {} if old is None else old.counts()
        new_counts = {} if new is None else new.counts()
        deltas = {
            name: new_counts.get(name, 0) - old_counts.get(name, 0)
            for name in sorted(old_counts.keys() | new_counts.keys())
        }
        self.add(tx, item.counter_partition_key(), item.counter_sort_key(), deltas)

    def add(self, tx: Transaction, pk: P, sk: S, deltas: Mapping[str, int]) -> None:
        """Adds ``deltas`` to this node's counters of row ``(pk, sk)`` and queues the row.

        Counters with a zero delta are left as they are; nothing is written when every
        delta is zero.
        """
        changes = {name: d for name, d in deltas.items() if d != 0}
        if not changes:
            return
        self._write_local(tx, pk, sk, lambda name, value: value + changes[name], changes)

    def _write_local(
        self,
        tx: Transaction,
        pk: P,
        sk: S,
        update: Callable[[str, int], int],
        names: Iterable[str],
    ) -> None:
        """Sets ``value = update(name, value)`` with a newer timestamp for each name."""
        key = tree_key(pk, sk)
        raw = tx.get(self._local, key)
        current = (
            {} if raw is None else self._counter_data.decode_entry(raw).node_values(self._node_id)
        )
        now = self._clock_ms()
        for name in names:
            ts, value = current.get(name, (0, 0))
            current[name] = (increment_logical_clock(ts, now), update(name, value))
        entry = self._local_entry(pk, sk, current)
        tx.insert(self._local, key, entry.encode())
        self._counter_data.queue_insert(tx, entry)

    def _local_entry(
        self, pk: P, sk: S, values: Mapping[str, tuple[int, int]]
    ) -> CounterEntry[P, S]:
        """The counter entry carrying only this node's ``(ts, value)`` of each counter."""
        node = self._node_id
        return CounterEntry(
            pk,
            sk,
            Map.from_items({name: Map(((node, Lww(ts, v)),)) for name, (ts, v) in values.items()}),
        )

    def local_values(self, pk: P, sk: S) -> dict[str, int]:
        """This node's own count of each counter of row ``(pk, sk)`` (empty if none)."""
        raw = self._local.get(tree_key(pk, sk))
        if raw is None:
            return {}
        entry = self._counter_data.decode_entry(raw)
        return {name: v for name, (_ts, v) in entry.node_values(self._node_id).items()}

    # ------------------------------------------------------------------ repair

    def offline_recount_all(self, counted_data: TableData[Any]) -> int:
        """Rebuilds this node's counters from the counted table's local store.

        For ``garage offline-repair``: the counted table must not change meanwhile
        (writes during the recount would be counted twice or not at all). First every
        local counter is set to zero, then every stored item is counted again; each step
        queues the rows it wrote, with newer timestamps, so the cluster-wide rows follow.

        Args:
            counted_data: the local data of the counted table (its entries are
                :class:`CountedItem` of this counter's rows).

        Returns:
            How many items were counted.
        """
        # 1. Zero every local row (keeping its counters, so that zeros are propagated).
        for batch in _batches(self._local):
            entries = [self._counter_data.decode_entry(raw) for _key, raw in batch]

            def zero(tx: Transaction, entries: list[CounterEntry[P, S]] = entries) -> None:
                for entry in entries:
                    names = entry.node_values(self._node_id).keys()
                    self._write_local(tx, entry.pk, entry.sk, lambda _n, _v: 0, list(names))

            self._db.transaction(zero)
        # 2. Count every item, summing a batch's items per row before writing.
        counted = 0
        for batch in _batches(counted_data.store):
            rows: _Rows[P, S] = {}
            for _key, raw in batch:
                item = cast("CountedItem[P, S]", counted_data.decode_entry(raw))
                pk, sk = item.counter_partition_key(), item.counter_sort_key()
                sums = rows.setdefault(tree_key(pk, sk), (pk, sk, {}))[2]
                for name, n in item.counts().items():
                    sums[name] = sums.get(name, 0) + n
            counted += len(batch)

            def add_all(
                tx: Transaction, rows: dict[bytes, tuple[P, S, dict[str, int]]] = rows
            ) -> None:
                for pk, sk, sums in rows.values():
                    self.add(tx, pk, sk, sums)

            self._db.transaction(add_all)
        logger.info("counter %s: recounted %d items of %s", self._name, counted, counted_data.name)
        return counted


def _batches(tree: Tree) -> Iterator[list[tuple[bytes, bytes]]]:
    """The tree's items in lists of ``_RECOUNT_BATCH``, read one batch at a time."""
    start: Bound = None
    while True:
        batch = list(itertools.islice(tree.range(start), _RECOUNT_BATCH))
        if not batch:
            return
        yield batch
        start = Excluded(batch[-1][0])
