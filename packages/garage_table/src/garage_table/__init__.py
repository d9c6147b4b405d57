"""garage_table: replicated CRDT tables, embeddable in any Python app (asyncio or trio).

Declare a table with a :class:`TableSchema` (keys, entry CRDT, tombstones, filters, an
``updated`` hook), choose its placement (:class:`TableShardedReplication` over the
cluster layout, or :class:`TableFullReplication`), and get:

- :class:`TableData`: the local store on the metadata db, with the Merkle todo and the
  ``updated`` hook committed in the same transaction as every change;
- :class:`Table`: quorum writes and reads with read repair, over garage_rpc;
- :class:`TableSyncer` / :class:`SyncWorker`: Merkle anti-entropy between replicas, and
  hand-over of partitions a node no longer stores;
- :class:`TableGc` / :class:`GcWorker`: tombstone garbage collection, only once every
  replica holds the tombstone, deleting only where it is still exactly that tombstone;
- :class:`MerkleWorker` and :class:`InsertQueueWorker`: the background workers that keep
  the Merkle trees up to date and propagate queued inserts;
- :class:`ReplicatedTable`: all of the above for one table on a node, built in one line.

garage_table depends only on garage_rpc and garage_util, never on the S3 layers.
"""

from ._data import TableData as TableData
from ._gc import TABLE_GC_DELAY_S as TABLE_GC_DELAY_S
from ._gc import GcWorker as GcWorker
from ._gc import TableGc as TableGc
from ._merkle import EMPTY_NODE_HASH as EMPTY_NODE_HASH
from ._merkle import MerkleEmpty as MerkleEmpty
from ._merkle import MerkleIntermediate as MerkleIntermediate
from ._merkle import MerkleLeaf as MerkleLeaf
from ._merkle import MerkleNode as MerkleNode
from ._merkle import MerkleNodeKey as MerkleNodeKey
from ._merkle import MerkleUpdater as MerkleUpdater
from ._merkle import MerkleWorker as MerkleWorker
from ._notify import Notifier as Notifier
from ._queue import InsertQueueWorker as InsertQueueWorker
from ._stack import ReplicatedTable as ReplicatedTable
from ._stack import TableTimings as TableTimings
from ._strategies import TableFullReplication as TableFullReplication
from ._strategies import TableShardedReplication as TableShardedReplication
from ._sync import SyncWorker as SyncWorker
from ._sync import TableSyncer as TableSyncer
from .errors import NoLayoutError as NoLayoutError
from .errors import TableError as TableError
from .replication import SyncPartition as SyncPartition
from .replication import SyncPartitions as SyncPartitions
from .replication import TableReplication as TableReplication
from .schema import DeletedFilter as DeletedFilter
from .schema import EmptyKey as EmptyKey
from .schema import EnumerationOrder as EnumerationOrder
from .schema import PartitionKey as PartitionKey
from .schema import SortKey as SortKey
from .schema import StringKey as StringKey
from .schema import TableEntry as TableEntry
from .schema import TableSchema as TableSchema
from .schema import UuidKey as UuidKey
from .table import Table as Table

__all__ = [
    "EMPTY_NODE_HASH",
    "TABLE_GC_DELAY_S",
    "DeletedFilter",
    "EmptyKey",
    "EnumerationOrder",
    "GcWorker",
    "InsertQueueWorker",
    "MerkleEmpty",
    "MerkleIntermediate",
    "MerkleLeaf",
    "MerkleNode",
    "MerkleNodeKey",
    "MerkleUpdater",
    "MerkleWorker",
    "NoLayoutError",
    "Notifier",
    "PartitionKey",
    "ReplicatedTable",
    "SortKey",
    "StringKey",
    "SyncPartition",
    "SyncPartitions",
    "SyncWorker",
    "Table",
    "TableData",
    "TableEntry",
    "TableError",
    "TableFullReplication",
    "TableGc",
    "TableReplication",
    "TableSchema",
    "TableShardedReplication",
    "TableSyncer",
    "TableTimings",
    "UuidKey",
]
