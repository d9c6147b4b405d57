"""The layout history: live versions, retired versions, trackers and staged changes.

Garage: src/rpc/layout/history.rs (v1 layout history) and doc/book/design (layout
transitions). Theory of operation:

**Live versions.** Applying a layout does not switch the cluster over at once: data has to
move first. So the history keeps every *live* version, oldest first, from the oldest one
that someone may still need to the current one (the newest). Writes go to the node sets
of every live version; reads go to the version given by ``sync_map_min`` (see
:mod:`._helper`). Once every node of the current version has acknowledged that all nodes
have synced past an old version (``sync_ack_map``), that version is retired to
``old_versions`` (at most ``OLD_VERSION_COUNT``, kept for the block manager to find blocks
that have not moved yet).

**Merge.** Histories gossip between nodes. A history is a view of one chain of versions
(one version per number, as long as nobody applies the same number twice) and a
*watermark*, the oldest live version. Merging takes the union of the versions both sides
know, the higher watermark, the per-node maximum of the trackers, and the CRDT merge of
the staged changes. This is Garage's merge (take version ``current + 1`` when the other
side has it; replace everything when our current version is older than everything the
other side still keeps), phrased as a join: for histories of one chain it is commutative,
associative and idempotent, which the tests check. Two different versions with one
number cannot be reconciled: ours is kept and an error is logged, as in Garage.

Merging never prunes: :meth:`LayoutHistory.cleanup_old_versions` does, and
:class:`~garage_rpc.layout.LayoutHelper` runs it whenever the history changes (pruning
depends on the current version's node set, so doing it inside merge would make the merge
order matter).

**Staging** is a last-writer-wins register of :class:`LayoutStaging`. Staging a change
edits the value in place (same timestamp, merged with concurrent edits); applying or
reverting replaces it with a newer timestamp, which discards edits made concurrently
elsewhere, as in Garage.

Invariants (checked on construction, hence on decoding):
    - ``versions`` is non-empty, numbered consecutively;
    - ``old_versions`` are older than every live version, in increasing order, at most
      ``OLD_VERSION_COUNT`` of them.
"""

# The annotations below must resolve at runtime (``typing.get_type_hints``, which
# garage_util.encode uses on dataclasses), so the names they use are imported for real.
# ruff: noqa: TC001, TC003

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Final

from garage_util.crdt import Lww, LwwMap
from garage_util.data import Hash, Uuid, blake2sum
from garage_util.encode import Versioned, pack

from ._errors import InvalidLayoutError, LayoutVersionError
from ._roles import NB_PARTITIONS, LayoutParameters, LayoutStaging, NodeRole
from ._summary import LayoutSummary
from ._trackers import UpdateTrackers
from ._version import LayoutVersion

__all__ = ["OLD_VERSION_COUNT", "LayoutHistory"]

logger = logging.getLogger(__name__)

#: Retired versions kept in ``old_versions``: Garage keeps 5, enough for the block
#: manager to find blocks through a few quick successive layout changes.
OLD_VERSION_COUNT: Final = 5


