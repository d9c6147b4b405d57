"""The block manager: blocks sent, fetched and kept between nodes (Garage: src/block/manager.rs;
design §9.3-9.8, §4.6).

Theory of operation
-------------------
A block (a chunk of an object, at most ``block_size``) lives on the storage nodes that the
*current* layout version assigns to its hash. :class:`BlockManager` ties the local
:class:`BlockStore` and :class:`BlockRc` to the network:

**Put** (:meth:`BlockManager.rpc_put_block`): compress in a worker thread (unless
prevented, e.g. SSE-C data), take ``len / 1024`` permits of the RAM budget
(``block_ram_buffer_max``), then ``PutBlock{hash, header}`` goes to the current version's
nodes of the hash with the block bytes as the call's *attached stream* (never inside the
msgpack message, so a block may exceed the transport's message size limit). The call
returns at the write quorum; the remaining sends go on in the RPC helper's background task
group, and the RAM permits are released only once *every* send ended: a client uploading
faster than the cluster stores is slowed down instead of filling memory.

**Get** (:meth:`BlockManager.rpc_get_block`, :meth:`BlockManager.rpc_get_block_streaming`):
candidates are :func:`block_read_nodes_of` (this node first if it stores the block, every
live layout version interleaved by preference, then retired versions); each is asked in
turn under the RPC timeout and the first valid answer wins. The full variant verifies the
block (blake2 for plain, zstd checksum for compressed) off the event loop; the streaming
variant hands the network chunks through, decompressing on the fly and checking the hash
or checksum at the end (:class:`BlockStream`).

**Serving** (the three endpoints): ``GetBlock`` reads and verifies the local copy; a node
that lacks it queues itself a resync (``2 * rpc_timeout``) and errors, a node whose copy is
corrupt renames it ``.corrupted`` (:meth:`BlockStore.read_block` does) and queues an
immediate resync. ``PutBlock`` verifies the received bytes before writing them.
``NeedBlockQuery`` answers whether this node has references to a block but no copy.

**Reference counts** (:meth:`BlockManager.block_incref`, :meth:`BlockManager.block_decref`):
called by the block_ref table inside its transaction; the resync entries they queue are
written in that same transaction. :meth:`BlockManager.recalculate_rc` recounts the live
block_refs with the function given to :meth:`BlockManager.set_ref_counter` (the block_ref
table is built above this layer) before any deletion.

**Resync** (:meth:`BlockManager.resync_block`, run by the workers of ``_resync``): delete
an unneeded local copy (after recounting, offering it to the storage nodes that need it
and re-checking under the db), or fetch a needed missing one from the other nodes.

Blocking work (file I/O, hashing, zstd, db transactions) runs in worker threads, file and
CPU work under one capacity limiter so that a burst of requests does not start hundreds
of threads reading 1 MiB each.

Local reads, writes, deletions and corruptions are counted on the event loop
(:meth:`BlockManager.statistics`; Garage: src/block/metrics.rs) for the node's metrics.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

import anyio
import anyio.to_thread
import zstandard
from anyio.abc import ByteReceiveStream

from garage_rpc.net import PRIO_BACKGROUND, PRIO_NORMAL, PRIO_SECONDARY, Endpoint, RpcError
from garage_rpc.replication_mode import ReplicationParams
from garage_rpc.rpc_helper import DEFAULT_TIMEOUT_S, RequestStrategy
from garage_table.errors import NoLayoutError
from garage_util.clock import now_msec
from garage_util.data import HASH_LEN, Hash

from ._data import DataBlock, DataBlockHeader, zstd_decompress
from ._errors import BlockError, CorruptBlockError, MissingBlockError, NoSuchBlockError
from ._rc import RcEntry
from ._repair import ScrubCommand, ScrubWorker
from ._resync import (
    MAX_RESYNC_WORKERS,
    RESYNC_MAX_IDLE_S,
    RESYNC_RETRY_DELAY_MS,
    BlockResyncManager,
    ResyncWorker,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from garage_rpc.layout import LayoutHelper
    from garage_rpc.layout_manager import LayoutManager
    from garage_rpc.net import AttachedStream, NetApp, NodeId
    from garage_rpc.rpc_helper import RpcHelper
    from garage_util.background import BgVars, Worker
    from garage_util.data import Uuid
    from garage_util.db import Db, Transaction

    from ._rc import BlockRc
    from ._store import BlockStore

__all__ = [
    "DEFAULT_RAM_BUFFER_MAX",
    "GET_BLOCK",
    "INLINE_THRESHOLD",
    "NEED_BLOCK_QUERY",
    "PUT_BLOCK",
    "BlockManager",
    "BlockManagerStatistics",
    "BlockStream",
    "GetBlock",
    "NeedBlockQuery",
    "NeedBlockReply",
    "OrderTag",
    "PutBlock",
    "block_read_nodes_of",
]

logger = logging.getLogger(__name__)

#: Objects smaller than this are stored inline in the object table, not as blocks (Garage:
#: INLINE_THRESHOLD): below it, a block's file and RPCs cost more than the data.
INLINE_THRESHOLD: Final = 3072
#: Block bytes in flight in puts (Garage's ``block_ram_buffer_max`` default, 256 MiB):
#: enough for many parallel 1 MiB uploads, bounded so that slow peers slow clients down.
DEFAULT_RAM_BUFFER_MAX: Final = 256 * 1024 * 1024
#: Threads reading, writing, hashing or compressing blocks at once: enough to keep a few
#: disks and cores busy, few enough that 1 MiB buffers do not pile up in memory.
_BLOCK_THREADS: Final = 16
#: Extra wait after the GC delay before the resync that deletes a block (Garage's 10 s),
#: so that the rc entry is surely deletable when the entry is handled.
_GC_RESYNC_MARGIN_MS: Final = 10_000
#: Read size asked of the transport for block streams: its window, about.
_READ_CHUNK: Final = 1 << 20

_PATH: Final = "garage_block/manager.rs"


# ---------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class OrderTag:
    """Garage's order tag: which stream of an object's blocks a request belongs to, and its
    position in it. Carried on ``GetBlock`` so that a transport that orders responses can
    deliver an object's blocks in sequence; ours sends them by priority only.

    Attributes:
        stream: the ordering stream's id.
        order: the position within that stream.
    """

    stream: int
    order: int


@dataclass(frozen=True, slots=True)
class GetBlock:
    """``GetBlock(hash, order_tag?)``: asks a node for its copy of a block."""

    hash: Hash
    order_tag: OrderTag | None = None


@dataclass(frozen=True, slots=True)
class PutBlock:
    """``PutBlock{hash, header}``: a block's header; its bytes are the attached stream.

    The request that stores a block, and the response to :class:`GetBlock`.
    """

    hash: Hash
    header: DataBlockHeader


@dataclass(frozen=True, slots=True)
class NeedBlockQuery:
    """``NeedBlockQuery(hash)``: does the node need this block (refs but no copy)?"""

    hash: Hash


@dataclass(frozen=True, slots=True)
class NeedBlockReply:
    """The answer to :class:`NeedBlockQuery`."""

    needed: bool


GET_BLOCK: Final = Endpoint(f"{_PATH}/GetBlock", GetBlock, PutBlock)
PUT_BLOCK: Final = Endpoint(f"{_PATH}/PutBlock", PutBlock, type(None))
NEED_BLOCK_QUERY: Final = Endpoint(f"{_PATH}/NeedBlockQuery", NeedBlockQuery, NeedBlockReply)


# ---------------------------------------------------------------------------- read nodes


def block_read_nodes_of(
    helper: LayoutHelper,
    position: Hash,
    *,
    our_id: Uuid,
    order: Callable[[Sequence[Uuid]], list[Uuid]],
) -> list[Uuid]:
    """The nodes to ask for a block, in the order to ask them (Garage: helper.rs).

    During a layout change a block may still be on the nodes of an older version, or
    already on those of the newer one. So: first the nodes of every live version,
    interleaved by rank (each version's best node, then each one's second...), this node
    first whenever it is among them (a local read is nearly free); then the nodes of the
    retired versions still kept, newest first, for blocks not moved yet.

    Args:
        helper: the layout.
        position: the block's hash.
        our_id: this node.
        order: a node set in preference order (``RpcHelper.request_order``).
    """
    per_version = [order(v.nodes_of(position)) for v in helper.versions]
    nodes: list[Uuid] = []
    for rank in range(max((len(v) for v in per_version), default=0)):
        for ranked in per_version:
            if rank < len(ranked) and ranked[rank] not in nodes:
                node = ranked[rank]
                if node == our_id:
                    nodes.insert(0, node)
                else:
                    nodes.append(node)
    for old in reversed(helper.history.old_versions):
        for node in order(old.nodes_of(position)):
            if node not in nodes:
                nodes.append(node)
    return nodes


# ---------------------------------------------------------------------------- streams


@final
class BlockStream(ByteReceiveStream):
    """A block's plain content as it arrives from a node (see
    :meth:`BlockManager.rpc_get_block_streaming`).

    Plain blocks are passed through chunk by chunk (no copy) while their blake2 sum is
    computed; compressed ones are decompressed as they arrive. At the end the sum, or the
    zstd frame's checksum, is checked: a mismatch raises :class:`CorruptBlockError` instead
    of the end of stream, so a consumer never takes a damaged block for a complete one.

    Hashing and decompressing run on the event loop, a transport chunk (at most the flow
    window, 64 KiB-1 MiB) at a time: a fraction of a millisecond each, less than handing
    every chunk to a thread would cost.

    Attributes:
        hash: the block's hash.
        header: how the sending node stored it.
        node: the node it comes from.
    """

    def __init__(
        self, hash: Hash, header: DataBlockHeader, raw: ByteReceiveStream, node: Uuid
    ) -> None:
        self.hash = hash
        self.header = header
        self.node = node
        self._raw = raw
        self._hasher = hashlib.blake2b() if header is DataBlockHeader.PLAIN else None
        self._dobj = (
            zstandard.ZstdDecompressor().decompressobj()
            if header is DataBlockHeader.COMPRESSED
            else None
        )
        self._pending = memoryview(b"")
        self._eof = False

    async def receive(self, max_bytes: int = _READ_CHUNK) -> bytes:
        """Up to ``max_bytes`` of the block's plain content.

        Raises:
            anyio.EndOfStream: the whole block was received and verified.
            CorruptBlockError: the bytes do not match the hash (or the zstd frame is bad).
            RpcError: the transfer failed (the sending node went away...).
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        while not self._pending:
            if self._eof:
                raise anyio.EndOfStream
            # Plain: ask for at most max_bytes, so the transport's chunk is returned as it
            # is (no copy). Compressed: the output is bigger than the input anyway.
            want = max_bytes if self._hasher is not None else _READ_CHUNK
            try:
                data = await self._raw.receive(want)
            except anyio.EndOfStream:
                self._finish()
                self._eof = True
                continue
            if self._hasher is not None:
                self._hasher.update(data)
                if len(data) <= max_bytes:
                    return data
                self._pending = memoryview(data)
            else:
                self._pending = memoryview(self._decompress(data))
        out = bytes(self._pending[:max_bytes])
        self._pending = self._pending[max_bytes:]
        return out

    def _decompress(self, data: bytes) -> bytes:
        assert self._dobj is not None
        if not data:
            return b""
        if self._dobj.eof:
            raise CorruptBlockError(self.hash, "bytes after the end of the zstd frame")
        try:
            return self._dobj.decompress(data)
        except zstandard.ZstdError as exc:
            raise CorruptBlockError(self.hash, f"invalid zstd frame: {exc}") from exc

    def _finish(self) -> None:
        if self._hasher is not None:
            if self._hasher.digest()[:HASH_LEN] != self.hash:
                raise CorruptBlockError(self.hash, "blake2 sum mismatch")
        elif self._dobj is not None and (not self._dobj.eof or self._dobj.unused_data):
            raise CorruptBlockError(self.hash, "truncated zstd frame or trailing bytes")

    async def read_all(self) -> bytes:
        """The rest of the block, verified, in one buffer."""
        parts = [chunk async for chunk in self]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def aclose(self) -> None:
        """Stops reading; the rest of the transfer is cancelled."""
        self._pending = memoryview(b"")
        self._eof = True
        await self._raw.aclose()


