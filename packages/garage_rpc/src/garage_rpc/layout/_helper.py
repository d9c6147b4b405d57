"""Queries on a layout history, and this node's tracker updates.

Garage: src/rpc/layout/helper.rs. A :class:`LayoutHelper` wraps a :class:`LayoutHistory`
after its housekeeping (retire old versions, clamp trackers) and caches what every request
asks: which nodes to write to (one node set per live version), which nodes to read from,
``ack_map_min`` and ``sync_map_min``. It is an immutable value: each update returns a new
helper, and the layout manager (the I/O side) swaps it in, saves and gossips the history.

**Which version to read from.** ``sync_map_min`` is the newest version whose nodes are
known to hold every acknowledged write (see
:meth:`LayoutHistory.calculate_sync_map_min_with_quorum`); reads use its node sets with the
read quorum. ``ack_map_min`` is the newest version that every node (gateways included) has
acknowledged: table syncs run for it.

**This node's trackers** (``update_trackers``, after every layout change):

1. ``ack_map[me]`` = the oldest live version that still has writes in flight on this node,
   else the current version (:meth:`LayoutHelper.ack_max`). The manager counts in-flight
   writes per version and passes the counts in.
2. ``sync_map[me] >= oldest live version``; raised further by :meth:`LayoutHelper.sync`
   when every table has finished a full sync for a version.
3. ``sync_ack_map[me] = sync_map_min`` (:meth:`LayoutHelper.sync_ack`).

In ``degraded`` and ``dangerous`` consistency modes there is no transition protocol: only
the current version is kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias, final

# Transitions always reason with the consistent-mode write quorum (Garage: helper.rs).
from garage_rpc.replication_mode import ReplicationParams
from garage_util.config import ConsistencyMode
from garage_util.data import Hash

if TYPE_CHECKING:
    from collections.abc import Mapping

    from garage_util.data import Uuid

    from ._history import LayoutHistory
    from ._trackers import UpdateTracker
    from ._version import LayoutVersion

__all__ = ["LayoutDigest", "LayoutHelper", "layout_digest"]

_TrackerName: TypeAlias = Literal["ack_map", "sync_map", "sync_ack_map"]


@dataclass(frozen=True, slots=True)
class LayoutDigest:
    """What a node tells its peers about its layout in every status exchange.

    A peer with a newer current version, another number of live versions or another
    staging hash has layout news (pull the whole history); one with only another trackers
    hash has tracker news (pull the trackers). Garage: ``RpcLayoutDigest``.

    Attributes:
        current_version: the current layout version number.
        active_versions: the number of live versions.
        trackers_hash: blake2sum of the trackers' encoding.
        staging_hash: blake2sum of the staged changes' encoding.
    """

    current_version: int
    active_versions: int
    trackers_hash: Hash
    staging_hash: Hash


def layout_digest(history: LayoutHistory) -> LayoutDigest:
    """The digest of ``history`` (see :class:`LayoutDigest`)."""
    return LayoutDigest(
        current_version=history.current.version,
        active_versions=len(history.versions),
        trackers_hash=history.trackers_hash(),
        staging_hash=history.staging_hash(),
    )


@final
class LayoutHelper:
    """A layout history after housekeeping, with the values requests need cached.

    Args:
        history: the layout history, as stored or received.
        consistency_mode: the configured consistency mode; outside ``consistent`` only
            the current version is kept.
    """

    __slots__ = (
        "_ack_map_min",
        "_all_nodes",
        "_all_storage_nodes",
        "_consistency_mode",
        "_digest",
        "_history",
        "_sync_map_min",
    )

    def __init__(
        self,
        history: LayoutHistory,
        *,
        consistency_mode: ConsistencyMode = ConsistencyMode.CONSISTENT,
    ) -> None:
        if consistency_mode is not ConsistencyMode.CONSISTENT:
            history = history.keep_current_version_only()
        history = history.cleanup_old_versions()
        all_nodes = history.all_nodes()
        all_storage_nodes = history.all_storage_nodes()
        history = history.clamp_update_trackers(all_nodes)
        self._history = history
        self._consistency_mode = consistency_mode
        self._all_nodes = all_nodes
        self._all_storage_nodes = all_storage_nodes
        self._ack_map_min = history.update_trackers.ack_map.min_among(all_nodes, history.min_stored)
        self._sync_map_min = history.calculate_sync_map_min_with_quorum(
            ReplicationParams(history.current.replication_factor).write_quorum, all_storage_nodes
        )
        self._digest = layout_digest(history)

    # ------------------------------------------------------------------ queries

    @property
    def history(self) -> LayoutHistory:
        """The history after housekeeping: what to save and gossip."""
        return self._history

    @property
    def current(self) -> LayoutVersion:
        """The current (newest) layout version."""
        return self._history.current

    @property
    def versions(self) -> tuple[LayoutVersion, ...]:
        """The live versions, oldest first."""
        return self._history.versions

    @property
    def all_nodes(self) -> tuple[Uuid, ...]:
        """Every node with a role in a live version (gateways included), sorted."""
        return self._all_nodes

    @property
    def all_storage_nodes(self) -> tuple[Uuid, ...]:
        """Every storage node of a live version, sorted."""
        return self._all_storage_nodes

    @property
    def ack_map_min(self) -> int:
        """The newest version every node of every live version has acknowledged."""
        return self._ack_map_min

    @property
    def sync_map_min(self) -> int:
        """The newest version that is safe to read from."""
        return self._sync_map_min

    def digest(self) -> LayoutDigest:
        """The digest sent in status exchanges."""
        return self._digest

    def storage_sets_of(self, position: Hash) -> tuple[tuple[Uuid, ...], ...]:
        """The node set of ``position`` in each live version, oldest first.

        A write succeeds only when it reached a write quorum in every set.
        """
        return tuple(v.nodes_of(position) for v in self._history.versions)

    def storage_nodes_of(self, position: Hash) -> tuple[Uuid, ...]:
        """The union of :meth:`storage_sets_of`, sorted."""
        return tuple(sorted({n for v in self._history.versions for n in v.nodes_of(position)}))

    def read_version(self) -> LayoutVersion:
        """The version reads go to: the one numbered ``sync_map_min`` (else the current)."""
        for v in self._history.versions:
            if v.version == self._sync_map_min:
                return v
        return self._history.current

    def read_nodes_of(self, position: Hash) -> tuple[Uuid, ...]:
        """The nodes to read ``position`` from, in the version given by ``sync_map_min``."""
        return self.read_version().nodes_of(position)

    def max_free_ack(self, in_flight: Mapping[int, int]) -> int:
        """The newest version this node can acknowledge: the oldest live version that
        still has writes in flight, else the current one.

        Args:
            in_flight: the number of writes in flight per layout version number (versions
                absent from the mapping have none).
        """
        for v in self._history.versions:
            if in_flight.get(v.version, 0) > 0:
                return v.version
        return self._history.current.version

    # ------------------------------------------------------------------ updates

    def with_history(self, history: LayoutHistory) -> LayoutHelper:
        """A helper for another history, with the same consistency mode."""
        return LayoutHelper(history, consistency_mode=self._consistency_mode)

    def merge(self, other: LayoutHistory) -> tuple[LayoutHelper, bool]:
        """Merges a history received from a peer.

        Returns:
            The new helper, and whether the history changed.
        """
        merged, changed = self._history.merge(other)
        return (self.with_history(merged), True) if changed else (self, False)

    def _set_tracker(
        self, which: _TrackerName, node: Uuid, version: int
    ) -> tuple[LayoutHelper, bool]:
        trackers = self._history.update_trackers
        tracker: UpdateTracker = getattr(trackers, which)
        raised = tracker.set_max(node, version)
        if raised is tracker:
            return self, False
        history = dataclasses.replace(
            self._history, update_trackers=dataclasses.replace(trackers, **{which: raised})
        )
        return self.with_history(history), True

    def ack_max(
        self, node: Uuid, *, in_flight: Mapping[int, int] | None = None
    ) -> tuple[LayoutHelper, bool]:
        """Raises ``ack_map[node]`` to :meth:`max_free_ack`.

        Returns:
            The new helper, and whether the trackers changed (then broadcast them).
        """
        return self._set_tracker("ack_map", node, self.max_free_ack(in_flight or {}))

    def sync(self, node: Uuid, version: int) -> tuple[LayoutHelper, bool]:
        """Records that ``node`` finished a full sync of every table for ``version``."""
        return self._set_tracker("sync_map", node, version)

    def sync_ack(self, node: Uuid) -> tuple[LayoutHelper, bool]:
        """Records that ``node`` has seen everyone synced up to ``sync_map_min``."""
        return self._set_tracker("sync_ack_map", node, self._sync_map_min)

    def update_trackers(
        self, node: Uuid, *, in_flight: Mapping[int, int] | None = None
    ) -> tuple[LayoutHelper, bool]:
        """Brings this node's three trackers up to date (module docstring, steps 1-3).

        Returns:
            The new helper, and whether the trackers changed.
        """
        helper, acked = self.ack_max(node, in_flight=in_flight)
        helper, synced = helper.sync(node, helper._history.min_stored)
        helper, sync_acked = helper.sync_ack(node)
        return helper, acked or synced or sync_acked
