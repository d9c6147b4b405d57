"""The local side of a table: its entries in the metadata db, and what each write implies.

Garage: src/table/data.rs (design §7.3, "the heart of correctness"). A :class:`TableData`
owns five trees of the db, named after the table as in Garage:

=========================  ============================================================
``<name>:table``           the store: ``tree_key -> entry bytes`` (versioned encoding)
``<name>:merkle_tree``     the Merkle tries (see ``_merkle``)
``<name>:merkle_todo``     ``tree_key -> blake2sum(entry bytes)``, or ``b""`` if removed
``<name>:insert_queue``    entries waiting to be inserted cluster-wide (see ``_queue``)
``<name>:gc_todo_v2``      ``now_ms (8 B BE) ‖ tree_key -> blake2sum(tombstone bytes)``
=========================  ============================================================

Theory of operation
-------------------
Every change of the store goes through one of three synchronous calls, each ONE db
transaction:

* :meth:`TableData.update_entry_with` (and :meth:`~TableData.update_entry` /
  :meth:`~TableData.update_many`, which merge incoming entry bytes): read the old entry,
  compute the new one, re-encode it, and if the bytes differ (a new value, or only a
  migrated encoding) write the store, write ``merkle_todo[tree_key] = blake2sum(new)`` and
  call ``schema.updated(tx, old, new)``. A tombstone, when this node is the first storage
  node of its partition (the partition's GC "leader"), is also recorded in ``gc_todo_v2``.
* :meth:`TableData.delete_if_equal` / :meth:`~TableData.delete_if_equal_hash`: remove the
  entry only if it still holds exactly the given bytes (hash), write
  ``merkle_todo[tree_key] = b""`` and call ``schema.updated(tx, old, None)``.

Upper layers add cascades from inside ``updated`` with :meth:`TableData.queue_insert`,
which merges an entry into the insert queue in the caller's transaction.

Invariants:

1. **Atomicity** (invariant 3 of the design): a change of the store, its ``merkle_todo``
   record and the ``updated`` hook's writes commit together or not at all. If the hook
   raises, the transaction rolls back and nothing of the write is visible. Nothing else
   may write the store, or the tries, counters and cascades silently diverge from it.
2. **Compare-and-delete only** (invariant 4): entries are deleted only by the two
   ``delete_if_equal`` calls, and the todo/queue/GC records only by workers that check
   the value they processed is still the one stored. A newer concurrent write is never
   lost, only processed again.
3. **Canonical bytes decide**: "changed" means "the encoded bytes differ", so a no-op
   merge writes nothing, and an entry read in an old format is rewritten in the new one.
4. Wake-ups happen after commit only (``Transaction.on_commit``), from whatever thread
   committed, through :class:`~garage_table._notify.Notifier`.

GC bookkeeping is written inside the update transaction rather than just after it (as
Garage does), so a crash between the two cannot leave a tombstone that is never collected.

Committed changes are counted (:meth:`TableData.statistics`; Garage's
``internal_update_counter``/``internal_delete_counter``) after their transaction returns,
so a rolled-back write is not counted. They are bumped without a lock from whatever thread
wrote: an increment costs nothing, and a metric that in some rare thread interleaving
misses one is harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from garage_util.clock import now_msec
from garage_util.data import HASH_LEN, FixedBytes32, blake2sum
from garage_util.db import Included

from ._merkle import MerkleUpdater
from ._notify import Notifier
from .schema import EnumerationOrder, TableEntry, tree_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from garage_util.data import Hash, Uuid
    from garage_util.db import Bound, Db, Transaction, Tree

    from .replication import TableReplication
    from .schema import PartitionKey, SortKey, TableSchema

__all__ = ["GC_TODO_TS_BYTES", "TableData", "TableDataStatistics"]

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=TableEntry[Any, Any])

#: Width of the big-endian millisecond timestamp that prefixes ``gc_todo_v2`` keys, so
#: that the GC worker scans them in time order (Garage's ``GcTodoEntry``).
GC_TODO_TS_BYTES: Final = 8


@dataclass(frozen=True, slots=True)
class TableDataStatistics:
    """The committed changes of a table's local store since start.

    Attributes:
        internal_updates: entries created or changed (their stored bytes differ).
        internal_deletes: entries deleted (GC, offload after a layout change).
    """

    internal_updates: int
    internal_deletes: int


@final
class TableData(Generic[E]):
    """A table's entries on this node, and the trees that follow them.

    Every method is synchronous and short and holds no cursor after it returns; from async
    code run each through ``anyio.to_thread.run_sync`` (their wake-ups work from worker
    threads and from the event-loop thread alike).

    Args:
        schema: the table's schema: name, entry type, filters, ``updated`` hook.
        replication: the table's placement (partition of a hash, storage nodes).
        db: the metadata db; the five trees are opened (created) here.
        node_id: this node's id, to tell whether it leads a partition's GC.
        clock_ms: the wall clock in ms since the epoch, for ``gc_todo_v2`` timestamps.
    """

    __slots__ = (
        "_clock_ms",
        "_db",
        "_deletes",
        "_gc_todo",
        "_insert_queue",
        "_insert_queue_notify",
        "_merkle_todo_notify",
        "_merkle_updater",
        "_node_id",
        "_replication",
        "_schema",
        "_store",
        "_updates",
    )

    # The schema's key and filter parameters are Any: TableData handles any keys through
    # the PartitionKey/SortKey protocols, and TableSchema's parameters are invariant.
    def __init__(
        self,
        schema: TableSchema[Any, Any, E, Any],
        replication: TableReplication,
        db: Db,
        *,
        node_id: Uuid,
        clock_ms: Callable[[], int] = now_msec,
    ) -> None:
        name = schema.TABLE_NAME
        self._schema = schema
        self._replication = replication
        self._db = db
        self._node_id = node_id
        self._clock_ms = clock_ms
        self._store = db.open_tree(f"{name}:table")
        merkle_tree = db.open_tree(f"{name}:merkle_tree")
        merkle_todo = db.open_tree(f"{name}:merkle_todo")
        self._insert_queue = db.open_tree(f"{name}:insert_queue")
        self._gc_todo = db.open_tree(f"{name}:gc_todo_v2")
        self._merkle_updater = MerkleUpdater(db, merkle_tree, merkle_todo, replication)
        self._merkle_todo_notify = Notifier()
        self._insert_queue_notify = Notifier()
        self._updates = self._deletes = 0

    def __repr__(self) -> str:
        return f"<TableData {self.name!r}>"

    # ------------------------------------------------------------------ accessors

    @property
    def name(self) -> str:
        """The table's name (``schema.TABLE_NAME``)."""
        return self._schema.TABLE_NAME

    @property
    def schema(self) -> TableSchema[Any, Any, E, Any]:
        """The table's schema."""
        return self._schema

    @property
    def replication(self) -> TableReplication:
        """The table's replication strategy."""
        return self._replication

    @property
    def db(self) -> Db:
        """The metadata db holding the table's trees."""
        return self._db

    @property
    def node_id(self) -> Uuid:
        """This node's id."""
        return self._node_id

    @property
    def store(self) -> Tree:
        """The ``<name>:table`` tree. Read it freely; write it only through this class."""
        return self._store

    @property
    def merkle_tree(self) -> Tree:
        """The ``<name>:merkle_tree`` tree (written only by the Merkle updater)."""
        return self._merkle_updater.merkle_tree

    @property
    def merkle_todo(self) -> Tree:
        """The ``<name>:merkle_todo`` tree."""
        return self._merkle_updater.merkle_todo

    @property
    def insert_queue(self) -> Tree:
        """The ``<name>:insert_queue`` tree: ``tree_key -> entry bytes`` to insert."""
        return self._insert_queue

    @property
    def gc_todo(self) -> Tree:
        """The ``<name>:gc_todo_v2`` tree: ``ts_ms (8 B BE) ‖ tree_key -> value hash``."""
        return self._gc_todo

    @property
    def merkle_updater(self) -> MerkleUpdater:
        """The table's Merkle tries and their todo."""
        return self._merkle_updater

    @property
    def merkle_todo_notify(self) -> Notifier:
        """Notified after every commit that wrote to ``merkle_todo``."""
        return self._merkle_todo_notify

    @property
    def insert_queue_notify(self) -> Notifier:
        """Notified after every commit that wrote to ``insert_queue``."""
        return self._insert_queue_notify

    def tree_key(self, partition_key: PartitionKey, sort_key: SortKey) -> bytes:
        """The store key of an entry: partition hash ‖ sort key bytes."""
        return tree_key(partition_key, sort_key)

    def decode_entry(self, data: bytes) -> E:
        """Decodes stored or received entry bytes (through migrations).

        Raises:
            DecodeError: the bytes are not an entry of this table.
        """
        return self._schema.decode_entry(data)

    # ------------------------------------------------------------------ reads

    def read_entry(self, partition_key: PartitionKey, sort_key: SortKey) -> bytes | None:
        """The stored bytes of one entry, or None."""
        return self._store.get(tree_key(partition_key, sort_key))

    def read_range(
        self,
        partition_key: PartitionKey,
        start: SortKey | None,
        filter: object | None,
        limit: int,
        order: EnumerationOrder,
    ) -> list[bytes]:
        """Stored bytes of up to ``limit`` entries of one partition key, in sort-key order.

        Args:
            partition_key: the partition key; the read never leaves it.
            start: the first sort key to return (inclusive), or None for the beginning
                (``FORWARD``) or the end (``REVERSE``) of the partition key.
            filter: a value of ``schema.FILTER`` passed to ``schema.matches_filter``, or
                None to return every entry.
            limit: the most entries to return (matching the filter).
            order: ``FORWARD`` for ascending sort keys, ``REVERSE`` for descending.

        Returns:
            The entries' stored bytes, in the requested order.

        Raises:
            DecodeError: an entry had to be decoded for the filter and is corrupt.
        """
        if limit <= 0:
            return []
        prefix = partition_key.hash()
        first: Bound = bytes(prefix)
        # Every key starting with the 32-byte prefix sorts below prefix + 1 (as a 256-bit
        # integer); the all-ones prefix has no successor and no upper bound.
        after = prefix.increment()
        last: Bound = None if after is None else bytes(after)
        reverse = order is EnumerationOrder.REVERSE
        if start is not None:
            start_key = tree_key(partition_key, start)
            if reverse:
                last = Included(start_key)
            else:
                first = start_key
        out: list[bytes] = []
        for _key, value in self._store.range(first, last, reverse=reverse):
            if filter is None or self._schema.matches_filter(self.decode_entry(value), filter):
                out.append(value)
                if len(out) >= limit:
                    break
        return out

    # ------------------------------------------------------------------ writes

    def update_entry(self, data: bytes) -> E | None:
        """Merge incoming entry bytes (a remote write, a sync) into the local entry.

        Returns:
            The new entry if the stored bytes changed, else None.

        Raises:
            DecodeError: ``data`` or the stored entry does not decode.
            Exception: whatever the ``updated`` hook raised (nothing is then written).
        """
        update = self.decode_entry(data)
        return self._update_with(
            tree_key(update.partition_key(), update.sort_key()),
            lambda old: update if old is None else old.merge(update),
        )

    def update_many(self, entries: list[bytes]) -> list[E | None]:
        """:meth:`update_entry` for each of ``entries``, in order, one transaction each.

        Returns:
            For each entry, the new entry if it changed the store, else None.

        Raises:
            As :meth:`update_entry`; the entries before the failing one stay applied.
        """
        return [self.update_entry(data) for data in entries]

    def update_entry_with(
        self,
        partition_key: PartitionKey,
        sort_key: SortKey,
        fn: Callable[[E | None], E | None],
    ) -> E | None:
        """Replace an entry by ``fn(old entry)``, atomically (a local read-modify-write).

        ``fn`` runs inside the write transaction: it must be quick, deterministic and
        must not touch the db. It should merge into ``old`` rather than overwrite it, so
        that concurrent updates are kept. Returning None (or an entry encoding to the same
        bytes) leaves the entry as it is.

        Returns:
            The new entry if the stored bytes changed, else None.

        Raises:
            ValueError: ``fn`` returned an entry with other keys.
            DecodeError: the stored entry does not decode.
            Exception: whatever ``fn`` or the ``updated`` hook raised (nothing is written).
        """
        return self._update_with(tree_key(partition_key, sort_key), fn)

    def _update_with(self, key: bytes, fn: Callable[[E | None], E | None]) -> E | None:
        def txn(tx: Transaction) -> E | None:
            old_bytes = tx.get(self._store, key)
            old = None if old_bytes is None else self.decode_entry(old_bytes)
            new = fn(old)
            if new is None:
                return None
            if tree_key(new.partition_key(), new.sort_key()) != key:
                raise ValueError("the updated entry has other keys than the entry it replaces")
            new_bytes = new.encode()
            if new_bytes == old_bytes:
                return None
            new_hash = blake2sum(new_bytes)
            tx.insert(self._store, key, new_bytes)
            tx.insert(self.merkle_todo, key, new_hash)
            self._schema.updated(tx, old, new)
            if new.is_tombstone() and self._leads_gc(key):
                gc_key = self._clock_ms().to_bytes(GC_TODO_TS_BYTES, "big") + key
                tx.insert(self._gc_todo, gc_key, new_hash)
            tx.on_commit(self._merkle_todo_notify.notify)
            return new

        new = self._db.transaction(txn)
        if new is not None:
            self._updates += 1
        return new

    def _leads_gc(self, key: bytes) -> bool:
        """True when this node is the first storage node of the entry's partition."""
        nodes = self._replication.storage_nodes(FixedBytes32(key[:HASH_LEN]))
        return bool(nodes) and nodes[0] == self._node_id

    def delete_if_equal(self, key: bytes, value: bytes) -> bool:
        """Delete the entry at ``key`` if its stored bytes are exactly ``value``.

        Used once the entry is known to be elsewhere (offload, GC). Runs the ``updated``
        hook with ``(old, None)`` and records the removal for the Merkle tries.

        Returns:
            True if the entry was deleted, False if it was absent or different.
        """
        return self._delete_if(key, lambda current: current == value)

    def delete_if_equal_hash(self, key: bytes, value_hash: Hash) -> bool:
        """Delete the entry at ``key`` if ``blake2sum`` of its stored bytes is ``value_hash``.

        Returns:
            True if the entry was deleted, False if it was absent or different.
        """
        return self._delete_if(key, lambda current: blake2sum(current) == value_hash)

    def _delete_if(self, key: bytes, matches: Callable[[bytes], bool]) -> bool:
        def txn(tx: Transaction) -> bool:
            current = tx.get(self._store, key)
            if current is None or not matches(current):
                return False
            old = self.decode_entry(current)
            tx.remove(self._store, key)
            tx.insert(self.merkle_todo, key, b"")
            self._schema.updated(tx, old, None)
            tx.on_commit(self._merkle_todo_notify.notify)
            return True

        deleted = self._db.transaction(txn)
        if deleted:
            self._deletes += 1
        return deleted

    def queue_insert(self, tx: Transaction, entry: E) -> None:
        """Queue ``entry`` for a cluster-wide insert, inside the caller's transaction.

        Call it from an ``updated`` hook (a cascade) or any transaction that must enqueue
        atomically with its own writes. The entry is merged into any entry already queued
        under its key; the insert queue worker wakes after the commit.
        """
        key = tree_key(entry.partition_key(), entry.sort_key())
        queued = tx.get(self._insert_queue, key)
        merged = entry if queued is None else self.decode_entry(queued).merge(entry)
        tx.insert(self._insert_queue, key, merged.encode())
        tx.on_commit(self._insert_queue_notify.notify)

    # ------------------------------------------------------------------ statistics

    def statistics(self) -> TableDataStatistics:
        """The changes committed so far (a snapshot; never blocks)."""
        return TableDataStatistics(self._updates, self._deletes)

    def gc_todo_len(self) -> int:
        """How many tombstones wait for GC on this node (sqlite counts: O(n))."""
        return self._gc_todo.len()

    def insert_queue_len(self) -> int:
        """How many entries wait in the insert queue (sqlite counts: O(n))."""
        return self._insert_queue.len()