async def _read_to_end(stream: ByteReceiveStream) -> bytes:
    async with stream:
        parts = [chunk async for chunk in stream]
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _verified_content(hash: Hash, block: DataBlock) -> bytes:
    """The plain content of ``block``, verified (one decode for compressed blocks)."""
    if block.header is DataBlockHeader.PLAIN:
        block.verify(hash)
        return block.data
    try:
        return zstd_decompress(block.data)
    except ValueError as exc:
        raise CorruptBlockError(hash, str(exc)) from exc


# ---------------------------------------------------------------------------- RAM budget


@dataclass(frozen=True, slots=True)
class BlockManagerStatistics:
    """What the block manager did on this node's disks since start.

    Attributes:
        bytes_read: bytes of block files read (as stored: compressed or not).
        reads: block files read.
        read_duration_s: total seconds spent reading them (verification included).
        bytes_written: bytes of block files written.
        writes: block files written.
        write_duration_s: total seconds spent writing them.
        deleted: blocks deleted (no longer referenced).
        corruptions: corrupt local copies found on read.
        ram_buffer_free_kb: KiB of the RAM budget of puts (``block_ram_buffer_max``) free.
    """

    bytes_read: int
    reads: int
    read_duration_s: float
    bytes_written: int
    writes: int
    write_duration_s: float
    deleted: int
    corruptions: int
    ram_buffer_free_kb: int