@dataclass(frozen=True, slots=True)
class LayoutHistory(Versioned):
    """The layout history of the cluster (see the module docstring).

    Persisted (``cluster_layout``) and exchanged between nodes with
    :func:`~garage_util.encode.encode_versioned`. Immutable: every operation returns a new
    history.

    Attributes:
        versions: the live versions, oldest first; the last one is the current version.
        old_versions: retired versions, oldest first, at most ``OLD_VERSION_COUNT``.
        update_trackers: the ack/sync/sync-ack trackers.
        staging: the staged changes for the next version.

    Raises:
        ValueError: on construction from versions that break the invariants.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G01lh"

    versions: tuple[LayoutVersion, ...]
    old_versions: tuple[LayoutVersion, ...]
    update_trackers: UpdateTrackers
    staging: Lww[LayoutStaging]

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError("a layout history has at least one live version")
        numbers = [v.version for v in self.versions]
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            raise ValueError(f"live layout versions must be consecutive, got {numbers}")
        old = [v.version for v in self.old_versions]
        if old != sorted(set(old)) or (old and old[-1] >= numbers[0]):
            raise ValueError("old layout versions must be increasing and older than live ones")
        if len(old) > OLD_VERSION_COUNT:
            raise ValueError(f"at most {OLD_VERSION_COUNT} old layout versions are kept")

    @classmethod
    def new(cls, replication_factor: int) -> LayoutHistory:
        """The history of a new cluster: the empty version 0 and nothing staged."""
        version = LayoutVersion.new(replication_factor)
        staging = LayoutStaging.empty(version.parameters)
        return cls((version,), (), UpdateTrackers(), Lww(0, staging))

    # ------------------------------------------------------------------ queries

    @property
    def current(self) -> LayoutVersion:
        """The newest version."""
        return self.versions[-1]

    @property
    def min_stored(self) -> int:
        """The number of the oldest live version."""
        return self.versions[0].version

    def all_nodes(self) -> tuple[Uuid, ...]:
        """Every node with a role (gateways included) in a live version, sorted."""
        return tuple(sorted({n for v in self.versions for n in v.all_nodes}))

    def all_storage_nodes(self) -> tuple[Uuid, ...]:
        """Every storage node of a live version, sorted."""
        return tuple(sorted({n for v in self.versions for n in v.storage_nodes}))

    def trackers_hash(self) -> Hash:
        """The blake2sum of the trackers' encoding (exchanged in node status)."""
        return blake2sum(pack(self.update_trackers))

    def staging_hash(self) -> Hash:
        """The blake2sum of the staged changes' encoding (exchanged in node status)."""
        return blake2sum(pack(self.staging))

    def check(self) -> None:
        """Checks the current version's invariants (Garage checks only that one).

        Raises:
            InvalidLayoutError: naming the broken invariant.
        """
        self.current.check()

    # ------------------------------------------------------------------ staging

    @property
    def staged(self) -> LayoutStaging:
        """The staged changes."""
        return self.staging.value

    @property
    def has_staged_changes(self) -> bool:
        """True when roles or parameters differ from the current version's."""
        staged = self.staging.value
        return bool(len(staged.roles)) or staged.parameters.value != self.current.parameters

    def _with_staged(self, staged: LayoutStaging) -> LayoutHistory:
        # An in-place edit of the register's value, at its timestamp (Garage's `get_mut`):
        # concurrent edits merge with it instead of replacing it.
        return dataclasses.replace(self, staging=Lww(self.staging.ts, staged))

    def stage_role(self, node: Uuid, role: NodeRole, now_ms: int) -> LayoutHistory:
        """Stages a new role for ``node`` (``garage layout assign``)."""
        return self._with_staged(
            self.staged.with_role(node, role, now_ms, current_roles=self.current.roles)
        )

    def stage_removal(self, node: Uuid, now_ms: int) -> LayoutHistory:
        """Stages the removal of ``node`` from the layout (``garage layout remove``)."""
        return self._with_staged(
            self.staged.with_role(node, None, now_ms, current_roles=self.current.roles)
        )

    def stage_parameters(self, parameters: LayoutParameters, now_ms: int) -> LayoutHistory:
        """Stages new assignment parameters (``garage layout config``)."""
        return self._with_staged(self.staged.with_parameters(parameters, now_ms))

    def revert_staged_changes(self, now_ms: int) -> LayoutHistory:
        """Drops every staged change (``garage layout revert``)."""
        staged = self.staged
        reset = LayoutStaging(staged.parameters.update(self.current.parameters, now_ms), LwwMap())
        return dataclasses.replace(self, staging=self.staging.update(reset, now_ms))

    def calculate_next_version(self) -> tuple[LayoutVersion, LayoutSummary]:
        """The version that applying the staged changes would create (a preview).

        CPU-bound, like :meth:`apply_staged_changes`.

        Raises:
            InvalidLayoutError: when the staged layout cannot be assigned.
        """
        return self.current.calculate_next_version(self.staged)

    def apply_staged_changes(
        self, version: int, now_ms: int
    ) -> tuple[LayoutHistory, LayoutSummary]:
        """Applies the staged changes as version ``version`` (``garage layout apply``).

        The new version is appended to the live versions (the previous ones stay live until
        the data has moved), retired versions are pruned, and the staged roles are reset
        (the staged parameters stay, as they are now the current ones). CPU-bound: async
        callers run it in a worker thread.

        Args:
            version: the version number the operator confirmed; must be current + 1.
            now_ms: the current time, for the staging register's timestamp.

        Returns:
            The new history, and the statistics of the new assignment.

        Raises:
            LayoutVersionError: when ``version`` is not current + 1.
            InvalidLayoutError: when the staged layout cannot be assigned.
        """
        expected = self.current.version + 1
        if version != expected:
            raise LayoutVersionError(expected, version)
        new_version, summary = self.calculate_next_version()
        reset = LayoutStaging(self.staged.parameters, LwwMap())
        history = dataclasses.replace(
            self,
            versions=(*self.versions, new_version),
            staging=self.staging.update(reset, now_ms),
        )
        return history.cleanup_old_versions(), summary

    # ------------------------------------------------------------------ merge

    def merge(self, other: LayoutHistory) -> tuple[LayoutHistory, bool]:
        """Merges a history received from another node (see the module docstring).

        Returns:
            The merged history, and whether it differs from ``self``.
        """
        known = {v.version: v for v in (*self.old_versions, *self.versions)}
        for theirs in (*other.old_versions, *other.versions):
            ours = known.setdefault(theirs.version, theirs)
            if ours is not theirs and ours != theirs:
                logger.error(
                    "Inconsistent layout histories: different layout compositions for "
                    "version %d. Your cluster will be broken as long as this layout version "
                    "is not replaced.",
                    theirs.version,
                )
        watermark = max(self.min_stored, other.min_stored)
        merged = dataclasses.replace(
            self,
            versions=tuple(known[n] for n in sorted(known) if n >= watermark),
            old_versions=_old(known[n] for n in sorted(known) if n < watermark),
            update_trackers=self.update_trackers.merge(other.update_trackers),
            staging=self.staging.merge(other.staging),
        )
        if merged == self:
            return self, False
        return merged, True

    # ------------------------------------------------------------------ housekeeping

    def keep_current_version_only(self) -> LayoutHistory:
        """Retires every version but the current one (``degraded``/``dangerous`` modes,
        which have no transition protocol)."""
        if len(self.versions) == 1:
            return self
        return dataclasses.replace(
            self,
            versions=self.versions[-1:],
            old_versions=_old((*self.old_versions, *self.versions[:-1])),
        )

    def cleanup_old_versions(self) -> LayoutHistory:
        """Drops invalid leading versions and retires versions nobody reads any more.

        A leading version that fails :meth:`LayoutVersion.check` (the empty version 0, a
        corrupt one) is dropped once the current version is valid. A version is retired
        when every node of the current version has acknowledged (``sync_ack_map``) that all
        nodes synced a newer one.
        """
        versions = list(self.versions)
        if len(versions) > 1 and _is_valid(versions[-1]):
            while len(versions) > 1 and not _is_valid(versions[0]):
                logger.info("Layout history: pruning old invalid version %d", versions[0].version)
                versions.pop(0)
        sync_ack_min = self.update_trackers.sync_ack_map.min_among(
            versions[-1].node_id_vec, versions[0].version
        )
        retired: list[LayoutVersion] = []
        while len(versions) > 1 and versions[0].version < sync_ack_min:
            logger.info("Layout history: moving version %d to old_versions", versions[0].version)
            retired.append(versions.pop(0))
        if len(versions) == len(self.versions):
            return self
        return dataclasses.replace(
            self, versions=tuple(versions), old_versions=_old((*self.old_versions, *retired))
        )

    def clamp_update_trackers(self, nodes: Iterable[Uuid]) -> LayoutHistory:
        """Raises every tracker of ``nodes`` to at least the oldest live version.

        Every node trivially knows and has synced the oldest live version; writing it down
        lets minimums over the trackers move on when a node never reported anything.
        """
        floor = self.min_stored
        t = self.update_trackers
        ack, sync, sync_ack = t.ack_map, t.sync_map, t.sync_ack_map
        for node in nodes:
            ack = ack.set_max(node, floor)
            sync = sync.set_max(node, floor)
            sync_ack = sync_ack.set_max(node, floor)
        trackers = UpdateTrackers(ack, sync, sync_ack)
        if trackers == t:
            return self
        return dataclasses.replace(self, update_trackers=trackers)

    def calculate_sync_map_min_with_quorum(
        self, write_quorum: int, storage_nodes: Iterable[Uuid]
    ) -> int:
        """The newest version it is safe to read from (read-after-write consistency).

        With one live version, that version. If writes need every replica
        (``write_quorum == rf``), the smallest ``sync_map`` of all storage nodes. Otherwise,
        for each partition and each non-current live version, the value that a write
        quorum of that version's nodes has reached (the ``write_quorum``-th highest
        ``sync_map``): a write acknowledged by a quorum of old nodes reached at least one
        synced node. The result is the minimum of those.

        Args:
            write_quorum: the write quorum of the replication mode (consistent mode).
            storage_nodes: the storage nodes of all live versions.
        """
        current = self.current
        if len(self.versions) == 1:
            return current.version
        sync_map = self.update_trackers.sync_map
        floor = self.min_stored
        global_min = sync_map.min_among(storage_nodes, floor)
        if write_quorum >= current.replication_factor:
            return global_min
        result = current.version
        seen: set[tuple[Uuid, ...]] = set()
        for p in range(NB_PARTITIONS):
            for version in self.versions[:-1]:
                nodes = tuple(sorted(version.partition_nodes(p)))
                if not nodes or nodes in seen:
                    continue
                seen.add(nodes)
                values = sorted(sync_map.get(n, floor) for n in nodes)
                result = min(result, values[max(0, len(values) - write_quorum)])
                if result <= global_min:
                    return global_min  # the worst case: no need to look further
        return result


# Cached: the helper is rebuilt on every tracker update, and re-checking the same two
# versions (a full consistency check, ~10 ms for 50 nodes) each time would dominate.
@functools.lru_cache(maxsize=16)
def _is_valid(version: LayoutVersion) -> bool:
    try:
        version.check()
    except InvalidLayoutError:
        return False
    return True


def _old(versions: Iterable[LayoutVersion]) -> tuple[LayoutVersion, ...]:
    """The retired versions to keep: the newest ``OLD_VERSION_COUNT`` with an assignment
    (an empty version 0 locates no block)."""
    kept = [v for v in versions if v.has_assignment]
    return tuple(kept[-OLD_VERSION_COUNT:])
