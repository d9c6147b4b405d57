"""The K2V item table: values kept with dotted version vectors (DVVS).

Garage: src/model/k2v/item_table.rs (design §8.6). Table ``k2v_item``, sharded by
:class:`K2VItemPartition` (bucket id, partition key), sorted by the item's sort key::

    K2VItem   {partition: {bucket_id, partition_key}, sk, items: [(node, DvvsEntry)]}
    DvvsEntry {t_discard, values: [(t, DvvsValue)]}         DvvsValue = bytes | Deleted

Theory of operation
-------------------
Each node ``n`` (a 64-bit K2V node id) owns one :class:`DvvsEntry` of an item: the values
it wrote, each tagged with a time ``t`` from ``n``'s clock, and ``t_discard``, below or at
which ``n``'s values are known to be overwritten. ``max_time = max(t_discard, every t)``,
and the item's causal context is ``{n: max_time(entry n)}``.

**Insert** (:meth:`K2VItem.update`, run only on node ``n`` itself, under its lock, with
its monotone clock ``ts``; see ``_rpc``): for each ``(m, t)`` of the writer's context,
raise entry ``m``'s ``t_discard`` to ``t`` (creating it empty if needed); drop every value
with ``t <= t_discard``; append ``(max(max_time(entry n) + 1, ts + 1), value)`` to entry
``n``. A write without context discards nothing: it is concurrent with every value present.
A delete is the same write with the :class:`DvvsValue` ``Deleted``.

**Merge** (a CRDT join): per node, ``t_discard = max``, discard, then append the other
side's values newer than our ``max_time``.

Why the merge is a join. Only node ``n`` appends to entry ``n``, always above its own
``max_time`` and above its persisted clock (``k2v_local_timestamp``, kept by this table's
``updated`` hook), so the values node ``n`` ever writes form one history ``H_n`` with
strictly increasing times. Every copy of entry ``n`` is then ``H_n ∩ (d, T]`` for some
``d = t_discard`` and ``T``, and merging ``(d, T]`` with ``(d', T']`` gives
``(max(d, d'), max(T, T')]``: commutative, associative and idempotent. (For arbitrary
entries that do not share a history, the merge is not commutative; the property tests
generate entries from histories.)

Values returned to clients are de-duplicated (:meth:`K2VItem.values`); an item whose values
are all ``Deleted`` (or that has none) is a tombstone, collected by the table GC. Each item
counts in the ``k2v_index_counter_v2`` row ``(bucket id, partition key)``: ``entries``
(0 for a tombstone, else 1), ``conflicts`` (1 when it has several values), ``values``
(non-deleted values) and ``bytes`` (their total size).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, Self, final

from garage_model.bucket_table import UuidKey
from garage_table.schema import StringKey, TableEntry, TableSchema
from garage_util.data import Hash, Uuid, blake2sum

from ._causality import U64_MAX, CausalContext, make_node_id

if TYPE_CHECKING:
    from collections.abc import Callable

    from garage_model.index_counter import IndexCounter
    from garage_util.db import Db, Transaction

__all__ = [
    "BYTES",
    "CONFLICTS",
    "DELETED",
    "ENTRIES",
    "K2V_COUNTER_TABLE",
    "K2V_ITEM_TABLE",
    "K2V_LOCAL_TIMESTAMP_TREE",
    "VALUES",
    "DvvsEntry",
    "DvvsValue",
    "K2VItem",
    "K2VItemFilter",
    "K2VItemPartition",
    "K2VItemSchema",
]

logger = logging.getLogger(__name__)

#: The item table's name (Garage's).
K2V_ITEM_TABLE: Final = "k2v_item"
#: The counter table of K2V items, keyed (bucket id, partition key) (Garage's name).
K2V_COUNTER_TABLE: Final = "k2v_index_counter_v2"
#: The tree holding this node's K2V clock: the highest time it has given a value.
K2V_LOCAL_TIMESTAMP_TREE: Final = "k2v_local_timestamp"
#: Counter: items that are not tombstones.
ENTRIES: Final = "entries"
#: Counter: items with several values (siblings to resolve).
CONFLICTS: Final = "conflicts"
#: Counter: non-deleted values.
VALUES: Final = "values"
#: Counter: total size of the non-deleted values.
BYTES: Final = "bytes"

#: The single key of the local timestamp tree (Garage's ``TIMESTAMP_KEY``).
_TIMESTAMP_KEY: Final = b"timestamp"


@final
@dataclass(frozen=True, slots=True)
class DvvsValue:
    """One value of an item: bytes, or ``Deleted`` (``value is None``).

    Encoded as the bytes themselves or nil.
    """

    value: bytes | None

    @property
    def is_deleted(self) -> bool:
        """True for a deletion marker."""
        return self.value is None

    def __to_wire__(self) -> object:
        return self.value

    @classmethod
    def __from_wire__(cls, obj: object, type_args: tuple[object, ...]) -> Self:
        del type_args  # not generic
        if obj is not None and type(obj) is not bytes:
            raise ValueError("a K2V value is bin or nil")
        return cls(obj)


#: The deletion marker.
DELETED: Final = DvvsValue(None)


@final
@dataclass(frozen=True, slots=True)
class DvvsEntry:
    """The values one node wrote to an item, and its discard time.

    Attributes:
        t_discard: this node's values with a time at or below it are overwritten.
        values: ``(time, value)``, times strictly increasing and above ``t_discard``.

    Raises:
        ValueError: the times are not sorted, or not above ``t_discard``.
    """

    t_discard: int = 0
    values: tuple[tuple[int, DvvsValue], ...] = ()

    def __post_init__(self) -> None:
        prev = self.t_discard
        if not 0 <= prev <= U64_MAX:
            raise ValueError(f"t_discard must be a u64, got {prev}")
        for t, _v in self.values:
            if not prev < t <= U64_MAX:
                raise ValueError("DvvsEntry times must increase strictly above t_discard")
            prev = t

    def max_time(self) -> int:
        """The highest time of this node seen: ``t_discard`` or the last value's."""
        return self.values[-1][0] if self.values else self.t_discard

    def discard_to(self, t_discard: int) -> DvvsEntry:
        """This entry with ``t_discard`` raised to at least ``t_discard`` (values dropped)."""
        if t_discard <= self.t_discard:
            return self
        return DvvsEntry(t_discard, tuple((t, v) for t, v in self.values if t > t_discard))

    def append(self, t: int, value: DvvsValue) -> DvvsEntry:
        """This entry with ``(t, value)`` added (``t`` must be above ``max_time``)."""
        return DvvsEntry(self.t_discard, (*self.values, (t, value)))

    def merge(self, other: DvvsEntry) -> DvvsEntry:
        """The join of two copies of one node's entry (see the module docstring)."""
        merged = self.discard_to(other.t_discard)
        t_max = merged.max_time()
        newer = tuple((t, v) for t, v in other.values if t > t_max)
        if newer:
            merged = DvvsEntry(merged.t_discard, merged.values + newer)
        return self if merged == self else merged


