"""The contract between the engine-neutral layer (``_api``) and a storage engine.

Theory of operation:
    An engine is a small set of primitive, synchronous, short operations on named trees: a
    point read, a count, one bounded batch of a range scan, and the three writes. The neutral
    layer builds everything else (first/last/neighbours, iteration, transactions with
    callbacks, nesting checks) on top of them, once, so both engines behave identically.

Invariants the neutral layer guarantees to an engine:
    * Keys and bounds are normalised (``_bounds``): keys are 1 to the engine's
      ``max_key_bytes`` bytes, bounds are ``None`` / ``Included`` / ``Excluded``, and
      ``limit`` is at least 1.
    * A tree name passed to a data operation was opened through :meth:`Engine.open_tree` on
      this engine.
    * Every write (``open_tree``, the autocommit writes, ``begin`` and everything until the
      matching ``commit``/``rollback``) happens with the db's write lock held, so at most one
      write is in progress and the engine needs no lock of its own for writers. A write
      transaction starts, runs and ends on one thread.
    * ``close`` is called once, with the write lock held, when no transaction is in progress.

Invariants an engine guarantees:
    * Autocommit reads see every write that returned before they started; autocommit writes
      are atomic and, once returned, durable as far as the ``fsync`` setting promises.
    * ``range_batch`` returns at most ``limit`` items of the range, ascending (or descending if
      ``reverse``), read from one consistent state, and holds no cursor or read transaction
      once it has returned.
    * A transaction's reads see its own writes; ``commit`` makes all of them visible and
      durable at once, or raises ``DbError`` having rolled everything back.
    * Engine-specific exceptions leave as ``DbError`` with the original chained.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from pathlib import Path

    from ._bounds import NormBound

__all__ = ["Engine", "EngineOps", "EngineTx", "Item"]

Item = tuple[bytes, bytes]
"""One ``(key, value)`` entry of a tree."""


class EngineOps(ABC):
    """The data operations, either autocommit (on :class:`Engine`) or in a transaction."""

    __slots__ = ()

    @abstractmethod
    def get(self, tree: str, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or ``None``."""

    @abstractmethod
    def len(self, tree: str) -> int:
        """Return the number of entries of the tree."""

    @abstractmethod
    def range_batch(
        self, tree: str, lo: NormBound, hi: NormBound, reverse: bool, limit: int
    ) -> list[Item]:
        """Return up to ``limit`` entries with ``lo <= key <= hi`` (per bound kind), in order."""

    @abstractmethod
    def insert(self, tree: str, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""

    @abstractmethod
    def remove(self, tree: str, key: bytes) -> None:
        """Delete ``key`` if present."""

    @abstractmethod
    def clear(self, tree: str) -> None:
        """Delete every entry of the tree (the tree itself stays)."""


class EngineTx(EngineOps):
    """A write transaction; the data operations see its own writes."""

    __slots__ = ()

    @abstractmethod
    def commit(self) -> None:
        """Make every write visible and durable; on failure roll back and raise ``DbError``."""

    @abstractmethod
    def rollback(self) -> None:
        """Discard every write. Must be safe to call after a failed operation."""


class Engine(EngineOps):
    """A storage engine: the autocommit data operations plus lifecycle and trees."""

    __slots__ = ()

    name: ClassVar[str]
    """The engine name accepted by ``open_db`` (``"sqlite"``, ``"lmdb"``)."""

    max_key_bytes: ClassVar[int]
    """The longest key the engine stores, in bytes (the constants are in ``_bounds``)."""

    @abstractmethod
    def has_tree(self, name: str) -> bool:
        """Return whether ``open_tree(name)`` already ran on this engine (no I/O)."""

    @abstractmethod
    def open_tree(self, name: str) -> None:
        """Create the tree if absent and prepare it for data operations."""

    @abstractmethod
    def list_trees(self) -> list[str]:
        """Return the names of every tree stored in the db, opened or not."""

    @abstractmethod
    def begin(self) -> EngineTx:
        """Start a write transaction."""

    @abstractmethod
    def snapshot(self, to_dir: Path) -> Path:
        """Write a consistent copy of the db into the existing ``to_dir``; return its path."""

    @abstractmethod
    def close(self) -> None:
        """Release every connection, handle and file of the engine."""
