"""Update trackers: which layout version each node has acknowledged, synced, seen synced.

Garage: ``UpdateTracker``/``UpdateTrackers`` in src/rpc/layout/mod.rs. While a layout
transition is in progress (several live versions, see :mod:`._history`), nodes publish
three per-node counters, all monotone:

- ``ack_map[n] = v``: every write still in flight on node ``n`` already writes to the node
  sets of version ``v`` (``n`` "knows" ``v``);
- ``sync_map[n] = v``: node ``n`` has finished a full anti-entropy pass of all tables for
  version ``v``: the data it held for older versions has been pushed to ``v``'s nodes;
- ``sync_ack_map[n] = v``: node ``n`` has seen that enough nodes reached ``sync_map >= v``
  to read from version ``v``, and so no longer reads from older versions.

Each tracker is a CRDT whose merge is the per-node maximum (a product of max-semilattices),
so gossip in any order converges. A missing entry reads as a caller-given default, the
oldest live version (every node is trivially synced up to it).
"""

# The annotations below must resolve at runtime (``typing.get_type_hints``, which
# garage_util.encode uses on dataclasses), so the names they use are imported for real.

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from garage_util.crdt import Crdt, CrdtStruct
from garage_util.data import Uuid

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["UpdateTracker", "UpdateTrackers"]


@dataclass(frozen=True, slots=True)
class UpdateTracker(Crdt):
    """A map from node id to layout version, merged by per-node maximum.

    Attributes:
        vals: ``(node, version)`` entries sorted by node id, ids unique.

    Raises:
        ValueError: on unsorted or duplicate ids, or a negative version.
    """

    vals: tuple[tuple[Uuid, int], ...] = ()

    def __post_init__(self) -> None:
        for i in range(1, len(self.vals)):
            if not self.vals[i - 1][0] < self.vals[i][0]:
                raise ValueError("UpdateTracker entries must be sorted by node id, ids unique")
        if any(v < 0 for _, v in self.vals):
            raise ValueError("UpdateTracker versions are >= 0")

    @classmethod
    def from_items(cls, items: dict[Uuid, int]) -> UpdateTracker:
        """Builds a tracker from ``{node: version}``."""
        return cls(tuple(sorted(items.items())))

    def get(self, node: Uuid, default: int) -> int:
        """The version of ``node``, or ``default`` when the tracker has no entry for it."""
        i = bisect.bisect_left(self.vals, node, key=_node)
        if i < len(self.vals) and self.vals[i][0] == node:
            return self.vals[i][1]
        return default

    def set_max(self, node: Uuid, version: int) -> Self:
        """This tracker with ``node`` raised to at least ``version`` (never lowered)."""
        if self.get(node, -1) >= version:
            return self
        return self.merge(type(self)(((node, version),)))

    def min_among(self, nodes: Iterable[Uuid], default: int) -> int:
        """The smallest version among ``nodes`` (missing ones count as ``default``);
        ``default`` when ``nodes`` is empty."""
        return min((self.get(n, default) for n in nodes), default=default)

    def merge(self, other: Self) -> Self:
        if not other.vals or self.vals == other.vals:
            return self
        if not self.vals:
            return other
        merged = dict(self.vals)
        for node, version in other.vals:
            if version > merged.get(node, -1):
                merged[node] = version
        return type(self)(tuple(sorted(merged.items())))


@dataclass(frozen=True, slots=True)
class UpdateTrackers(CrdtStruct):
    """The three trackers of a layout history (see the module docstring)."""

    ack_map: UpdateTracker = UpdateTracker()
    sync_map: UpdateTracker = UpdateTracker()
    sync_ack_map: UpdateTracker = UpdateTracker()


def _node(entry: tuple[Uuid, int]) -> Uuid:
    return entry[0]