@final
@dataclass(frozen=True, slots=True)
class K2VItemPartition:
    """A K2V partition: a bucket and a partition key; the item table's partition key.

    Hashes to ``blake2(bucket_id ‖ partition_key UTF-8)[:32]`` (Garage's), which places its
    items on the nodes of that partition.

    Attributes:
        bucket_id: the bucket.
        partition_key: the K2V partition key.
    """

    bucket_id: Uuid
    partition_key: str

    def hash(self) -> Hash:
        return blake2sum(bytes(self.bucket_id) + self.partition_key.encode())


@final
@dataclass(frozen=True, slots=True)
class K2VItemFilter:
    """Range-read filter of the item table (Garage's ``ItemFilter``; it travels in RPCs).

    Attributes:
        exclude_only_tombstones: leave out items whose values are all deleted.
        conflicts_only: keep only items with several (distinct) values.
    """

    exclude_only_tombstones: bool = False
    conflicts_only: bool = False

    def matches(self, item: K2VItem) -> bool:
        """True when ``item`` passes the filter."""
        if self.conflicts_only and len(item.values()) < 2:
            return False
        return not (self.exclude_only_tombstones and item.is_tombstone())


@final
@dataclass(frozen=True, slots=True)
class K2VItem(TableEntry[K2VItemPartition, StringKey]):
    """A K2V item: its values and their dotted version vectors.

    The sort key string is the field ``sk`` (``sort_key()`` is the table's key method and
    returns it as a :class:`StringKey`). Build an empty item with :meth:`new`, write with
    :meth:`update`, read with :meth:`values` and :meth:`causal_context`.

    Attributes:
        partition: the bucket and partition key.
        sk: the sort key.
        items: ``(k2v node id, entry)`` sorted by node id.

    Raises:
        ValueError: the nodes are not sorted and unique.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G1k2vi"

    partition: K2VItemPartition
    sk: str
    items: tuple[tuple[int, DvvsEntry], ...] = ()

    def __post_init__(self) -> None:
        nodes = [n for n, _e in self.items]
        if any(not a < b for a, b in itertools.pairwise(nodes)):
            raise ValueError("K2VItem entries must be sorted by node id, unique")
        if nodes and not (nodes[0] >= 0 and nodes[-1] <= U64_MAX):
            raise ValueError("K2V node ids are u64")

    @classmethod
    def new(cls, bucket_id: Uuid, partition_key: str, sort_key: str) -> K2VItem:
        """An item with no value yet (what a write to a new key starts from)."""
        return cls(K2VItemPartition(bucket_id, partition_key), sort_key)

    # ------------------------------------------------------------------ keys

    def partition_key(self) -> K2VItemPartition:
        return self.partition

    def sort_key(self) -> StringKey:
        return StringKey(self.sk)

    # ------------------------------------------------------------------ reading

    def entries(self) -> dict[int, DvvsEntry]:
        """The entries by k2v node id."""
        return dict(self.items)

    def causal_context(self) -> CausalContext:
        """The item's causal context: per node, the highest time seen."""
        return CausalContext({n: e.max_time() for n, e in self.items})

    def dvvs_values(self) -> list[DvvsValue]:
        """The distinct values, by node then time (Garage's order)."""
        out: list[DvvsValue] = []
        for _n, entry in self.items:
            for _t, v in entry.values:
                if v not in out:
                    out.append(v)
        return out

    def values(self) -> list[bytes | None]:
        """The distinct values, ``None`` for a deletion; several values are siblings
        (concurrent writes) that a write with this item's causality token resolves."""
        return [v.value for v in self.dvvs_values()]

    def is_tombstone(self) -> bool:
        """True when every value is deleted (or there is none)."""
        return all(v.is_deleted for _n, e in self.items for _t, v in e.values)

    # ------------------------------------------------------------------ writing

    def update(
        self,
        node_id: Uuid | int,
        context: CausalContext | None,
        value: DvvsValue | bytes | None,
        node_ts: int,
    ) -> tuple[K2VItem, int]:
        """A write of ``value`` by node ``node_id`` that has seen ``context`` (pure).

        Run it only on the writing node itself (its entry must be its latest copy).

        Args:
            node_id: the writing node (its 32-byte id, or its k2v node id).
            context: what the client had read (its causality token), or None for a
                write concurrent with every value present.
            value: the bytes to store, or None / ``DvvsValue(None)`` to delete.
            node_ts: the writing node's clock: the new time is above it.

        Returns:
            The new item, and the time given to the value (to persist as the node's clock).
        """
        node = node_id if isinstance(node_id, int) else make_node_id(node_id)
        new_value = value if isinstance(value, DvvsValue) else DvvsValue(value)
        entries = self.entries()
        raise_to = {} if context is None else context.vector_clock
        for n, t in raise_to.items():
            entries[n] = entries.get(n, DvvsEntry(t)).discard_to(t)
        mine = entries.get(node, DvvsEntry())
        t_new = max(mine.max_time() + 1, node_ts + 1)
        entries[node] = mine.append(t_new, new_value)
        return K2VItem(self.partition, self.sk, tuple(sorted(entries.items()))), t_new

    def merge(self, other: K2VItem) -> K2VItem:
        if (self.partition, self.sk) != (other.partition, other.sk):
            raise ValueError("cannot merge different K2V items")
        if other.items == self.items:
            return self
        entries = self.entries()
        for n, e in other.items:
            mine = entries.get(n)
            entries[n] = e if mine is None else mine.merge(e)
        merged = K2VItem(self.partition, self.sk, tuple(sorted(entries.items())))
        return self if merged == self else merged

    # ------------------------------------------------------------------ counted item

    def counter_partition_key(self) -> UuidKey:
        """Counted in the row of its bucket..."""
        return UuidKey(self.partition.bucket_id)

    def counter_sort_key(self) -> StringKey:
        """...and of its partition key."""
        return StringKey(self.partition.partition_key)

    def counts(self) -> dict[str, int]:
        """``entries``, ``conflicts``, ``values`` and ``bytes`` of this item."""
        values = self.dvvs_values()
        live = [v.value for v in values if v.value is not None]
        return {
            ENTRIES: 0 if self.is_tombstone() else 1,
            CONFLICTS: 1 if len(values) > 1 else 0,
            VALUES: len(live),
            BYTES: sum(len(v) for v in live),
        }


