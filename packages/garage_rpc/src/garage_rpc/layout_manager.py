"""The node's cluster layout: persisted, merged with what peers send, spread to them.

Garage: src/rpc/layout/manager.rs. The layout history is a CRDT-like value
(:meth:`LayoutHistory.merge`), so spreading it needs no coordination:

- **Persistence**: ``<metadata_dir>/cluster_layout`` holds the versioned encoding, written
  atomically (temporary file, fsync, rename) on every change, so a crash leaves the old or
  the new layout, never a torn one. A stored layout whose replication factor differs from
  the configuration refuses to load: mixing factors would corrupt the data placement.
- **Push**: a local change (``garage layout apply``, a received newer layout) is sent to
  every connected peer (``AdvertiseClusterLayout``).
- **Pull**: each status exchange carries the sender's :class:`LayoutDigest`; a node whose
  digest differs from ours is asked for its history (``PullClusterLayout``) and the answer
  is merged. Both sides do this, so two nodes converge whichever is ahead.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

import anyio

from garage_util.config import ConsistencyMode
from garage_util.encode import decode_versioned, encode_versioned
from garage_util.errors import GarageError
from garage_util.persist import write_atomically

from .layout import LayoutDigest, LayoutHelper, LayoutHistory
from .net import PRIO_HIGH, Endpoint, NetApp, RpcError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from anyio.abc import ByteReceiveStream

    from garage_util.data import FixedBytes32

    from .net import AttachedStream, NodeId

__all__ = [
    "ADVERTISE_LAYOUT",
    "LAYOUT_FILE",
    "PULL_LAYOUT",
    "LayoutManager",
    "LayoutMismatchError",
    "PullLayout",
]

logger = logging.getLogger(__name__)

#: File of the layout history in metadata_dir (Garage's name).
LAYOUT_FILE: Final = "cluster_layout"
#: A layout push or pull is small and urgent, but a dead peer must not hold it forever.
_GOSSIP_TIMEOUT_S: Final = 10.0


class LayoutMismatchError(GarageError):
    """Raised at startup when the stored layout's replication factor is not the configured one."""


@dataclass(frozen=True, slots=True)
class PullLayout:
    """Request of ``PullClusterLayout`` (no fields)."""


PULL_LAYOUT = Endpoint("garage_rpc/layout.rs/PullClusterLayout", PullLayout, LayoutHistory)
ADVERTISE_LAYOUT = Endpoint(
    "garage_rpc/layout.rs/AdvertiseClusterLayout", LayoutHistory, type(None)
)


