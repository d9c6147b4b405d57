"""The resync queue and workers: missing blocks fetched, unneeded ones offloaded and deleted,
failures retried with backoff (Garage: src/block/resync.rs, rc.rs; design §9.3, §9.6).

The block manager's clock is a FakeClock: tests cross the 10 min GC delay and the retry
backoffs by moving it; everything else is real (TCP, sqlite, data directories, workers).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.model.block.harness import PAST_GC_DELAY_MS, QUICK, FakeClock, block_of, cluster
from tests.polling import wait_until

from garage_model.block import (
    MAX_RESYNC_WORKERS,
    RESYNC_RETRY_DELAY_MS,
    BlockResyncManager,
    DataBlock,
    ErrorCounter,
    RcEntry,
    ResyncWorker,
    retry_delay_ms,
)
from garage_util.background import BgVars, InvalidBgVarValueError, WorkerState
from garage_util.db import open_db

if TYPE_CHECKING:
    from pathlib import Path

    from garage_util.data import Hash
    from garage_util.db import Transaction

pytestmark = pytest.mark.anyio

DATA = b"block contents, fairly compressible " * 20_000


async def test_a_referenced_block_missing_here_is_fetched_from_a_peer(tmp_path: Path) -> None:
    clock = FakeClock()
    async with cluster(tmp_path, clock) as nodes:
        a, b, c = nodes
        h, data = block_of(DATA)
        block = DataBlock.from_buffer(data, compression_level=1)
        for n in (b, c):  # the put reached b and c, not a
            n.store.write_block(h, block, fsync=False)
        await anyio.to_thread.run_sync(a.incref, h)
        # The check is due 2 x rpc timeout after the first reference: not yet.
        await anyio.sleep(0.2)
        assert not a.has_block(h)
        clock.advance(int(2 * QUICK.timeout_s * 1000) + 1)
        await wait_until(lambda: a.has_block(h), "a fetched the block")
        assert await a.manager.rpc_get_block(h) == data
        await wait_until(lambda: a.manager.resync.queue_len() == 0, "a's queue drained")
        assert a.manager.resync.list_errors() == []


async def test_the_last_decref_deletes_the_block_everywhere_after_the_gc_delay(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with cluster(tmp_path, clock) as nodes:
        h, data = block_of(DATA)
        await nodes[0].manager.rpc_put_block(h, data)
        await wait_until(lambda: all(n.has_block(h) for n in nodes), "stored everywhere")
        for n in nodes:
            await anyio.to_thread.run_sync(n.incref, h, 2)
        # One of two references goes: the block stays, even long after.
        for n in nodes:
            await anyio.to_thread.run_sync(n.decref, h)
        clock.advance(PAST_GC_DELAY_MS)
        await wait_until(
            lambda: all(n.manager.resync.queue_len() == 0 for n in nodes), "checks done"
        )
        assert all(n.has_block(h) for n in nodes)
        assert all(n.manager.get_block_rc(h) == 1 for n in nodes)
        # The last one goes: nothing happens before the GC delay...
        for n in nodes:
            await anyio.to_thread.run_sync(n.decref, h)
        assert all(n.manager.rc.get(h).deletable_at_ms is not None for n in nodes)
        await anyio.sleep(0.2)
        assert all(n.has_block(h) for n in nodes)
        # ... and after it, every node deletes its copy and forgets the rc entry.
        clock.advance(PAST_GC_DELAY_MS)
        await wait_until(lambda: not any(n.has_block(h) for n in nodes), "deleted everywhere")
        await wait_until(
            lambda: all(n.rc.get(h) == RcEntry() for n in (m.manager for m in nodes)),
            "rc entries cleared",
        )


async def test_a_recount_finding_live_references_keeps_the_block(tmp_path: Path) -> None:
    clock = FakeClock()
    async with cluster(tmp_path, clock, workers=False) as nodes:
        a = nodes[0]
        h, data = block_of(DATA)
        await a.manager.rpc_put_block(h, data)
        await wait_until(lambda: all(n.has_block(h) for n in nodes), "stored everywhere")
        # A block_ref table of our own: one live reference that the stored rc missed.
        refs = a.db.open_tree("test_block_ref")
        refs.insert(bytes(h) + b"version-1", b"live")
        a.manager.set_ref_counter(lambda hash: sum(1 for _ in refs.range(bytes(hash), None)))
        await anyio.to_thread.run_sync(a.incref, h)
        await anyio.to_thread.run_sync(a.decref, h)
        clock.advance(PAST_GC_DELAY_MS)
        result = await a.manager.resync.resync_iter(a.manager.resync_block)
        assert result.busy
        [info] = a.manager.resync.list_errors()
        assert info.hash == h
        assert info.errors == 1
        assert a.has_block(h)
        assert a.manager.get_block_rc(h) == 1  # fixed by the recount


async def test_an_unneeded_block_is_offered_to_the_nodes_that_need_it_before_deletion(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with cluster(tmp_path, clock, workers=False) as nodes:
        a, b, c = nodes
        h, data = block_of(os.urandom(100_000))
        block = DataBlock.from_buffer(data, compression_level=1)
        a.store.write_block(h, block, fsync=False)  # only a has it, and a does not need it
        await anyio.to_thread.run_sync(b.incref, h)  # b needs it and lacks it
        await anyio.to_thread.run_sync(a.manager.resync.put_to_resync, h, 0)
        result = await a.manager.resync.resync_iter(a.manager.resync_block)
        assert result.busy
        assert a.manager.resync.list_errors() == []
        assert b.has_block(h)
        assert not c.has_block(h)
        assert not a.has_block(h)


async def test_failed_resyncs_back_off_and_are_listed(tmp_path: Path) -> None:
    clock = FakeClock()
    delay = 1_000
    async with cluster(tmp_path, clock, workers=False, retry_delay_ms=delay) as nodes:
        a = nodes[0]
        h, _data = block_of(b"a block that no node has " * 100)
        await anyio.to_thread.run_sync(a.incref, h)
        clock.advance(int(2 * QUICK.timeout_s * 1000) + 1)  # the incref check is due
        resync = a.manager.resync
        assert (await resync.resync_iter(a.manager.resync_block)).busy
        [info] = resync.list_errors()
        assert (info.hash, info.errors) == (h, 1)
        assert info.last_try_ms == clock()
        assert info.next_try_ms == clock() + delay
        [(when, queued)] = resync.queued_hashes()
        assert (when, queued) == (info.next_try_ms, h)
        # Not due yet: the worker idles (for at most its polling interval).
        idle = await resync.resync_iter(a.manager.resync_block)
        assert not idle.busy
        clock.advance(delay)
        assert (await resync.resync_iter(a.manager.resync_block)).busy
        [info2] = resync.list_errors()
        assert info2.errors == 2
        assert info2.next_try_ms == clock() + 2 * delay
        # An entry queued meanwhile for the same block waits for the backoff too (it is
        # moved to the retry time, where the block already has its entry).
        resync.put_to_resync(h, 0)
        assert len(resync.queued_hashes()) == 2
        assert (await resync.resync_iter(a.manager.resync_block)).busy
        assert resync.queued_hashes() == [(info2.next_try_ms, h)]
        assert resync.list_errors()[0].errors == 2
        # retry_now: due at once, the count is kept (a new failure backs off further).
        assert resync.retry_now(h)
        assert (await resync.resync_iter(a.manager.resync_block)).busy
        [info3] = resync.list_errors()
        assert info3.errors == 3
        assert resync.clear_error(h)
        assert resync.list_errors() == []
        assert not resync.clear_error(h)
        assert not resync.retry_now(h)


async def test_resync_settings_are_checked_and_persisted(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        resync = BlockResyncManager(db, metadata_dir=tmp_path)
        assert (resync.worker_count, resync.tranquility) == (1, 2)
        bg_vars = BgVars()
        resync.register_bg_vars(bg_vars)
        bg_vars.set("resync-worker-count", "4")
        bg_vars.set("resync-tranquility", "7")
        with pytest.raises(InvalidBgVarValueError):
            bg_vars.set("resync-worker-count", str(MAX_RESYNC_WORKERS + 1))
        with pytest.raises(ValueError, match="out of range"):
            resync.set_tranquility(-1)
        again = BlockResyncManager(db, metadata_dir=tmp_path)
        assert (again.worker_count, again.tranquility) == (4, 7)


async def test_workers_beyond_the_worker_count_stay_idle(tmp_path: Path) -> None:
    clock = FakeClock()
    with open_db(tmp_path / "db") as db:
        resync = BlockResyncManager(db, clock_ms=clock, max_idle_s=0.01)
        done: list[Hash] = []

        async def resync_block(hash: Hash) -> None:
            done.append(hash)

        first, second = (ResyncWorker(i, resync, resync_block) for i in range(2))
        h, _ = block_of(b"x")
        resync.put_to_resync(h, 0)
        assert await second.work() is WorkerState.IDLE
        assert done == []
        assert "disabled" in second.status().freeform[0]
        assert await first.work() is not WorkerState.IDLE
        assert done == [h]
        assert resync.queue_len() == 0
        # Raising the count wakes and enables the second worker.
        resync.set_worker_count(2)
        with anyio.fail_after(5):
            assert await second.wait_for_work() is WorkerState.BUSY
        resync.put_to_resync(h, 0)
        assert await second.work() is not WorkerState.IDLE
        assert done == [h, h]


async def test_hook_writes_are_part_of_the_callers_transaction(tmp_path: Path) -> None:
    clock = FakeClock()
    with open_db(tmp_path / "db") as db:
        resync = BlockResyncManager(db, clock_ms=clock)
        h, _ = block_of(b"y")

        def aborted(tx: Transaction) -> None:
            resync.put_to_resync_at(tx, h, 5)
            raise RuntimeError("the caller's transaction fails")

        with pytest.raises(RuntimeError):
            db.transaction(aborted)
        assert resync.queue_len() == 0
        db.transaction(lambda tx: resync.put_to_resync_at(tx, h, 5))
        assert resync.queued_hashes() == [(5, h)]


@given(st.integers(min_value=1, max_value=100))
def test_retry_delay_doubles_up_to_64_times_the_base(errors: int) -> None:
    delay = retry_delay_ms(errors)
    assert delay == RESYNC_RETRY_DELAY_MS * 2 ** min(errors - 1, 6)
    assert RESYNC_RETRY_DELAY_MS <= delay <= 64 * RESYNC_RETRY_DELAY_MS


@given(st.integers(min_value=1, max_value=2**40), st.integers(min_value=0, max_value=2**60))
def test_error_counter_round_trips(errors: int, last_try: int) -> None:
    ec = ErrorCounter(errors, last_try)
    assert ErrorCounter.parse(ec.serialize()) == ec
    assert ec.add1(last_try + 5) == ErrorCounter(errors + 1, last_try + 5)
    assert ec.next_try_ms() == last_try + retry_delay_ms(errors)
