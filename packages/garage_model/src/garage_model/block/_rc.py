"""Local reference counts of blocks (Garage: src/block/rc.rs).

Theory of operation: the tree ``block_local_rc`` counts, for each block hash, the live
block references stored on this node. A block is kept while its count is positive, and for
:data:`BLOCK_GC_DELAY_MS` after it drops to zero, so that a reference arriving late (a
retried PUT, a table sync) finds the block still there. Values:

- absent: count 0, deletable now;
- ``u64 BE count`` (8 bytes, count > 0): *present*, needed;
- ``u64 0 ‖ u64 BE at_time`` (16 bytes): *deletable* once ``now_ms > at_time``.

Invariants: a stored count is never 0 (zero is the deletable form or absence); decrements
below zero are ignored (a duplicate delete); increments and decrements happen in the same
db transaction as the block_ref change that causes them, so the count matches the refs.

The clock is passed in (``now_ms``); nothing here reads it. Calls are synchronous db
accesses: async callers use ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from garage_util.errors import DecodeError

if TYPE_CHECKING:
    from garage_util.data import Hash
    from garage_util.db import Db, Transaction, Tree

__all__ = ["BLOCK_GC_DELAY_MS", "BLOCK_RC_TREE", "BlockRc", "RcChange", "RcEntry"]

#: How long a block with no reference is kept (Garage: BLOCK_GC_DELAY, 10 minutes): longer
#: than a PUT's retries, so a late reference still finds its block.
BLOCK_GC_DELAY_MS: Final = 10 * 60 * 1000

#: The db tree name (Garage's).
BLOCK_RC_TREE: Final = "block_local_rc"

_U64: Final = 8


@dataclass(frozen=True, slots=True)
class RcEntry:
    """One block's reference count.

    Attributes:
        count: the number of live references (0 when absent or deletable).
        deletable_at_ms: when the count dropped to zero, the time after which the block may
            be deleted; ``None`` when present or absent.
    """

    count: int = 0
    deletable_at_ms: int | None = None

    @classmethod
    def parse(cls, raw: bytes | None) -> RcEntry:
        """Decodes a stored value (``None`` for an absent key).

        Raises:
            DecodeError: the value is neither 8 nor 16 bytes, or a 16-byte value does not
                start with a zero count.
        """
        if raw is None:
            return cls()
        if len(raw) == _U64:
            count = int.from_bytes(raw, "big")
            if count == 0:
                raise DecodeError("block rc: a stored count is never 0")
            return cls(count)
        if len(raw) == 2 * _U64 and raw[:_U64] == bytes(_U64):
            return cls(0, int.from_bytes(raw[_U64:], "big"))
        raise DecodeError(f"block rc: invalid value of {len(raw)} bytes")

    def serialize(self) -> bytes | None:
        """The stored value, or ``None`` when the key should be removed (absent)."""
        if self.count > 0:
            return self.count.to_bytes(_U64, "big")
        if self.deletable_at_ms is not None:
            return bytes(_U64) + self.deletable_at_ms.to_bytes(_U64, "big")
        return None

    def increment(self) -> RcEntry:
        """The entry with one more reference."""
        return RcEntry(self.count + 1)

    def decrement(self, now_ms: int, gc_delay_ms: int = BLOCK_GC_DELAY_MS) -> RcEntry:
        """The entry with one reference less; reaching zero starts the GC delay."""
        if self.count > 1:
            return RcEntry(self.count - 1)
        if self.count == 1:
            return RcEntry(0, now_ms + gc_delay_ms)
        return self  # already zero: a duplicate decrement changes nothing

    @property
    def is_zero(self) -> bool:
        """No live reference (absent or deletable)."""
        return self.count == 0

    def is_deletable(self, now_ms: int) -> bool:
        """Absent, or deletable with the GC delay over."""
        if self.count > 0:
            return False
        return self.deletable_at_ms is None or now_ms > self.deletable_at_ms

    def is_needed(self, now_ms: int) -> bool:
        """The block must be kept (present, or within its GC delay)."""
        return not self.is_deletable(now_ms)


@dataclass(frozen=True, slots=True)
class RcChange:
    """What an :meth:`BlockRc.incref` or :meth:`BlockRc.decref` did.

    Attributes:
        old: the entry before.
        new: the entry after.
    """

    old: RcEntry
    new: RcEntry

    @property
    def became_nonzero(self) -> bool:
        """The first reference appeared: schedule a resync to check the block arrived."""
        return self.old.is_zero and not self.new.is_zero

    @property
    def became_zero(self) -> bool:
        """The last reference went: schedule a resync after the GC delay to delete it."""
        return not self.old.is_zero and self.new.is_zero


@final
class BlockRc:
    """The ``block_local_rc`` tree: reference counts of locally stored blocks.

    Args:
        db: the metadata db holding the tree.
        gc_delay_ms: how long a block stays after its last reference went (Garage's
            10 minutes; tests shorten it).
    """

    def __init__(self, db: Db, *, gc_delay_ms: int = BLOCK_GC_DELAY_MS) -> None:
        if gc_delay_ms < 0:
            raise ValueError(f"gc_delay_ms must be >= 0, got {gc_delay_ms}")
        self._tree: Tree = db.open_tree(BLOCK_RC_TREE)
        self.gc_delay_ms = gc_delay_ms
        """How long a block whose count fell to zero is kept."""

    @property
    def tree(self) -> Tree:
        """The underlying tree (for iteration by resync and repair)."""
        return self._tree

    def _update(self, tx: Transaction, hash: Hash, new: RcEntry) -> None:
        raw = new.serialize()
        if raw is None:
            tx.remove(self._tree, bytes(hash))
        else:
            tx.insert(self._tree, bytes(hash), raw)

    def incref(self, tx: Transaction, hash: Hash) -> RcChange:
        """Adds one reference to ``hash`` in the caller's transaction."""
        old = RcEntry.parse(tx.get(self._tree, bytes(hash)))
        new = old.increment()
        self._update(tx, hash, new)
        return RcChange(old, new)

    def decref(self, tx: Transaction, hash: Hash, now_ms: int) -> RcChange:
        """Removes one reference from ``hash`` in the caller's transaction.

        Args:
            tx: the transaction that also changes the block_ref causing this.
            hash: the block.
            now_ms: the current time; the GC delay starts there if the count hits zero.
        """
        old = RcEntry.parse(tx.get(self._tree, bytes(hash)))
        new = old.decrement(now_ms, self.gc_delay_ms)
        if new != old:
            self._update(tx, hash, new)
        return RcChange(old, new)

    def get(self, hash: Hash) -> RcEntry:
        """The current entry of ``hash``."""
        return RcEntry.parse(self._tree.get(bytes(hash)))

    def is_needed(self, hash: Hash, now_ms: int) -> bool:
        """Whether the block must be kept."""
        return self.get(hash).is_needed(now_ms)

    def is_deletable(self, hash: Hash, now_ms: int) -> bool:
        """Whether the block may be deleted now."""
        return self.get(hash).is_deletable(now_ms)

    def clear_deleted_block_rc(self, db: Db, hash: Hash, now_ms: int) -> None:
        """After the block file was deleted, removes its deletable entry (if still so)."""

        def clear(tx: Transaction) -> None:
            entry = RcEntry.parse(tx.get(self._tree, bytes(hash)))
            if entry.deletable_at_ms is not None and entry.is_deletable(now_ms):
                tx.remove(self._tree, bytes(hash))

        db.transaction(clear)
