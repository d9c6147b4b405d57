"""The two replication strategies over the cluster layout (Garage: src/table/replication/).

Both read the layout through a callable returning the current :class:`LayoutHelper`, so
that every request sees the layout of the moment it starts (a layout change swaps the
helper; requests in flight keep the snapshot they began with).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final, final

from garage_rpc.layout import NB_PARTITIONS, LayoutHelper, partition_first_hash, partition_of
from garage_util.data import HASH_LEN, FixedBytes32, Hash, Uuid

from .replication import SyncPartition, SyncPartitions, TableReplication

if TYPE_CHECKING:
    from collections.abc import Callable

    from garage_rpc.replication_mode import ReplicationParams

__all__ = ["TableFullReplication", "TableShardedReplication"]

# Fault-testing mutation switch (faults/, issue 11), read once at import: with
# GARAGE_TEST_MUTATION=single-layout-write, sharded writes go only to the newest layout
# version's nodes instead of every live version's, so the fault checker can show it
# catches the reads this breaks during layout changes. Never set outside fault runs.
_SINGLE_LAYOUT_WRITE: Final = os.environ.get("GARAGE_TEST_MUTATION") == "single-layout-write"

_ZERO: Final = FixedBytes32(bytes(HASH_LEN))
_ONES: Final = FixedBytes32(b"\xff" * HASH_LEN)


def _partition_last_hash(partition: int) -> Hash:
    nxt = partition_first_hash(partition + 1) if partition + 1 < NB_PARTITIONS else None
    if nxt is None:
        return _ONES
    prev = int.from_bytes(nxt, "big") - 1
    return FixedBytes32(prev.to_bytes(HASH_LEN, "big"))


@final
class TableShardedReplication(TableReplication):
    """Each partition on the nodes the layout assigns it; quorums from the consistency mode.

    Args:
        layout: returns the current layout helper (e.g. ``lambda: manager.helper``).
        params: the replication factor and consistency mode.
    """

    __slots__ = ("_layout", "_params")

    def __init__(self, layout: Callable[[], LayoutHelper], params: ReplicationParams) -> None:
        self._layout = layout
        self._params = params

    def storage_nodes(self, hash: Hash) -> list[Uuid]:
        return list(self._layout().storage_nodes_of(hash))

    def read_nodes(self, hash: Hash) -> list[Uuid]:
        return list(self._layout().read_nodes_of(hash))

    def read_quorum(self) -> int:
        return self._params.read_quorum

    def write_sets(self, hash: Hash) -> list[list[Uuid]]:
        sets = self._layout().storage_sets_of(hash)
        if _SINGLE_LAYOUT_WRITE:
            sets = sets[-1:]
        return [list(s) for s in sets]

    def write_quorum(self) -> int:
        return self._params.write_quorum

    def partition_of(self, hash: Hash) -> int:
        return partition_of(hash)

    def sync_partitions(self) -> SyncPartitions:
        helper = self._layout()
        partitions = tuple(
            SyncPartition(
                partition=p,
                first_hash=partition_first_hash(p),
                last_hash=_partition_last_hash(p),
                storage_sets=tuple(helper.storage_sets_of(partition_first_hash(p))),
            )
            for p in range(NB_PARTITIONS)
        )
        return SyncPartitions(helper.ack_map_min, partitions)


@final
class TableFullReplication(TableReplication):
    """Every node of the layout (gateways included) holds everything; reads are local.

    Writes wait for all nodes but one (so one node down does not block bucket and key
    changes); the rest catch up through anti-entropy.

    Args:
        layout: returns the current layout helper.
        our_id: this node's id.
    """

    __slots__ = ("_layout", "_our_id")

    def __init__(self, layout: Callable[[], LayoutHelper], our_id: Uuid) -> None:
        self._layout = layout
        self._our_id = our_id

    def _nodes(self) -> list[Uuid]:
        return list(self._layout().current.all_nodes)

    def storage_nodes(self, hash: Hash) -> list[Uuid]:
        return self._nodes()

    def read_nodes(self, hash: Hash) -> list[Uuid]:
        return [self._our_id]

    def read_quorum(self) -> int:
        return 1

    def write_sets(self, hash: Hash) -> list[list[Uuid]]:
        return [self._nodes()]

    def write_quorum(self) -> int:
        n = len(self._nodes())
        return n - 1 if n > 1 else 1

    def partition_of(self, hash: Hash) -> int:
        return 0

    def sync_partitions(self) -> SyncPartitions:
        helper = self._layout()
        nodes = tuple(helper.current.all_nodes)
        return SyncPartitions(helper.current.version, (SyncPartition(0, _ZERO, _ONES, (nodes,)),))