@final
class _RamBudget:
    """Bytes of block data being sent, in KiB permits (Garage: ``buffer_kb_semaphore``).

    Waiters are served in arrival order: the first one waits until enough permits are
    free, the others wait behind it, so that big blocks are not starved by small ones and
    two waiters never hold half of what each needs.
    """

    __slots__ = ("_free", "_freed", "_lock", "_total")

    def __init__(self, max_bytes: int) -> None:
        self._total = max(1, max_bytes // 1024)
        self._free = self._total
        self._lock: anyio.Lock | None = None
        self._freed: anyio.Event | None = None

    @property
    def used_bytes(self) -> int:
        return (self._total - self._free) * 1024

    @property
    def free_kb(self) -> int:
        return self._free

    async def acquire(self, n_bytes: int) -> int:
        """Takes the permits for ``n_bytes``; returns how many, for :meth:`release`."""
        permits = min(self._total, max(1, n_bytes // 1024))
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            while self._free < permits:
                freed = self._freed = anyio.Event()
                await freed.wait()
            self._free -= permits
        return permits

    def release(self, permits: int) -> None:
        self._free += permits
        if self._freed is not None:
            self._freed.set()
            self._freed = None


@final
class _Sends:
    """Counts the sends of one put; the last one to end releases its RAM permits."""

    __slots__ = ("_budget", "_left", "_permits")

    def __init__(self, budget: _RamBudget, permits: int, n_sends: int) -> None:
        self._budget = budget
        self._permits = permits
        self._left = n_sends

    def one_done(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._budget.release(self._permits)

    def none_started(self) -> None:
        self._left = 0
        self._budget.release(self._permits)


# ---------------------------------------------------------------------------- manager


@final
class BlockManager:
    """Stores, sends, fetches and garbage-collects blocks (see the module docstring).

    Registers the block endpoints on ``netapp``. ``rpc.run`` must be running for puts (the
    sends that go on after the quorum live there); the workers (:meth:`workers`) are run by
    a ``BackgroundRunner``.

    Args:
        store: the local block files.
        rc: the local reference counts (in ``db``).
        db: the metadata db (resync queue, transactions of ``recalculate_rc``).
        netapp: the transport.
        rpc: the RPC helper (timeouts, quorums, preference order).
        layout: the cluster layout.
        compression_level: zstd level for new blocks, None to store them plain.
        data_fsync: fsync block files and directories (``data_fsync``).
        ram_buffer_max: bytes of block data in flight in puts (``block_ram_buffer_max``).
        strategy: timeouts of block requests (default: the RPC timeout, 300 s).
        replication: the quorums; default: the layout's replication factor, consistent mode.
        clock_ms: the wall clock in ms (injected in tests).
        metadata_dir: where ``resync_cfg`` and ``scrub_info`` live (None: in memory).
        incref_check_delay_ms: when a block gets its first reference, how long until the
            resync that checks it arrived; default ``2 * rpc timeout`` (Garage's).
        resync_retry_delay_ms: first retry delay after a failed resync.
        resync_max_idle_s: longest idle wait of the resync workers.
    """

    def __init__(
        self,
        store: BlockStore,
        rc: BlockRc,
        db: Db,
        netapp: NetApp,
        rpc: RpcHelper,
        layout: LayoutManager,
        *,
        compression_level: int | None = 1,
        data_fsync: bool = False,
        ram_buffer_max: int = DEFAULT_RAM_BUFFER_MAX,
        strategy: RequestStrategy | None = None,
        replication: ReplicationParams | None = None,
        clock_ms: Callable[[], int] = now_msec,
        metadata_dir: Path | None = None,
        incref_check_delay_ms: int | None = None,
        resync_retry_delay_ms: int = RESYNC_RETRY_DELAY_MS,
        resync_max_idle_s: float = RESYNC_MAX_IDLE_S,
    ) -> None:
        self._store = store
        self._rc = rc
        self._db = db
        self._netapp = netapp
        self._rpc = rpc
        self._layout = layout
        self._compression_level = compression_level
        self._data_fsync = data_fsync
        self._strategy = strategy if strategy is not None else RequestStrategy()
        self._replication = replication
        self._clock_ms = clock_ms
        self._metadata_dir = None if metadata_dir is None else Path(metadata_dir)
        # Without a timeout, the check still waits as long as with Garage's default one.
        timeout_s = self._strategy.timeout_s
        timeout_ms = int((timeout_s if math.isfinite(timeout_s) else DEFAULT_TIMEOUT_S) * 1000)
        self._incref_check_delay_ms = (
            2 * timeout_ms if incref_check_delay_ms is None else incref_check_delay_ms
        )
        self._ram = _RamBudget(ram_buffer_max)
        self._bytes_read = self._reads = self._bytes_written = self._writes = 0
        self._deleted = self._corruptions = 0
        self._read_s = self._write_s = 0.0
        self._limiter = anyio.CapacityLimiter(_BLOCK_THREADS)
        self._ref_counter: Callable[[Hash], int] | None = None
        self._scrub: ScrubWorker | None = None
        self._resync = BlockResyncManager(
            db,
            clock_ms=clock_ms,
            retry_delay_ms=resync_retry_delay_ms,
            max_idle_s=resync_max_idle_s,
            metadata_dir=self._metadata_dir,
        )
        netapp.endpoint(GET_BLOCK, self._handle_get_block)
        netapp.endpoint(PUT_BLOCK, self._handle_put_block)
        netapp.endpoint(NEED_BLOCK_QUERY, self._handle_need_block)

    # ------------------------------------------------------------------ accessors

    @property
    def store(self) -> BlockStore:
        """The local block files."""
        return self._store

    @property
    def resync(self) -> BlockResyncManager:
        """The resync queue (status, errors, settings)."""
        return self._resync

    @property
    def rc(self) -> BlockRc:
        """The local reference counts."""
        return self._rc

    @property
    def node_id(self) -> NodeId:
        """This node's id."""
        return self._netapp.id

    @property
    def metadata_dir(self) -> Path | None:
        """Where the block manager's state files live (None: in memory only)."""
        return self._metadata_dir

    @property
    def clock_ms(self) -> Callable[[], int]:
        """The wall clock in use."""
        return self._clock_ms

    @property
    def ram_buffer_used_bytes(self) -> int:
        """Block bytes of puts still being sent (including after their quorum)."""
        return self._ram.used_bytes

    def statistics(self) -> BlockManagerStatistics:
        """What was read, written and deleted so far (a snapshot; never blocks)."""
        return BlockManagerStatistics(
            bytes_read=self._bytes_read,
            reads=self._reads,
            read_duration_s=self._read_s,
            bytes_written=self._bytes_written,
            writes=self._writes,
            write_duration_s=self._write_s,
            deleted=self._deleted,
            corruptions=self._corruptions,
            ram_buffer_free_kb=self._ram.free_kb,
        )

    @property
    def scrub_worker(self) -> ScrubWorker | None:
        """The scrub worker made by :meth:`workers` (None before, or without scrub)."""
        return self._scrub

    def write_quorum(self) -> int:
        """Acknowledgements a block put needs."""
        if self._replication is not None:
            return self._replication.write_quorum
        return ReplicationParams(self._layout.helper.current.replication_factor).write_quorum

    def storage_nodes_of(self, hash: Hash) -> tuple[Uuid, ...]:
        """Every node that stores ``hash`` in a live layout version."""
        return self._layout.helper.storage_nodes_of(hash)

    def read_nodes_of(self, hash: Hash) -> list[Uuid]:
        """The nodes to ask for ``hash``, in order (:func:`block_read_nodes_of`)."""
        return block_read_nodes_of(
            self._layout.helper, hash, our_id=self._netapp.id, order=self._rpc.request_order
        )

    # ------------------------------------------------------------------ reference counts

    def set_ref_counter(self, fn: Callable[[Hash], int]) -> None:
        """Sets how :meth:`recalculate_rc` counts the live references of a block.

        ``fn(hash)`` counts the live block_ref entries of ``hash`` in the local block_ref
        table. It is called inside the rc's db transaction (the db write lock is held, so no
        reference can change meanwhile): it must only read the db (``Tree.get``/``range``).
        """
        self._ref_counter = fn

    def block_incref(self, tx: Transaction, hash: Hash) -> None:
        """Adds a reference to ``hash`` in the caller's transaction.

        On the first reference, a resync is queued (same transaction) to check after
        ``incref_check_delay_ms`` that the block did arrive: the put that created the
        reference normally brought it, but it may have failed on this node.
        """
        change = self._rc.incref(tx, hash)
        if change.became_nonzero:
            self.resync.put_to_resync_at(tx, hash, self._clock_ms() + self._incref_check_delay_ms)

    def block_decref(self, tx: Transaction, hash: Hash) -> None:
        """Removes a reference to ``hash`` in the caller's transaction.

        On the last one, the block becomes deletable after the GC delay, and a resync is
        queued (same transaction) for just after it, to delete the file.
        """
        now = self._clock_ms()
        change = self._rc.decref(tx, hash, now)
        if change.became_zero:
            # Due just after the entry becomes deletable, whatever GC delay the rc applied.
            deletable_at = change.new.deletable_at_ms
            if deletable_at is None:
                deletable_at = now + self._rc.gc_delay_ms
            self.resync.put_to_resync_at(tx, hash, deletable_at + _GC_RESYNC_MARGIN_MS)

    def get_block_rc(self, hash: Hash) -> int:
        """The number of references to ``hash`` (blocking db read)."""
        return self._rc.get(hash).count

    def recalculate_rc(self, hash: Hash) -> int:
        """Recounts the live references of ``hash`` and fixes the stored count if it differs.

        Without a counter (:meth:`set_ref_counter`) the stored count is trusted. A count
        that drops to zero starts the GC delay and queues the deleting resync. Blocking
        (one db transaction): async callers use ``anyio.to_thread.run_sync``.

        Returns:
            The number of live references.
        """
        counter = self._ref_counter
        if counter is None:
            return self._rc.get(hash).count
        now = self._clock_ms()
        tree = self._rc.tree

        def recount(tx: Transaction) -> tuple[int, int]:
            count = counter(hash)
            old = RcEntry.parse(tx.get(tree, bytes(hash)))
            if count == old.count:
                return count, old.count
            if count > 0:
                new = RcEntry(count)
            else:
                new = RcEntry(0, now + self._rc.gc_delay_ms)
                self.resync.put_to_resync_at(
                    tx, hash, now + self._rc.gc_delay_ms + _GC_RESYNC_MARGIN_MS
                )
            raw = new.serialize()
            assert raw is not None  # a positive count or a deletion time
            tx.insert(tree, bytes(hash), raw)
            return count, old.count

        count, old_count = self._db.transaction(recount)
        if count != old_count:
            logger.warning(
                "fixed the inconsistent refcount of block %s: was %d, is %d", hash, old_count, count
            )
        return count

    # ------------------------------------------------------------------ put

    async def rpc_put_block(
        self,
        hash: Hash,
        data: bytes,
        *,
        prevent_compression: bool = False,
        order_tag: OrderTag | None = None,
    ) -> None:
        """Stores a block on its storage nodes; returns at the write quorum.

        The remaining sends go on in the background; the RAM budget they use is released
        when the last one ends.

        Args:
            hash: ``blake2sum(data)`` (the caller computed it while chunking).
            data: the block's plain content.
            prevent_compression: store it plain (SSE-C data, already incompressible).
            order_tag: the request's position in its object's stream (not used by the
                transport for puts, accepted for symmetry with gets).

        Raises:
            QuorumError: fewer than the write quorum of nodes stored it.
            NoLayoutError: the cluster has no layout yet.
        """
        del order_tag  # puts are not ordered (see OrderTag)
        level = None if prevent_compression else self._compression_level
        block: DataBlock = await anyio.to_thread.run_sync(
            functools.partial(DataBlock.from_buffer, data, compression_level=level),
            limiter=self._limiter,
        )
        permits = await self._ram.acquire(len(block.data))
        message = PutBlock(hash, block.header)
        with self._layout.write_in_flight() as helper:
            targets = helper.current.nodes_of(hash)
            if not targets:
                self._ram.release(permits)
                raise NoLayoutError(
                    f"no node stores block {hash.hex()}: the cluster needs a layout "
                    "(garage layout assign, then apply)"
                )
            sends = _Sends(self._ram, permits, len(set(targets)))

            async def send(node: Uuid) -> None:
                try:
                    await self._netapp.call(
                        node, PUT_BLOCK, message, prio=PRIO_NORMAL | PRIO_SECONDARY,
                        stream=block.data,
                    )  # fmt: skip
                finally:
                    sends.one_done()

            try:
                await self._rpc.try_write_many_sets(
                    send, [targets], quorum=self.write_quorum(), strategy=self._strategy
                )
            except (RuntimeError, ValueError):
                # Raised before any send started (helper not running, quorum > nodes).
                sends.none_started()
                raise

    # ------------------------------------------------------------------ get

    async def rpc_get_block(self, hash: Hash, *, order_tag: OrderTag | None = None) -> bytes:
        """Fetches a block's plain content from the first node that has a valid copy.

        Raises:
            MissingBlockError: no node returned a valid copy.
        """
        block = await self.rpc_get_raw_block(hash, order_tag=order_tag)
        content: bytes = await anyio.to_thread.run_sync(
            _verified_content, hash, block, limiter=self._limiter
        )
        return content

    async def rpc_get_raw_block(
        self,
        hash: Hash,
        *,
        prio: int = PRIO_NORMAL | PRIO_SECONDARY,
        order_tag: OrderTag | None = None,
        exclude_self: bool = False,
    ) -> DataBlock:
        """Fetches a block as stored (maybe compressed), verified.

        Each candidate node is asked in turn; the whole transfer, verification included,
        must succeed within the RPC timeout, else the next node is asked.

        Args:
            hash: the block.
            prio: the transport priority (resync fetches use ``PRIO_BACKGROUND``).
            order_tag: the request's position in its object's stream.
            exclude_self: skip this node (resync: we know we lack it).

        Raises:
            MissingBlockError: no node returned a valid copy.
        """
        errors: list[tuple[Uuid, str]] = []
        for node in self.read_nodes_of(hash):
            if exclude_self and node == self._netapp.id:
                continue
            try:
                with anyio.fail_after(self._timeout()):
                    return await self._fetch_from(node, hash, prio, order_tag)
            except TimeoutError:
                errors.append((node, f"timed out after {self._strategy.timeout_s:g} s"))
            except (RpcError, BlockError) as exc:
                errors.append((node, f"{type(exc).__name__}: {exc}"))
            logger.debug("get block %s: node %s failed: %s", hash, node, errors[-1][1])
        raise MissingBlockError(hash, errors)

    async def _fetch_from(
        self, node: Uuid, hash: Hash, prio: int, order_tag: OrderTag | None
    ) -> DataBlock:
        head, stream = await self._netapp.call_streaming(
            node, GET_BLOCK, GetBlock(hash, order_tag), prio=prio
        )
        if stream is None:
            raise BlockError(f"node {node.short_hex()} answered GetBlock without data")
        data = await _read_to_end(stream)
        block = DataBlock(head.header, data)
        await anyio.to_thread.run_sync(block.verify, hash, limiter=self._limiter)
        return block

    async def rpc_get_block_streaming(
        self, hash: Hash, *, order_tag: OrderTag | None = None
    ) -> BlockStream:
        """Starts fetching a block's plain content as a stream (the S3 GET path).

        The candidate nodes are asked in turn until one answers with the block's header
        (within the RPC timeout); its data then streams to the caller, chunk by chunk. The
        caller owns the stream: read it to the end or ``aclose()`` it (``async with``).
        A failure after the header (the node went away, bad data) is raised by the stream.

        Raises:
            MissingBlockError: no node started sending the block.
        """
        errors: list[tuple[Uuid, str]] = []
        for node in self.read_nodes_of(hash):
            try:
                with anyio.fail_after(self._timeout()):
                    head, stream = await self._netapp.call_streaming(
                        node, GET_BLOCK, GetBlock(hash, order_tag),
                        prio=PRIO_NORMAL | PRIO_SECONDARY,
                    )  # fmt: skip
            except TimeoutError:
                errors.append((node, f"timed out after {self._strategy.timeout_s:g} s"))
                continue
            except RpcError as exc:
                errors.append((node, f"{type(exc).__name__}: {exc}"))
                continue
            if stream is None:
                errors.append((node, "answered without data"))
                continue
            return BlockStream(hash, head.header, stream, node)
        raise MissingBlockError(hash, errors)

    def _timeout(self) -> float | None:
        timeout = self._strategy.timeout_s
        return timeout if math.isfinite(timeout) else None

    # ------------------------------------------------------------------ local blocks

    async def read_block_local(self, hash: Hash, *, resync_missing: bool = True) -> DataBlock:
        """Reads and verifies this node's copy of ``hash``.

        A missing copy queues a resync after ``incref_check_delay_ms`` (we may be supposed
        to have it); a corrupt one is renamed ``.corrupted`` and queues an immediate resync,
        which fetches a good copy from another node.

        Args:
            hash: the block.
            resync_missing: queue the resync of a missing block (scrub and rebalance, which
                only look at files that just vanished, pass False).

        Raises:
            NoSuchBlockError: no local copy.
            CorruptBlockError: the copy failed verification.
        """
        start = anyio.current_time()
        try:
            block: DataBlock = await anyio.to_thread.run_sync(
                self._store.read_block, hash, limiter=self._limiter
            )
        except NoSuchBlockError:
            if resync_missing:
                await anyio.to_thread.run_sync(
                    self.resync.put_to_resync, hash, self._incref_check_delay_ms
                )
            raise
        except CorruptBlockError:
            self._corruptions += 1
            await anyio.to_thread.run_sync(self.resync.put_to_resync, hash, 0)
            raise
        self._reads += 1
        self._bytes_read += len(block.data)
        self._read_s += anyio.current_time() - start
        return block

    async def write_block_local(self, hash: Hash, block: DataBlock) -> None:
        """Writes a (verified) block to this node's store."""
        start = anyio.current_time()
        await anyio.to_thread.run_sync(
            functools.partial(self._store.write_block, hash, block, fsync=self._data_fsync),
            limiter=self._limiter,
        )
        self._writes += 1
        self._bytes_written += len(block.data)
        self._write_s += anyio.current_time() - start

    def need_block(self, hash: Hash) -> bool:
        """True when this node has references to ``hash`` but no copy. Blocking."""
        return self._rc.get(hash).count > 0 and not self._store.has_block(hash)

    # ------------------------------------------------------------------ handlers

    async def _handle_get_block(
        self, msg: GetBlock, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[PutBlock, AttachedStream | None]:
        block = await self.read_block_local(msg.hash)
        return PutBlock(msg.hash, block.header), block.data

    async def _handle_put_block(
        self, msg: PutBlock, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[None, AttachedStream | None]:
        if stream is None:
            raise BlockError(f"PutBlock {msg.hash.hex()} from {from_node} carries no data")
        block = DataBlock(msg.header, await _read_to_end(stream))
        await anyio.to_thread.run_sync(block.verify, msg.hash, limiter=self._limiter)
        await self.write_block_local(msg.hash, block)
        return None, None

    async def _handle_need_block(
        self, msg: NeedBlockQuery, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[NeedBlockReply, AttachedStream | None]:
        needed: bool = await anyio.to_thread.run_sync(self.need_block, msg.hash)
        return NeedBlockReply(needed), None

    # ------------------------------------------------------------------ resync

    async def resync_block(self, hash: Hash) -> None:
        """Brings the local copy of ``hash`` in line with its refcount (design §9.6).

        - Present but deletable: recount the references (live ones: error, retry later);
          ask the other storage nodes whether they need it and send it to those that do
          (all must succeed); then delete it if still deletable, and drop its rc entry.
        - Referenced but absent: if this node stores the hash in a live layout version,
          fetch it from the others and write it (nobody has it: recount, then error).

        Raises:
            BlockError: the resync could not be completed (it is retried with backoff).
            RpcError, QuorumError: a peer could not be reached.
        """
        exists, rc = await anyio.to_thread.run_sync(self._local_state, hash)
        now = self._clock_ms()
        if exists and rc.is_deletable(now):
            await self._offload_and_delete(hash)
        if rc.count > 0 and not exists:
            await self._fetch_missing(hash)

    def _local_state(self, hash: Hash) -> tuple[bool, RcEntry]:
        return self._store.has_block(hash), self._rc.get(hash)

    async def _offload_and_delete(self, hash: Hash) -> None:
        live = await anyio.to_thread.run_sync(self.recalculate_rc, hash)
        if live > 0:
            raise BlockError(f"refcount of block {hash.hex()} was inconsistent, retrying later")
        who = self.storage_nodes_of(hash)
        if len(who) < self.write_quorum():
            raise BlockError(
                f"not offloading block {hash.hex()}: fewer storage nodes than the write quorum"
            )
        others = [n for n in who if n != self._netapp.id]

        async def need(node: Uuid) -> NeedBlockReply:
            return await self._netapp.call(
                node, NEED_BLOCK_QUERY, NeedBlockQuery(hash), prio=PRIO_BACKGROUND
            )

        outcomes = await self._rpc.call_many(need, others, strategy=self._strategy)
        need_nodes: list[Uuid] = []
        for outcome in outcomes:
            if outcome.error is not None:
                raise BlockError(
                    f"not deleting block {hash.hex()}: node {outcome.node.short_hex()} did not "
                    f"say whether it needs it ({outcome.error})"
                )
            assert outcome.value is not None
            if outcome.value.needed:
                need_nodes.append(outcome.node)
        if need_nodes:
            block = await self.read_block_local(hash, resync_missing=False)

            async def put(node: Uuid) -> None:
                await self._netapp.call(
                    node, PUT_BLOCK, PutBlock(hash, block.header),
                    prio=PRIO_BACKGROUND | PRIO_SECONDARY, stream=block.data,
                )  # fmt: skip

            await self._rpc.try_call_many(
                put, need_nodes, quorum=len(need_nodes), strategy=self._strategy
            )
        logger.info(
            "deleting unneeded block %s (offloaded to %d of %d nodes)",
            hash, len(need_nodes), len(others),
        )  # fmt: skip
        deleted: bool = await anyio.to_thread.run_sync(
            self._delete_if_unneeded, hash, limiter=self._limiter
        )
        if deleted:
            self._deleted += 1

    def _delete_if_unneeded(self, hash: Hash) -> bool:
        """Deletes the local copies if the rc still says so, then clears the rc entry;
        True when a copy was removed.

        A reference that arrives between the check and the deletion (a new PUT of the same
        content) is not lost: its incref queued a resync that will fetch the block back.
        """
        now = self._clock_ms()
        if not self._rc.is_deletable(hash, now):
            return False
        removed = self._store.delete_block(hash)
        self._rc.clear_deleted_block_rc(self._db, hash, now)
        return removed

    async def _fetch_missing(self, hash: Hash) -> None:
        if self._netapp.id not in self.storage_nodes_of(hash):
            logger.info(
                "block %s is referenced here but stored elsewhere: its references will go "
                "with the metadata sync; not fetching it",
                hash,
            )
            return
        logger.info("resync: fetching block %s, referenced here but absent", hash)
        try:
            block = await self.rpc_get_raw_block(
                hash, prio=PRIO_BACKGROUND | PRIO_SECONDARY, exclude_self=True
            )
        except MissingBlockError:
            await anyio.to_thread.run_sync(self.recalculate_rc, hash)
            raise
        await self.write_block_local(hash, block)

    # ------------------------------------------------------------------ workers

    def workers(
        self,
        *,
        resync_workers: int = MAX_RESYNC_WORKERS,
        scrub: bool = True,
        scrub_checkpoint_interval_ms: int | None = None,
    ) -> list[Worker]:
        """The background workers to spawn on the node's ``BackgroundRunner``.

        Args:
            resync_workers: resync workers to create (at most 8); only the first
                ``resync-worker-count`` of them work at a time, so creating all 8 lets the
                operator raise the count at run time.
            scrub: also the scrub worker (``disable_scrub = false``).
            scrub_checkpoint_interval_ms: the scrub's checkpoint interval (default 60 s).
        """
        out: list[Worker] = [
            ResyncWorker(i, self.resync, self.resync_block)
            for i in range(min(resync_workers, MAX_RESYNC_WORKERS))
        ]
        if scrub:
            if scrub_checkpoint_interval_ms is None:
                self._scrub = ScrubWorker(self)
            else:
                self._scrub = ScrubWorker(self, checkpoint_interval_ms=scrub_checkpoint_interval_ms)
            out.append(self._scrub)
        return out

    def send_scrub_command(
        self, cmd: ScrubCommand, *, pause_ms: int | None = None, tranquility: int | None = None
    ) -> None:
        """Sends a command to the scrub worker (see :meth:`ScrubWorker.command`).

        Raises:
            BlockError: there is no scrub worker (disabled, or :meth:`workers` not called).
            ValueError: a missing or invalid option.
        """
        if self._scrub is None:
            raise BlockError("the scrub worker is not running")
        self._scrub.command(cmd, pause_ms=pause_ms, tranquility=tranquility)

    def register_bg_vars(self, bg_vars: BgVars) -> None:
        """Registers the resync settings and, with a scrub worker, the scrub's."""
        self.resync.register_bg_vars(bg_vars)
        if self._scrub is not None:
            self._scrub.register_bg_vars(bg_vars)
