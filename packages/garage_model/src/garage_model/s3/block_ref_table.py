"""The block_ref table: which versions use which block (Garage: src/model/s3/block_ref_table.rs).

One entry per (block, version) pair: ``BlockRef {block (P), version (S), deleted}``. The
partition key is the **block hash**, so the refs of a block live on exactly the nodes that
store the block (same hash, same partition): a node's block reference counts are computed
from its own local rows, with no network call (design §8.2, §9.3).

Theory of operation
-------------------
The block manager keeps a local reference count per block (``block_local_rc``). The
:class:`BlockRefSchema` ``updated`` hook changes it *in the same transaction* as the
block_ref row, through :class:`BlockRefHooks`:

- a ref that becomes live (inserted not deleted) → ``block_incref``;
- a live ref that becomes deleted, or is removed from the local store while live (handed
  over to other nodes after a layout change) → ``block_decref``.

So, on every node, the count of a block always equals the number of live refs stored
there, whatever the order in which writes, syncs and GC arrive (``deleted`` only goes from
false to true, so a ref is counted at most once). :func:`count_live_refs` recomputes that
number from the store (``recalculate_rc``, repairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from garage_model.bucket_table import UuidKey
from garage_table.schema import DeletedFilter, TableEntry, TableSchema
from garage_util.crdt import Bool
from garage_util.data import Hash, Uuid

if TYPE_CHECKING:
    from garage_table import TableData
    from garage_util.db import Transaction

__all__ = ["BlockRef", "BlockRefHooks", "BlockRefSchema", "count_live_refs"]


@dataclass(frozen=True, slots=True)
class BlockRef(TableEntry[UuidKey, UuidKey]):
    """A reference from an object version to one of its blocks.

    Attributes:
        block: the block's hash (partition key).
        version: the uuid of the version using the block (sort key).
        deleted: set once the version is deleted; never unset.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G08s3br"

    block: Hash
    version: Uuid
    deleted: Bool

    @classmethod
    def new(cls, block: Hash, version: Uuid, *, deleted: bool = False) -> BlockRef:
        """A live (or, with ``deleted=True``, deleted) reference."""
        return cls(block, version, Bool(deleted))

    @property
    def is_deleted(self) -> bool:
        """True once the referencing version was deleted."""
        return self.deleted.value

    def partition_key(self) -> UuidKey:
        return UuidKey(self.block)

    def sort_key(self) -> UuidKey:
        return UuidKey(self.version)

    def is_tombstone(self) -> bool:
        return self.deleted.value

    def merge(self, other: BlockRef) -> BlockRef:
        if (self.block, self.version) != (other.block, other.version):
            raise ValueError("cannot merge block refs of different keys")
        deleted = self.deleted.merge(other.deleted)
        return self if deleted is self.deleted else other


class BlockRefHooks(Protocol):
    """What the block_ref table tells the block manager, inside its write transaction."""

    def block_incref(self, tx: Transaction, hash: Hash) -> None:
        """One more live reference to ``hash`` is stored on this node."""
        ...

    def block_decref(self, tx: Transaction, hash: Hash) -> None:
        """One live reference to ``hash`` less is stored on this node."""
        ...


class BlockRefSchema(TableSchema[UuidKey, UuidKey, BlockRef, DeletedFilter]):
    """The ``block_ref`` table (sharded by block hash).

    Args:
        hooks: the block manager's reference counting (``BlockManager`` implements it).
    """

    TABLE_NAME: ClassVar[str] = "block_ref"
    PARTITION_KEY = UuidKey
    SORT_KEY = UuidKey
    ENTRY = BlockRef
    FILTER = DeletedFilter

    def __init__(self, hooks: BlockRefHooks) -> None:
        self._hooks = hooks

    def updated(self, tx: Transaction, old: BlockRef | None, new: BlockRef | None) -> None:
        was_live = old is not None and not old.is_deleted
        is_live = new is not None and not new.is_deleted
        ref = new if new is not None else old
        if ref is None or was_live == is_live:
            return
        if is_live:
            self._hooks.block_incref(tx, ref.block)
        else:
            self._hooks.block_decref(tx, ref.block)

    def matches_filter(self, entry: BlockRef, filter: DeletedFilter) -> bool:
        return filter.apply(entry.is_deleted)


def count_live_refs(data: TableData[BlockRef], hash: Hash) -> int:
    """The number of live (not deleted) refs to ``hash`` in this node's store.

    Reads the local rows of the block's partition key (a synchronous db read: from async
    code call it through ``anyio.to_thread.run_sync``).
    """
    start = bytes(hash)
    after = hash.increment()
    rows = data.store.range(start, None if after is None else bytes(after))
    return sum(1 for _key, raw in rows if not data.decode_entry(raw).is_deleted)