class K2VItemSchema(TableSchema[K2VItemPartition, StringKey, K2VItem, K2VItemFilter]):
    """The ``k2v_item`` table (sharded by partition, sorted by sort key).

    Its ``updated`` hook, in the write transaction: counts the item in
    ``k2v_index_counter_v2``; raises this node's persisted K2V clock to the highest time
    of this node's entry (so a new value always gets a time above every value this node
    ever wrote, even once an item was garbage-collected); and, after commit, wakes the
    pollers of the item and of its partition.

    Args:
        counter: the ``k2v_index_counter_v2`` index counter.
        db: the metadata db (the ``k2v_local_timestamp`` tree is opened there).
        node_id: this node's id.
        on_change: called after the commit of every change with the new item (the
            subscription manager's ``notify``), from the committing thread.
    """

    TABLE_NAME: ClassVar[str] = K2V_ITEM_TABLE
    PARTITION_KEY = K2VItemPartition
    SORT_KEY = StringKey
    ENTRY = K2VItem
    FILTER = K2VItemFilter

    def __init__(
        self,
        counter: IndexCounter[UuidKey, StringKey],
        db: Db,
        node_id: Uuid,
        *,
        on_change: Callable[[K2VItem], None] | None = None,
    ) -> None:
        self._counter = counter
        self._node = make_node_id(node_id)
        self._timestamp = db.open_tree(K2V_LOCAL_TIMESTAMP_TREE)
        self._on_change = on_change

    def local_timestamp(self) -> int:
        """This node's K2V clock: the highest time it gave a value (0 if none yet)."""
        return _decode_ts(self._timestamp.get(_TIMESTAMP_KEY))

    def updated(self, tx: Transaction, old: K2VItem | None, new: K2VItem | None) -> None:
        self._counter.count(tx, old, new)
        if new is None:
            return
        mine = new.entries().get(self._node)
        if mine is not None:
            t = mine.max_time()
            if t > _decode_ts(tx.get(self._timestamp, _TIMESTAMP_KEY)):
                tx.insert(self._timestamp, _TIMESTAMP_KEY, t.to_bytes(8, "big"))
        on_change = self._on_change
        if on_change is not None:
            tx.on_commit(lambda: on_change(new))

    def matches_filter(self, entry: K2VItem, filter: K2VItemFilter) -> bool:
        return filter.matches(entry)


def _decode_ts(raw: bytes | None) -> int:
    return 0 if raw is None or len(raw) != 8 else int.from_bytes(raw, "big")
