"""What a table is: keys, entry type, tombstones and filters (Garage: src/table/schema.rs).

A table stores *entries*, each a CRDT, identified by a partition key and a sort key:

- the **partition key** decides placement: its 32-byte :meth:`PartitionKey.hash` picks the
  partition (first byte) and so the nodes that store it; all entries with one partition
  key live together on the same nodes, sorted by sort key;
- the **sort key** orders entries within a partition (:meth:`SortKey.sort_key` bytes).

Locally an entry is stored under ``tree_key = pk.hash() ‖ sk.sort_key()`` with the
entry's versioned encoding as value. Merging must be a semilattice join (see
:mod:`garage_util.crdt`); :func:`garage_util.testing.check_crdt_laws` checks your entry.

A table declares a :class:`TableSchema`. Its :meth:`TableSchema.updated` hook runs inside
the same database transaction as the write that changed an entry, so that whatever it does
(queueing cascades with ``queue_insert``, counters) is atomic with the change.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar, runtime_checkable

from garage_util.crdt import Crdt
from garage_util.data import HASH_LEN, FixedBytes32, Hash, Uuid, blake2sum
from garage_util.encode import Versioned, decode_versioned, encode_versioned

if TYPE_CHECKING:
    from garage_util.db import Transaction

__all__ = [
    "DeletedFilter",
    "EmptyKey",
    "EnumerationOrder",
    "PartitionKey",
    "SortKey",
    "StringKey",
    "TableEntry",
    "TableSchema",
    "UuidKey",
    "tree_key",
]

P = TypeVar("P", bound="PartitionKey")
S = TypeVar("S", bound="SortKey")
# Any: the key parameters of TableEntry are invariant, so a bound with the protocols
# would refuse every entry with concrete key types.
E = TypeVar("E", bound="TableEntry[Any, Any]")
F = TypeVar("F")


@runtime_checkable
class PartitionKey(Protocol):
    """A partition key: hashes to the 32 bytes that place its entries."""

    def hash(self) -> Hash:
        """The 32-byte hash whose first byte is the partition."""
        ...


@runtime_checkable
class SortKey(Protocol):
    """A sort key: the bytes that order entries inside a partition."""

    def sort_key(self) -> bytes:
        """The bytes stored after the partition hash in the tree key."""
        ...


@dataclass(frozen=True, slots=True)
class EmptyKey:
    """The key of tables with a single partition or a single entry per partition.

    Hashes to 32 zero bytes and sorts as empty bytes (Garage's ``EmptyKey``).
    """

    def hash(self) -> Hash:
        return FixedBytes32(bytes(HASH_LEN))

    def sort_key(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class StringKey:
    """A text key: hashes with blake2 of its UTF-8 bytes; sorts by those bytes."""

    value: str

    def hash(self) -> Hash:
        return blake2sum(self.value.encode())

    def sort_key(self) -> bytes:
        return self.value.encode()


@dataclass(frozen=True, slots=True)
class UuidKey:
    """A 32-byte id used as a key: its own hash, sorted by its bytes.

    Garage's ``Uuid`` is both a partition key and a sort key; :class:`FixedBytes32` has no
    ``hash()``/``sort_key()`` methods, so tables keyed by an id wrap it in this.
    """

    value: Uuid

    def hash(self) -> Hash:
        return self.value

    def sort_key(self) -> bytes:
        return bytes(self.value)


def tree_key(partition_key: PartitionKey, sort_key: SortKey) -> bytes:
    """The local storage key of an entry: partition hash ‖ sort key bytes."""
    return bytes(partition_key.hash()) + sort_key.sort_key()


class TableEntry(Crdt, Versioned, Generic[P, S], abstract=True):
    """Base of table entries: a CRDT with a versioned encoding and its two keys.

    Subclasses are frozen dataclasses that set ``VERSION_MARKER`` (and ``PREVIOUS`` /
    ``migrate`` for older formats), implement ``merge``, and the three methods below.
    """

    __slots__ = ()

    @abstractmethod
    def partition_key(self) -> P:
        """The entry's partition key."""

    @abstractmethod
    def sort_key(self) -> S:
        """The entry's sort key."""

    def is_tombstone(self) -> bool:
        """True when the entry only records a deletion and may be garbage-collected once
        every replica has it. Entries that are never collected return False."""
        return False

    def encode(self) -> bytes:
        """The versioned encoding stored and sent over the network."""
        return encode_versioned(self)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decodes bytes of this entry type, written by this or any older format."""
        return decode_versioned(cls, data)


class DeletedFilter(enum.Enum):
    """The common filter on tombstones for range reads."""

    ANY = "any"
    DELETED = "deleted"
    NOT_DELETED = "not_deleted"

    def apply(self, deleted: bool) -> bool:
        """True when an entry with this deletion state passes the filter."""
        if self is DeletedFilter.ANY:
            return True
        return deleted == (self is DeletedFilter.DELETED)


class EnumerationOrder(enum.Enum):
    """Direction of a range read."""

    FORWARD = "forward"
    REVERSE = "reverse"


class TableSchema(ABC, Generic[P, S, E, F]):
    """Declares a table. Subclass it, set the class attributes, and override the hooks.

    Attributes:
        TABLE_NAME: unique name; prefixes the table's trees and RPC endpoints.
        PARTITION_KEY: the partition key type.
        SORT_KEY: the sort key type.
        ENTRY: the entry type.
        FILTER: the type of range-read filters (``DeletedFilter`` by default); it travels
            in RPCs, so it must be encodable by :mod:`garage_util.encode`.
    """

    TABLE_NAME: ClassVar[str]
    PARTITION_KEY: ClassVar[type]
    SORT_KEY: ClassVar[type]
    ENTRY: ClassVar[type]
    FILTER: ClassVar[type] = DeletedFilter

    def matches_filter(self, entry: E, filter: F) -> bool:
        """True when ``entry`` passes ``filter`` in a range read. The default handles
        :class:`DeletedFilter`."""
        if isinstance(filter, DeletedFilter):
            return filter.apply(entry.is_tombstone())
        raise NotImplementedError(f"{type(self).__name__} must implement matches_filter")

    def updated(self, tx: Transaction, old: E | None, new: E | None) -> None:
        """Runs inside the write transaction whenever a stored entry changes.

        ``old`` is None for a new entry, ``new`` is None for a removed one (GC, offload).
        Whatever it writes with ``tx`` commits or aborts with the change itself. It must
        not block on I/O other than the database, and it must be deterministic.
        """
        return None

    def decode_entry(self, data: bytes) -> E:
        """Decodes stored or received entry bytes."""
        entry_type: type[E] = self.ENTRY
        return entry_type.decode(data)
