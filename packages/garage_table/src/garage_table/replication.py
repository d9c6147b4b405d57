"""Where a table's entries live: the replication strategy (Garage: src/table/replication/).

A table is either **sharded** (each partition on the ``replication_factor`` nodes the
cluster layout assigns it, for objects, versions, block refs...) or **full copy** (every
node of the layout holds everything, for buckets and keys, which every request needs and
which are small). The table layer only talks to this protocol:

| | sharded | full copy |
|---|---|---|
| storage nodes | union over live layout versions of the partition's nodes | all layout nodes |
| read nodes | the partition's nodes in the layout version every node has synced | ourself |
| write sets | one per live layout version | ``[all nodes]`` |
| partition of a hash | its first byte | 0 |

During a layout change several versions are live: a write needs a quorum in **each** of
their node sets, and reads go to the newest version that every node has fully synced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from garage_util.data import Hash, Uuid

__all__ = ["SyncPartition", "SyncPartitions", "TableReplication"]


@dataclass(frozen=True, slots=True)
class SyncPartition:
    """One unit of anti-entropy: a range of hashes and the node sets that must hold it.

    Attributes:
        partition: the partition number (its Merkle tree).
        first_hash: the first hash of the range (inclusive).
        last_hash: the last hash of the range (inclusive).
        storage_sets: the node sets, one per live layout version.
    """

    partition: int
    first_hash: Hash
    last_hash: Hash
    storage_sets: tuple[tuple[Uuid, ...], ...]


@dataclass(frozen=True, slots=True)
class SyncPartitions:
    """Every sync unit of a table, as of one layout version."""

    layout_version: int
    partitions: tuple[SyncPartition, ...]


class TableReplication(Protocol):
    """The placement and quorums of one table (sharded or full copy)."""

    def storage_nodes(self, hash: Hash) -> list[Uuid]:
        """Every node that must store entries of this partition hash."""
        ...

    def read_nodes(self, hash: Hash) -> list[Uuid]:
        """The nodes to read entries of this partition hash from."""
        ...

    def read_quorum(self) -> int:
        """Replies a read waits for."""
        ...

    def write_sets(self, hash: Hash) -> list[list[Uuid]]:
        """The node sets a write must reach, one per live layout version."""
        ...

    def write_quorum(self) -> int:
        """Acknowledgements a write needs in every set."""
        ...

    def partition_of(self, hash: Hash) -> int:
        """The Merkle partition of this hash."""
        ...

    def sync_partitions(self) -> SyncPartitions:
        """Every partition to synchronise, with its node sets."""
        ...
