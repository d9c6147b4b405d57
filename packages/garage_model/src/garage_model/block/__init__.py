"""Blocks: the local block store, and the block manager that moves blocks between nodes.

Garage: src/block/. The local half is synchronous and blocking (file I/O, hashing, zstd;
async callers run it with ``anyio.to_thread.run_sync``): :class:`BlockStore` reads, writes
and deletes block files, :func:`load_data_layout` spreads them over several data
directories, and :class:`BlockRc` keeps the ``block_local_rc`` counts.

The networked half is async: :class:`BlockManager` puts blocks on their storage nodes
(write quorum, attached streams, RAM budget), gets them back (read nodes in turn), serves
the block endpoints and keeps refcounts; :class:`BlockResyncManager` and
:class:`ResyncWorker` fetch missing and delete unneeded blocks; :class:`ScrubWorker`,
:class:`RepairBlocksWorker` and :class:`RebalanceWorker` walk the store.
"""

from ._data import DataBlock as DataBlock
from ._data import DataBlockHeader as DataBlockHeader
from ._errors import BlockError as BlockError
from ._errors import CorruptBlockError as CorruptBlockError
from ._errors import DataLayoutError as DataLayoutError
from ._errors import MissingBlockError as MissingBlockError
from ._errors import NoSuchBlockError as NoSuchBlockError
from ._layout import DATA_LAYOUT_FILE as DATA_LAYOUT_FILE
from ._layout import DRIVE_NPART as DRIVE_NPART
from ._layout import MARKER_FILE as MARKER_FILE
from ._layout import DataLayout as DataLayout
from ._layout import LayoutDir as LayoutDir
from ._layout import load_data_layout as load_data_layout
from ._manager import DEFAULT_RAM_BUFFER_MAX as DEFAULT_RAM_BUFFER_MAX
from ._manager import GET_BLOCK as GET_BLOCK
from ._manager import INLINE_THRESHOLD as INLINE_THRESHOLD
from ._manager import NEED_BLOCK_QUERY as NEED_BLOCK_QUERY
from ._manager import PUT_BLOCK as PUT_BLOCK
from ._manager import BlockManager as BlockManager
from ._manager import BlockStream as BlockStream
from ._manager import GetBlock as GetBlock
from ._manager import NeedBlockQuery as NeedBlockQuery
from ._manager import NeedBlockReply as NeedBlockReply
from ._manager import OrderTag as OrderTag
from ._manager import PutBlock as PutBlock
from ._manager import block_read_nodes_of as block_read_nodes_of
from ._rc import BLOCK_GC_DELAY_MS as BLOCK_GC_DELAY_MS
from ._rc import BLOCK_RC_TREE as BLOCK_RC_TREE
from ._rc import BlockRc as BlockRc
from ._rc import RcChange as RcChange
from ._rc import RcEntry as RcEntry
from ._repair import INITIAL_SCRUB_TRANQUILITY as INITIAL_SCRUB_TRANQUILITY
from ._repair import PROGRESS_FP as PROGRESS_FP
from ._repair import SCRUB_CHECKPOINT_INTERVAL_MS as SCRUB_CHECKPOINT_INTERVAL_MS
from ._repair import SCRUB_INFO_FILE as SCRUB_INFO_FILE
from ._repair import SCRUB_INTERVAL_MS as SCRUB_INTERVAL_MS
from ._repair import SCRUB_JITTER_MS as SCRUB_JITTER_MS
from ._repair import SCRUB_PAUSE_MS as SCRUB_PAUSE_MS
from ._repair import BlockStoreIterator as BlockStoreIterator
from ._repair import BsiTodo as BsiTodo
from ._repair import RebalanceWorker as RebalanceWorker
from ._repair import RepairBlocksWorker as RepairBlocksWorker
from ._repair import ScrubCommand as ScrubCommand
from ._repair import ScrubWorker as ScrubWorker
from ._repair import ScrubWorkerPersisted as ScrubWorkerPersisted
from ._resync import INITIAL_RESYNC_TRANQUILITY as INITIAL_RESYNC_TRANQUILITY
from ._resync import MAX_RESYNC_WORKERS as MAX_RESYNC_WORKERS
from ._resync import RESYNC_CFG_FILE as RESYNC_CFG_FILE
from ._resync import RESYNC_ERRORS_TREE as RESYNC_ERRORS_TREE
from ._resync import RESYNC_MAX_IDLE_S as RESYNC_MAX_IDLE_S
from ._resync import RESYNC_QUEUE_TREE as RESYNC_QUEUE_TREE
from ._resync import RESYNC_RETRY_DELAY_MS as RESYNC_RETRY_DELAY_MS
from ._resync import RESYNC_RETRY_MAX_BACKOFF_POWER as RESYNC_RETRY_MAX_BACKOFF_POWER
from ._resync import BlockResyncManager as BlockResyncManager
from ._resync import ErrorCounter as ErrorCounter
from ._resync import ResyncErrorInfo as ResyncErrorInfo
from ._resync import ResyncIterResult as ResyncIterResult
from ._resync import ResyncPersistedConfig as ResyncPersistedConfig
from ._resync import ResyncWorker as ResyncWorker
from ._resync import retry_delay_ms as retry_delay_ms
from ._store import BlockPath as BlockPath
from ._store import BlockStore as BlockStore

__all__ = [
    "BLOCK_GC_DELAY_MS",
    "BLOCK_RC_TREE",
    "DATA_LAYOUT_FILE",
    "DEFAULT_RAM_BUFFER_MAX",
    "DRIVE_NPART",
    "GET_BLOCK",
    "INITIAL_RESYNC_TRANQUILITY",
    "INITIAL_SCRUB_TRANQUILITY",
    "INLINE_THRESHOLD",
    "MARKER_FILE",
    "MAX_RESYNC_WORKERS",
    "NEED_BLOCK_QUERY",
    "PROGRESS_FP",
    "PUT_BLOCK",
    "RESYNC_CFG_FILE",
    "RESYNC_ERRORS_TREE",
    "RESYNC_MAX_IDLE_S",
    "RESYNC_QUEUE_TREE",
    "RESYNC_RETRY_DELAY_MS",
    "RESYNC_RETRY_MAX_BACKOFF_POWER",
    "SCRUB_CHECKPOINT_INTERVAL_MS",
    "SCRUB_INFO_FILE",
    "SCRUB_INTERVAL_MS",
    "SCRUB_JITTER_MS",
    "SCRUB_PAUSE_MS",
    "BlockError",
    "BlockManager",
    "BlockPath",
    "BlockRc",
    "BlockResyncManager",
    "BlockStore",
    "BlockStoreIterator",
    "BlockStream",
    "BsiTodo",
    "CorruptBlockError",
    "DataBlock",
    "DataBlockHeader",
    "DataLayout",
    "DataLayoutError",
    "ErrorCounter",
    "GetBlock",
    "LayoutDir",
    "MissingBlockError",
    "NeedBlockQuery",
    "NeedBlockReply",
    "NoSuchBlockError",
    "OrderTag",
    "PutBlock",
    "RcChange",
    "RcEntry",
    "RebalanceWorker",
    "RepairBlocksWorker",
    "ResyncErrorInfo",
    "ResyncIterResult",
    "ResyncPersistedConfig",
    "ResyncWorker",
    "ScrubCommand",
    "ScrubWorker",
    "ScrubWorkerPersisted",
    "block_read_nodes_of",
    "load_data_layout",
    "retry_delay_ms",
]
