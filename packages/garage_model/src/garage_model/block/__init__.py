"""The local block store: block files on this node's data directories, and their refcounts.

Garage: src/block/ (block.rs, layout.rs, rc.rs and the local half of manager.rs). This
subpackage has no networking: :class:`BlockStore` reads, writes and deletes block files,
:func:`load_data_layout` spreads them over several data directories, and :class:`BlockRc`
keeps the ``block_local_rc`` counts.

Everything here is synchronous and blocking (file I/O, hashing, zstd): async callers run
it with ``anyio.to_thread.run_sync``.
"""

from ._data import DataBlock as DataBlock
from ._data import DataBlockHeader as DataBlockHeader
from ._errors import BlockError as BlockError
from ._errors import CorruptBlockError as CorruptBlockError
from ._errors import DataLayoutError as DataLayoutError
from ._errors import NoSuchBlockError as NoSuchBlockError
from ._layout import DATA_LAYOUT_FILE as DATA_LAYOUT_FILE
from ._layout import DRIVE_NPART as DRIVE_NPART
from ._layout import MARKER_FILE as MARKER_FILE
from ._layout import DataLayout as DataLayout
from ._layout import LayoutDir as LayoutDir
from ._layout import load_data_layout as load_data_layout
from ._rc import BLOCK_GC_DELAY_MS as BLOCK_GC_DELAY_MS
from ._rc import BLOCK_RC_TREE as BLOCK_RC_TREE
from ._rc import BlockRc as BlockRc
from ._rc import RcChange as RcChange
from ._rc import RcEntry as RcEntry
from ._store import BlockPath as BlockPath
from ._store import BlockStore as BlockStore

__all__ = [
    "BLOCK_GC_DELAY_MS",
    "BLOCK_RC_TREE",
    "DATA_LAYOUT_FILE",
    "DRIVE_NPART",
    "MARKER_FILE",
    "BlockError",
    "BlockPath",
    "BlockRc",
    "BlockStore",
    "CorruptBlockError",
    "DataBlock",
    "DataBlockHeader",
    "DataLayout",
    "DataLayoutError",
    "LayoutDir",
    "NoSuchBlockError",
    "RcChange",
    "RcEntry",
    "load_data_layout",
]
