"""The insert queue: cascades queued inside hooks, sent by the worker, compare-and-deleted."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import pytest
from tests.table.conftest import KvEntry, KvSchema, StaticReplication

from garage_table._data import TableData
from garage_table._queue import InsertQueueWorker
from garage_util.background import BackgroundRunner, WorkerState
from garage_util.db import open_db

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from garage_util.data import Uuid
    from garage_util.db import Db, Transaction


def entry(pk: str, sk: str, value: str | None, ts: int = 1) -> KvEntry:
    return KvEntry.put(pk, sk, value, ts)


class Recorder:
    """An ``insert_many`` that records its calls, optionally running ``during`` first."""

    def __init__(self, during: Callable[[list[KvEntry]], None] | None = None) -> None:
        self.calls: list[list[KvEntry]] = []
        self.during = during
        self.fail = False
        self._called: anyio.Event | None = None

    async def __call__(self, entries: list[KvEntry]) -> None:
        self.calls.append(entries)
        if self._called is not None:
            self._called.set()
        if self.during is not None:
            await anyio.to_thread.run_sync(self.during, entries)
        if self.fail:
            raise RuntimeError("quorum not reached")

    def sent(self) -> list[KvEntry]:
        return [e for call in self.calls for e in call]

    async def wait_sent(self, count: int) -> None:
        """Wait until ``count`` entries were sent in all."""
        while len(self.sent()) < count:
            self._called = anyio.Event()
            await self._called.wait()


def enqueue(data: TableData[KvEntry], *entries: KvEntry) -> None:
    def txn(tx: Transaction) -> None:
        for e in entries:
            data.queue_insert(tx, e)

    data.db.transaction(txn)


def cascading_pair(
    db: Db, replication: StaticReplication, me: Uuid
) -> tuple[TableData[KvEntry], TableData[KvEntry]]:
    """A "source" table whose hook queues a copy of each change into a "copies" table."""
    copies: TableData[KvEntry] = TableData(KvSchema("copies"), replication, db, node_id=me)

    def hook(tx: Transaction, old: KvEntry | None, new: KvEntry | None) -> None:
        if new is not None:
            copies.queue_insert(tx, KvEntry(new.pk, "copy-of-" + new.sk, new.value))

    source: TableData[KvEntry] = TableData(KvSchema("source", hook), replication, db, node_id=me)
    return source, copies


@pytest.mark.anyio
async def test_worker_sends_merged_entries_and_empties_the_queue(
    kv_data: TableData[KvEntry],
) -> None:
    a1, a2, b = entry("p", "a", "1", ts=1), entry("p", "a", "2", ts=2), entry("p", "b", "x")
    enqueue(kv_data, a1, b)
    enqueue(kv_data, a2)
    insert_many = Recorder()
    worker = InsertQueueWorker(kv_data, insert_many)
    assert worker.name == "kv queue"
    assert await worker.work() == WorkerState.BUSY
    assert sorted(insert_many.sent(), key=lambda e: e.sk) == [a2, b]
    assert kv_data.insert_queue_len() == 0
    assert worker.status().queue_length == 0
    assert await worker.work() == WorkerState.IDLE
    assert len(insert_many.calls) == 1


@pytest.mark.anyio
async def test_worker_batches(kv_data: TableData[KvEntry]) -> None:
    enqueue(kv_data, *(entry("p", f"s{i}", "v") for i in range(5)))
    insert_many = Recorder()
    worker = InsertQueueWorker(kv_data, insert_many, batch_size=2)
    while await worker.work() == WorkerState.BUSY:
        pass
    assert [len(c) for c in insert_many.calls] == [2, 2, 1]
    assert len(insert_many.sent()) == 5
    with pytest.raises(ValueError, match="batch_size"):
        InsertQueueWorker(kv_data, insert_many, batch_size=0)


@pytest.mark.anyio
async def test_entries_requeued_during_the_insert_stay(kv_data: TableData[KvEntry]) -> None:
    a1, a2, b = entry("p", "a", "1", ts=1), entry("p", "a", "2", ts=2), entry("p", "b", "x")
    enqueue(kv_data, a1, b)
    requeued: list[bool] = []

    def requeue_once(entries: list[KvEntry]) -> None:
        if not requeued:
            requeued.append(True)
            enqueue(kv_data, a2)

    insert_many = Recorder(requeue_once)
    worker = InsertQueueWorker(kv_data, insert_many)
    assert await worker.work() == WorkerState.BUSY
    assert dict(kv_data.insert_queue.iter()) == {
        bytes(a2.partition_key().hash()) + b"a": a2.encode()
    }
    assert await worker.work() == WorkerState.BUSY
    assert insert_many.calls[1] == [a2]
    assert kv_data.insert_queue_len() == 0


@pytest.mark.anyio
async def test_a_failed_insert_keeps_the_queue(kv_data: TableData[KvEntry]) -> None:
    enqueue(kv_data, entry("p", "a", "1"))
    insert_many = Recorder()
    insert_many.fail = True
    worker = InsertQueueWorker(kv_data, insert_many)
    with pytest.raises(RuntimeError, match="quorum"):
        await worker.work()
    assert kv_data.insert_queue_len() == 1
    insert_many.fail = False
    assert await worker.work() == WorkerState.BUSY
    assert kv_data.insert_queue_len() == 0


@pytest.mark.anyio
async def test_queue_insert_in_a_hook_reaches_another_table(
    db: Db, replication: StaticReplication, node_ids: list[Uuid]
) -> None:
    source, copies = cascading_pair(db, replication, node_ids[0])
    original = entry("p", "s", "v")
    source.update_entry(original.encode())
    assert copies.insert_queue_len() == 1
    assert copies.store.len() == 0

    async def insert_locally(entries: list[KvEntry]) -> None:
        await anyio.to_thread.run_sync(copies.update_many, [e.encode() for e in entries])

    worker = InsertQueueWorker(copies, insert_locally)
    assert await worker.work() == WorkerState.BUSY
    assert copies.insert_queue_len() == 0
    stored = copies.read_entry(
        original.partition_key(), KvEntry(original.pk, "copy-of-s", original.value).sort_key()
    )
    assert stored == KvEntry("p", "copy-of-s", original.value).encode()


def test_a_failing_hook_queues_nothing(
    db: Db, replication: StaticReplication, node_ids: list[Uuid]
) -> None:
    copies: TableData[KvEntry] = TableData(KvSchema("copies"), replication, db, node_id=node_ids[0])

    def hook(tx: Transaction, old: KvEntry | None, new: KvEntry | None) -> None:
        assert new is not None
        copies.queue_insert(tx, new)
        raise RuntimeError("cascade refused")

    source: TableData[KvEntry] = TableData(
        KvSchema("source", hook), replication, db, node_id=node_ids[0]
    )
    with pytest.raises(RuntimeError, match="cascade refused"):
        source.update_entry(entry("p", "s", "v").encode())
    assert copies.insert_queue_len() == 0
    assert source.store.len() == 0
    assert not copies.insert_queue_notify.pending


@pytest.mark.anyio
async def test_the_queue_survives_a_restart(
    engine: str, tmp_path: Path, replication: StaticReplication, node_ids: list[Uuid]
) -> None:
    queued = [entry("p", f"s{i}", "v") for i in range(3)]
    with open_db(tmp_path / "meta", engine) as db:
        data = TableData(KvSchema(), replication, db, node_id=node_ids[0])
        enqueue(data, *queued)
    with open_db(tmp_path / "meta", engine) as db:
        data = TableData(KvSchema(), replication, db, node_id=node_ids[0])
        insert_many = Recorder()
        worker = InsertQueueWorker(data, insert_many)
        assert await worker.work() == WorkerState.BUSY
        assert insert_many.sent() == queued
        assert data.insert_queue_len() == 0


@pytest.mark.anyio
async def test_worker_in_a_runner_wakes_on_queue_insert(
    db: Db, replication: StaticReplication, node_ids: list[Uuid]
) -> None:
    source, copies = cascading_pair(db, replication, node_ids[0])
    insert_many = Recorder()
    runner = BackgroundRunner()
    runner.spawn_worker(InsertQueueWorker(copies, insert_many))
    async with anyio.create_task_group() as tg:
        await tg.start(runner.run)
        with anyio.fail_after(10):
            for i in range(3):
                # The worker is idle (it would sleep 600 s): only the notification wakes it.
                await anyio.wait_all_tasks_blocked()
                await anyio.to_thread.run_sync(
                    source.update_entry, entry("p", f"s{i}", "v", ts=i + 1).encode()
                )
                await insert_many.wait_sent(i + 1)
            # A write in the event-loop thread wakes it too.
            await anyio.wait_all_tasks_blocked()
            source.update_entry(entry("p", "loop", "v").encode())
            await insert_many.wait_sent(4)
        assert [e.sk for e in insert_many.sent()] == [
            "copy-of-s0",
            "copy-of-s1",
            "copy-of-s2",
            "copy-of-loop",
        ]
        await runner.shutdown()
    assert copies.insert_queue_len() == 0
