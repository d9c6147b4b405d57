"""Block manager nodes in one process, for the block manager tests.

Real parts: the encrypted transport over TCP on 127.0.0.1, peering, the layout manager
(a three-node, three-zone applied layout), the RPC helper, a sqlite db, a data directory
and the block manager per node, and a BackgroundRunner with the resync workers (and the
scrub worker). The wall clock of the block manager is a :class:`FakeClock` shared by the
nodes, so tests cross the 10 min GC delay or a retry backoff by moving it, and the resync
workers poll it every few ms (``resync_max_idle_s``).

Use :func:`started` as an async context manager; leaving it stops the node's services,
waits for their worker threads, then closes the db (so a node can be restarted on the same
directory). :func:`standalone` builds a manager whose services are not running, for the
local-only parts (scrub, repair).
"""

from __future__ import annotations

from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from tests.polling import wait_until

from garage_model.block import BlockManager, BlockRc, BlockStore
from garage_rpc.layout import LayoutHistory, NodeRole
from garage_rpc.layout_manager import LayoutManager
from garage_rpc.net import DEFAULT_MAX_MESSAGE_SIZE, NetApp, NodeKey
from garage_rpc.peering import Peering, PeeringConfig
from garage_rpc.rpc_helper import RequestStrategy, RpcHelper
from garage_util.background import BackgroundRunner
from garage_util.config import DataDir
from garage_util.data import Hash, blake2sum
from garage_util.db import Db, Transaction, open_db

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from garage_util.data import FixedBytes32

SECRET = bytes(range(32))
FAST = PeeringConfig(
    ping_interval_s=0.1, ping_timeout_s=1.0, max_failed_pings=2, retry_interval_s=0.1,
    max_retries=10_000, loop_interval_s=0.02,
)  # fmt: skip
QUICK = RequestStrategy(timeout_s=5.0)
#: The block manager's GC delay is 10 min: tests move the clock this far to cross it.
PAST_GC_DELAY_MS = 10 * 60 * 1000 + 11_000
#: Resync workers look at the (fake) clock this often when nothing is due.
POLL_S = 0.02


