"""Scrub, repair and rebalance: walking the block store (Garage: src/block/repair.rs;
design §9.7).

The scrub's end-to-end test runs on three nodes (the resync refetches the quarantined
block from a peer); the others drive one node's workers step by step, without network.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import pytest
from tests.model.block.harness import (
    FakeClock,
    block_of,
    cluster,
    flip_a_bit,
    standalone,
)
from tests.polling import wait_until

from garage_model.block import (
    DATA_LAYOUT_FILE,
    PROGRESS_FP,
    SCRUB_INFO_FILE,
    SCRUB_INTERVAL_MS,
    BlockManager,
    BlockStoreIterator,
    DataBlock,
    DataLayout,
    RebalanceWorker,
    RepairBlocksWorker,
    ScrubCommand,
    ScrubWorker,
    ScrubWorkerPersisted,
)
from garage_util.background import BgVars, WorkerState
from garage_util.config import DataDir
from garage_util.encode import decode_versioned

if TYPE_CHECKING:
    from pathlib import Path

    from garage_util.data import Hash

pytestmark = pytest.mark.anyio


def _store_blocks(manager: BlockManager, n: int) -> list[Hash]:
    """Writes ``n`` random (plain) blocks; returns their hashes in walk order."""
    hashes = []
    for _ in range(n):
        h, data = block_of(os.urandom(2000))
        manager.store.write_block(h, DataBlock.plain(data), fsync=False)
        hashes.append(h)
    return sorted(hashes, key=lambda h: h.hex())


def _running(worker: ScrubWorker) -> bool:
    """``worker.running``, read afresh (mypy would keep an earlier assert's narrowing)."""
    return worker.running


async def _steps_until_idle(worker: ScrubWorker) -> int:
    steps = 0
    while await worker.work() is not WorkerState.IDLE:
        steps += 1
    return steps


async def test_scrub_quarantines_a_bit_flipped_block_and_resync_refetches_it(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with cluster(tmp_path, clock) as nodes:
        a = nodes[0]
        h, data = block_of(b"some data worth scrubbing " * 10_000)
        await a.manager.rpc_put_block(h, data)
        await wait_until(lambda: all(n.has_block(h) for n in nodes), "stored everywhere")
        for n in nodes:
            await anyio.to_thread.run_sync(n.incref, h)
        found = a.store.find_block(h)
        assert found is not None
        flip_a_bit(found.path)
        scrub = a.manager.scrub_worker
        assert scrub is not None
        a.manager.send_scrub_command(ScrubCommand.SET_TRANQUILITY, tranquility=0)
        a.manager.send_scrub_command(ScrubCommand.START)
        await wait_until(lambda: scrub.corruptions_detected == 1, "corruption found")
        assert found.path.with_name(found.path.name + ".corrupted").is_file()
        # The immediate resync got a good copy back from b or c.
        await wait_until(lambda: found.path.is_file(), "good copy refetched")
        assert a.store.read_block(h).content() == data
        await wait_until(lambda: not scrub.running, "scrub done")
        assert scrub.persisted.time_last_complete_scrub_ms == clock()
        assert scrub.persisted.time_next_run_scrub_ms >= clock() + SCRUB_INTERVAL_MS
        assert scrub.persisted.tranquility == 0


async def test_scrub_progress_persists_across_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    with standalone(tmp_path, clock) as (manager, _db):
        hashes = _store_blocks(manager, 10)
        first = ScrubWorker(manager, checkpoint_interval_ms=0)
        first.command(ScrubCommand.SET_TRANQUILITY, tranquility=0)
        first.command(ScrubCommand.START)
        for _ in range(4):
            assert await first.work() is WorkerState.BUSY
        assert first.running
        progress = float(first.status().progress.rstrip("%"))  # type: ignore[union-attr]  # running
        assert 30 <= progress <= 50
        saved = decode_versioned(
            ScrubWorkerPersisted, (tmp_path / "meta" / SCRUB_INFO_FILE).read_bytes()
        )
        assert saved.checkpoint is not None
        # Damage one block already scrubbed and one not yet.
        for h in (hashes[1], hashes[7]):
            found = manager.store.find_block(h)
            assert found is not None
            flip_a_bit(found.path)
        # "Restart": a new worker reads the checkpoint and scrubs the remaining 6 blocks.
        second = ScrubWorker(manager, checkpoint_interval_ms=0)
        assert second.running
        assert await _steps_until_idle(second) == 6
        assert second.corruptions_detected == 1
        assert manager.store.find_block(hashes[7]) is None  # quarantined
        assert manager.store.find_block(hashes[1]) is not None  # not scrubbed again
        queued = manager.resync.queued_hashes()
        assert (clock(), hashes[7]) in queued
        assert not _running(second)
        assert second.persisted.checkpoint is None
        third = ScrubWorker(manager)
        assert not third.running
        assert third.persisted.corruptions_detected == 1


async def test_scrub_commands_pause_resume_cancel(tmp_path: Path) -> None:
    clock = FakeClock()
    with standalone(tmp_path, clock) as (manager, _db):
        _store_blocks(manager, 3)
        scrub = ScrubWorker(manager, jitter_ms=lambda: 0, max_idle_s=0.01)
        assert scrub.persisted.time_next_run_scrub_ms == clock() + SCRUB_INTERVAL_MS
        assert await scrub.work() is WorkerState.IDLE  # not due, not started
        scrub.command(ScrubCommand.START)
        assert await scrub.work() is not WorkerState.IDLE
        scrub.command(ScrubCommand.PAUSE, pause_ms=60_000)
        assert await scrub.work() is WorkerState.IDLE
        assert scrub.paused
        assert "paused" in scrub.status().freeform[0]
        # The pause ends by itself.
        clock.advance(60_000)
        with anyio.fail_after(5):
            assert await scrub.wait_for_work() is WorkerState.BUSY
        assert scrub.running
        scrub.command(ScrubCommand.CANCEL)
        assert await scrub.work() is WorkerState.IDLE
        assert not _running(scrub)
        assert scrub.persisted.checkpoint is None
        assert scrub.persisted.time_next_run_scrub_ms == clock() + SCRUB_INTERVAL_MS
        # The scheduled run starts by itself.
        clock.advance(SCRUB_INTERVAL_MS)
        with anyio.fail_after(5):
            assert await scrub.wait_for_work() is WorkerState.BUSY
        assert scrub.running
        with pytest.raises(ValueError, match="tranquility"):
            scrub.command(ScrubCommand.SET_TRANQUILITY)
        bg_vars = BgVars()
        scrub.register_bg_vars(bg_vars)
        bg_vars.set("scrub-tranquility", "9")
        assert scrub.persisted.tranquility == 9
        assert bg_vars.get("scrub-corruptions_detected") == "0"


def test_walk_visits_every_block_file_once_with_growing_progress(tmp_path: Path) -> None:
    clock = FakeClock()
    with standalone(tmp_path, clock) as (manager, _db):
        hashes = _store_blocks(manager, 40)
        # Files that are not blocks are skipped.
        found = manager.store.find_block(hashes[0])
        assert found is not None
        found.path.with_name(found.path.name + ".corrupted").write_bytes(b"x")
        found.path.with_name(found.path.name + ".tmp0badf00d").write_bytes(b"x")
        walk = BlockStoreIterator.new(manager.store.layout)
        seen = []
        progress = [walk.progress()]
        while (item := walk.next()) is not None:
            seen.append(item[1])
            progress.append(walk.progress())
        assert seen == hashes
        assert progress == sorted(progress)
        assert progress[0] == 0.0
        assert progress[-1] == 1.0
        assert all(0 <= p * PROGRESS_FP <= PROGRESS_FP for p in progress)


async def test_repair_queues_referenced_and_stored_blocks(tmp_path: Path) -> None:
    clock = FakeClock()
    with standalone(tmp_path, clock) as (manager, db):
        on_disk = _store_blocks(manager, 3)
        referenced = [block_of(bytes([i]) * 100)[0] for i in range(5)]

        def incref_all(tx: object) -> None:
            for h in referenced:
                manager.block_incref(tx, h)  # type: ignore[arg-type]  # a Transaction

        db.transaction(incref_all)
        manager.resync.clear_queue()  # the increfs queued their own checks
        worker = RepairBlocksWorker(manager)
        states = []
        while (state := await worker.work()) is not WorkerState.DONE:
            states.append(state)
        queued = manager.resync.queued_hashes()
        assert {h for _when, h in queued} == set(referenced) | set(on_disk)
        assert {when for when, _h in queued} == {clock()}
        assert worker.queued == len(referenced) + len(on_disk)


async def test_rebalance_moves_blocks_to_their_primary_directory(tmp_path: Path) -> None:
    clock = FakeClock()
    d0, d1 = tmp_path / "d0", tmp_path / "d1"
    with standalone(tmp_path, clock, data_dirs=[DataDir(d0, None)]) as (manager, _db):
        hashes = _store_blocks(manager, 40)
    # d1 is added: about half of the partitions move to it, and d0 stays their secondary.
    both = [DataDir(d0, 10**9), DataDir(d1, 10**9)]
    with standalone(tmp_path, clock, data_dirs=both) as (manager, _db):
        store = manager.store
        assert any(store.layout.part_sec)
        primary_d1 = [h for h in hashes if store.layout.primary_dir(h) == d1.absolute()]
        assert primary_d1
        worker = RebalanceWorker(manager)
        while await worker.work() is not WorkerState.DONE:
            pass
        assert worker.moved == len(primary_d1)
        for h in hashes:
            found = store.find_block(h)
            assert found is not None
            assert found.path.parent == store.block_dir(store.layout.primary_dir(h), h)
            assert store.read_block(h).data is not None
        assert not list(d0.rglob(primary_d1[0].hex()))
        saved = decode_versioned(DataLayout, (tmp_path / "meta" / DATA_LAYOUT_FILE).read_bytes())
        assert not any(saved.part_sec)
        assert saved.part_prim == store.layout.part_prim
    # From the next start on, only primary directories are searched.
    with standalone(tmp_path, clock, data_dirs=both) as (manager, _db):
        assert not any(manager.store.layout.part_sec)
        assert all(manager.store.has_block(h) for h in hashes)
