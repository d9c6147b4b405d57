"""The cluster layout: which nodes store which partitions (Garage: src/rpc/layout/).

Pure and deterministic: no I/O, no clock (timestamps are passed in), no randomness. The
layout manager of the node (I/O: persistence, gossip) drives these values.

- :class:`NodeRole`, :class:`LayoutParameters` and :class:`LayoutStaging`: what the
  operator stages (``garage layout assign/remove/config``).
- :class:`LayoutVersion`: one applied layout, with its partition assignment (256
  partitions, each on ``rf`` storage nodes over at least ``zone_redundancy`` zones, sized
  to the capacities and moving as little data as possible from the previous version).
- :class:`LayoutHistory`: live and retired versions, update trackers, staged changes; a
  mergeable value gossiped between nodes.
- :class:`LayoutHelper`: the queries requests need (node sets to write to and read from).
- :class:`LayoutSummary` and :func:`format_summary`: the report of ``garage layout show``.

Computing an assignment is CPU-bound (about 0.1 s for 50 nodes, 0.4 s for 250): async code
calls ``apply_staged_changes``/``calculate_next_version`` through
``anyio.to_thread.run_sync``.
"""

from ._errors import InvalidLayoutError as InvalidLayoutError
from ._errors import LayoutError as LayoutError
from ._errors import LayoutVersionError as LayoutVersionError
from ._helper import LayoutDigest as LayoutDigest
from ._helper import LayoutHelper as LayoutHelper
from ._helper import layout_digest as layout_digest
from ._history import OLD_VERSION_COUNT as OLD_VERSION_COUNT
from ._history import LayoutHistory as LayoutHistory
from ._roles import MAX_NODE_NUMBER as MAX_NODE_NUMBER
from ._roles import NB_PARTITIONS as NB_PARTITIONS
from ._roles import PARTITION_BITS as PARTITION_BITS
from ._roles import LayoutParameters as LayoutParameters
from ._roles import LayoutStaging as LayoutStaging
from ._roles import NodeRole as NodeRole
from ._roles import NodeRoleV as NodeRoleV
from ._roles import ZoneRedundancy as ZoneRedundancy
from ._roles import partition_first_hash as partition_first_hash
from ._roles import partition_of as partition_of
from ._summary import LayoutSummary as LayoutSummary
from ._summary import NodeSummary as NodeSummary
from ._summary import ZoneSummary as ZoneSummary
from ._summary import format_bytes as format_bytes
from ._summary import format_summary as format_summary
from ._trackers import UpdateTracker as UpdateTracker
from ._trackers import UpdateTrackers as UpdateTrackers
from ._version import LayoutVersion as LayoutVersion

__all__ = [
    "MAX_NODE_NUMBER",
    "NB_PARTITIONS",
    "OLD_VERSION_COUNT",
    "PARTITION_BITS",
    "InvalidLayoutError",
    "LayoutDigest",
    "LayoutError",
    "LayoutHelper",
    "LayoutHistory",
    "LayoutParameters",
    "LayoutStaging",
    "LayoutSummary",
    "LayoutVersion",
    "LayoutVersionError",
    "NodeRole",
    "NodeRoleV",
    "NodeSummary",
    "UpdateTracker",
    "UpdateTrackers",
    "ZoneRedundancy",
    "ZoneSummary",
    "format_bytes",
    "format_summary",
    "layout_digest",
    "partition_first_hash",
    "partition_of",
]