class FakeClock:
    """A wall clock in ms that only moves when told to (shared by the nodes of a test)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@dataclass
class Node:
    netapp: NetApp
    layout: LayoutManager
    rpc: RpcHelper
    db: Db
    store: BlockStore
    manager: BlockManager
    runner: BackgroundRunner
    addr: tuple[str, int]
    root: Path

    @property
    def id(self) -> FixedBytes32:
        return self.netapp.id

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def has_block(self, hash: Hash) -> bool:
        return self.store.has_block(hash)

    def block_files(self) -> list[Path]:
        """Every file under the data directory but the marker (block copies, quarantined
        ones)."""
        return sorted(
            p for p in self.data_dir.rglob("*") if p.is_file() and p.parent != self.data_dir
        )

    def incref(self, hash: Hash, times: int = 1) -> None:
        def tx_fn(tx: Transaction) -> None:
            for _ in range(times):
                self.manager.block_incref(tx, hash)

        self.db.transaction(tx_fn)

    def decref(self, hash: Hash) -> None:
        self.db.transaction(lambda tx: self.manager.block_decref(tx, hash))


def three_node_layout(keys: list[NodeKey]) -> LayoutHistory:
    history = LayoutHistory.new(3)
    for i, key in enumerate(keys):
        history = history.stage_role(key.node_id, NodeRole(f"z{i}", 10**9, ()), now_ms=1)
    applied, _ = history.apply_staged_changes(1, now_ms=2)
    return applied


def block_of(data: bytes) -> tuple[Hash, bytes]:
    return blake2sum(data), data


def flip_a_bit(path: Path) -> None:
    """Flips a bit of the file's last byte: for a zstd frame, its content checksum (some
    bits elsewhere in a frame do not change what it decodes to)."""
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))


def _build(
    key: NodeKey,
    root: Path,
    clock: FakeClock,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    bootstrap: list[tuple[FixedBytes32, tuple[str, int]]] | None = None,
    retry_delay_ms: int = 60_000,
    compression_level: int | None = 1,
    data_dirs: list[DataDir] | None = None,
) -> tuple[NetApp, Peering, LayoutManager, RpcHelper, Db, BlockStore, BlockManager]:
    root.mkdir(parents=True, exist_ok=True)
    netapp = NetApp(key, SECRET, handshake_timeout_s=2.0, max_message_size=max_message_size)
    peering = Peering(netapp, bootstrap_peers=bootstrap or [], config=FAST)
    layout = LayoutManager(netapp, replication_factor=3)
    rpc = RpcHelper(
        netapp.id,
        zone_of=lambda n: layout.helper.current.get_node_zone(n),
        rtt_of=peering.avg_ping_s,
    )
    db = open_db(root / "meta")
    dirs = data_dirs if data_dirs is not None else [DataDir(root / "data", None)]
    store = BlockStore.open(root / "meta", dirs, compression_level=compression_level)
    manager = BlockManager(
        store,
        BlockRc(db),
        db,
        netapp,
        rpc,
        layout,
        compression_level=compression_level,
        strategy=QUICK,
        clock_ms=clock,
        metadata_dir=root / "meta",
        resync_retry_delay_ms=retry_delay_ms,
        resync_max_idle_s=POLL_S,
    )
    return netapp, peering, layout, rpc, db, store, manager


@asynccontextmanager
async def started(
    tg: anyio.abc.TaskGroup,
    key: NodeKey,
    root: Path,
    history: LayoutHistory,
    bootstrap: list[tuple[FixedBytes32, tuple[str, int]]],
    clock: FakeClock,
    *,
    port: int = 0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    workers: bool = True,
    scrub: bool = True,
    retry_delay_ms: int = 60_000,
) -> AsyncIterator[Node]:
    """Starts a node; with ``workers``, its runner drives the resync (and scrub) workers."""
    netapp, peering, layout, rpc, db, store, manager = _build(
        key, root, clock, max_message_size=max_message_size, bootstrap=bootstrap,
        retry_delay_ms=retry_delay_ms,
    )  # fmt: skip
    runner = BackgroundRunner()
    if workers:
        for worker in manager.workers(
            resync_workers=2, scrub=scrub, scrub_checkpoint_interval_ms=0
        ):
            runner.spawn_worker(worker)
    scope = anyio.CancelScope()
    ready, stopped = anyio.Event(), anyio.Event()
    bound: list[tuple[str, int]] = []

    async def serve() -> None:
        try:
            with scope:
                await layout.update(history)
                async with anyio.create_task_group() as inner:
                    addr = await inner.start(netapp.run, ("127.0.0.1", port))
                    assert addr is not None
                    bound.append(addr)
                    for service in (peering.run, rpc.run, runner.run):
                        await inner.start(service)
                    ready.set()
        finally:
            stopped.set()

    tg.start_soon(serve)
    await ready.wait()
    try:
        yield Node(netapp, layout, rpc, db, store, manager, runner, bound[0], root)
    finally:
        scope.cancel()
        await stopped.wait()  # worker threads finished their db calls
        db.close()


def connected(nodes: list[Node]) -> bool:
    return all(n.netapp.is_connected(m.id) for n in nodes for m in nodes)


@asynccontextmanager
async def cluster(
    tmp_path: Path,
    clock: FakeClock,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    workers: bool = True,
    scrub: bool = True,
    retry_delay_ms: int = 60_000,
) -> AsyncIterator[list[Node]]:
    """Three connected nodes (``a``, ``b``, ``c`` under ``tmp_path``), one per zone;
    leaving stops them. Options as for :func:`started`."""
    keys = [NodeKey.generate() for _ in range(3)]
    history = three_node_layout(keys)

    def start(
        tg: anyio.abc.TaskGroup, i: int, bootstrap: list[tuple[FixedBytes32, tuple[str, int]]]
    ) -> AbstractAsyncContextManager[Node]:
        return started(
            tg, keys[i], tmp_path / "abc"[i], history, bootstrap, clock,
            max_message_size=max_message_size, workers=workers, scrub=scrub,
            retry_delay_ms=retry_delay_ms,
        )  # fmt: skip

    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        a = await stack.enter_async_context(start(tg, 0, []))
        nodes = [a] + [
            await stack.enter_async_context(start(tg, i, [(a.id, a.addr)])) for i in (1, 2)
        ]
        await wait_until(lambda: connected(nodes), "full mesh")
        yield nodes
        tg.cancel_scope.cancel()


@contextmanager
def standalone(
    tmp_path: Path, clock: FakeClock, *, data_dirs: list[DataDir] | None = None
) -> Iterator[tuple[BlockManager, Db]]:
    """A block manager whose services do not run: local reads, scrub and repair only.

    Its db and state files are in ``tmp_path / "meta"``, its blocks in ``data_dirs``
    (default ``tmp_path / "data"``).
    """
    _netapp, _peering, _layout, _rpc, db, _store, manager = _build(
        NodeKey.generate(), tmp_path, clock, data_dirs=data_dirs
    )
    try:
        yield manager, db
    finally:
        db.close()