@final
class LayoutManager:
    """Holds this node's layout history and keeps it in step with its peers.

    Args:
        netapp: the transport (the layout endpoints are registered on it).
        replication_factor: the configured factor.
        consistency_mode: the configured mode (outside ``consistent``, only the current
            layout version is kept).
        metadata_dir: where ``cluster_layout`` lives; None keeps the layout in memory only.

    Raises:
        LayoutMismatchError: when the stored layout has another replication factor.
    """

    __slots__ = (
        "_changed",
        "_helper",
        "_in_flight",
        "_mode",
        "_netapp",
        "_path",
        "_save_lock",
        "_table_sync",
    )

    def __init__(
        self,
        netapp: NetApp,
        *,
        replication_factor: int,
        consistency_mode: ConsistencyMode = ConsistencyMode.CONSISTENT,
        metadata_dir: Path | None = None,
    ) -> None:
        self._netapp = netapp
        self._mode = consistency_mode
        self._path = None if metadata_dir is None else Path(metadata_dir) / LAYOUT_FILE
        history = self._load(replication_factor)
        self._helper = LayoutHelper(history, consistency_mode=consistency_mode)
        self._changed = anyio.Event()
        self._table_sync: dict[str, int] = {}
        self._save_lock = anyio.Lock()
        self._in_flight: dict[int, int] = {}
        netapp.endpoint(PULL_LAYOUT, self._handle_pull)
        netapp.endpoint(ADVERTISE_LAYOUT, self._handle_advertise)

    # ------------------------------------------------------------------ queries

    @property
    def helper(self) -> LayoutHelper:
        """The current layout and the queries requests need (an immutable snapshot)."""
        return self._helper

    @property
    def history(self) -> LayoutHistory:
        """The current layout history (an immutable value)."""
        return self._helper.history

    def digest(self) -> LayoutDigest:
        """What the status exchange tells peers about our layout."""
        return self._helper.digest()

    async def wait_changed(self) -> None:
        """Returns at the next change of the layout history."""
        await self._changed.wait()

    # ------------------------------------------------------------------ changes

    async def update(self, history: LayoutHistory, *, push_to: Iterable[FixedBytes32] = ()) -> bool:
        """Merges ``history`` into ours; if that changed anything, saves it and pushes it.

        Args:
            history: a history from the operator (staged/applied) or from a peer.
            push_to: peers to advertise the new history to.

        Returns:
            True when our history changed.
        """
        merged, changed = self._helper.merge(history)
        if not changed:
            return False
        self._helper = merged
        # Saves run one at a time and always write the latest history, so that concurrent
        # updates (a pull racing an advertisement) never leave an older one on disk.
        async with self._save_lock:
            await anyio.to_thread.run_sync(self._save, self._helper.history)
        self._changed.set()
        self._changed = anyio.Event()
        logger.info("cluster layout is now at version %d", merged.current.version)
        await self.push(push_to)
        return True

    async def push(self, peers: Iterable[FixedBytes32]) -> None:
        """Advertises our layout history to ``peers`` (failures are logged, not raised)."""
        history = self.history
        async with anyio.create_task_group() as tg:
            for peer in peers:
                if peer != self._netapp.id:
                    tg.start_soon(self._push, peer, history)

    @contextlib.contextmanager
    def write_in_flight(self) -> Iterator[LayoutHelper]:
        """Marks a write in flight under the current layout version, for its duration.

        Compute the write's node sets from the yielded helper (or right away, before any
        await). While it runs, this node does not acknowledge newer versions
        (:meth:`ack_versions`): a version is acknowledged only once no write still targets
        only the older node sets, so that when every node has acknowledged a version, every
        later write reaches its nodes (Garage: the layout version write lock).
        """
        helper = self._helper
        version = helper.current.version
        self._in_flight[version] = self._in_flight.get(version, 0) + 1
        try:
            yield helper
        finally:
            left = self._in_flight[version] - 1
            if left:
                self._in_flight[version] = left
            else:
                del self._in_flight[version]

    async def ack_versions(
        self, *, in_flight: Mapping[int, int] | None = None, push_to: Iterable[FixedBytes32] = ()
    ) -> bool:
        """Acknowledges the newest layout version we may move to (``ack_map``), and the
        sync progress we saw (``sync_ack_map``); saves and pushes the trackers if changed.

        Args:
            in_flight: number of writes in progress per layout version they started under;
                we acknowledge no version newer than the oldest one with writes in flight.
                None: the writes registered with :meth:`write_in_flight`.
            push_to: peers to advertise a change to.

        Returns:
            True when our trackers changed.
        """
        if in_flight is None:
            in_flight = self._in_flight
        helper, acked = self._helper.ack_max(self._netapp.id, in_flight=in_flight)
        helper, sync_acked = helper.sync_ack(self._netapp.id)
        if not (acked or sync_acked):
            return False
        return await self.update(helper.history, push_to=push_to)

    def register_table(self, name: str) -> None:
        """Declares a table whose full syncs count towards our ``sync_map`` entry."""
        self._table_sync.setdefault(name, 0)

    async def table_synced(
        self, name: str, version: int, *, push_to: Iterable[FixedBytes32] = ()
    ) -> bool:
        """Records that table ``name`` completed a full sync as of layout ``version``.

        Once every registered table has synced a version, our ``sync_map`` entry rises to
        it: this node holds all the data that version assigns it, which lets the cluster
        retire older layout versions. Returns True when our trackers changed.
        """
        self._table_sync[name] = max(self._table_sync.get(name, 0), version)
        synced = min(self._table_sync.values())
        helper, changed = self._helper.sync(self._netapp.id, synced)
        if not changed:
            return False
        return await self.update(helper.history, push_to=push_to)

    async def pull_from(self, peer: FixedBytes32) -> bool:
        """Asks ``peer`` for its layout history and merges it; True if ours changed."""
        try:
            with anyio.fail_after(_GOSSIP_TIMEOUT_S):
                theirs = await self._netapp.call(peer, PULL_LAYOUT, PullLayout(), prio=PRIO_HIGH)
        except (RpcError, TimeoutError) as exc:
            logger.debug("pulling the layout from %s failed: %s", peer, exc)
            return False
        return await self.update(theirs)

    async def _push(self, peer: FixedBytes32, history: LayoutHistory) -> None:
        try:
            with anyio.fail_after(_GOSSIP_TIMEOUT_S):
                await self._netapp.call(peer, ADVERTISE_LAYOUT, history, prio=PRIO_HIGH)
        except (RpcError, TimeoutError) as exc:
            logger.debug("pushing the layout to %s failed: %s", peer, exc)

    # ------------------------------------------------------------------ handlers

    async def _handle_pull(
        self, msg: PullLayout, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[LayoutHistory, AttachedStream | None]:
        return self.history, None

    async def _handle_advertise(
        self, msg: LayoutHistory, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[None, AttachedStream | None]:
        if msg.current.replication_factor != self.history.current.replication_factor:
            raise LayoutMismatchError(
                f"refusing a layout with replication factor {msg.current.replication_factor}"
            )
        # A change is forwarded to every other peer we are connected to (Garage:
        # handle_advertise_cluster_layout broadcasts it), so that it spreads without
        # waiting for the next status exchange. A peer that already had it merges nothing
        # and forwards nothing, so the flood stops after one round.
        peers = [
            c.node_id
            for c in self._netapp.connected_peers()
            if c.listen_addr is not None and c.node_id != from_node
        ]
        await self.update(msg, push_to=peers)
        return None, None

    # ------------------------------------------------------------------ persistence

    def _load(self, replication_factor: int) -> LayoutHistory:
        if self._path is None or not self._path.exists():
            return LayoutHistory.new(replication_factor)
        history = decode_versioned(LayoutHistory, self._path.read_bytes())
        stored = history.current.replication_factor
        if stored != replication_factor:
            raise LayoutMismatchError(
                f"{self._path} was written with replication_factor = {stored}, but the "
                f"configuration says {replication_factor}; a cluster's replication factor "
                "cannot change in place"
            )
        return history

    def _save(self, history: LayoutHistory) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self._path, encode_versioned(history), mode=0o644)
