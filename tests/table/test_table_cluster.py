"""Tables on three nodes in one process: real transport, layout, sqlite, workers.

Checks the distributed side of garage_table (quorum writes and reads, read repair,
Merkle anti-entropy) with every real part but OS processes (tests/cluster does those).
Waits poll with a deadline; no test asserts a duration.
"""

from __future__ import annotations

import functools
import threading
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import anyio
import pytest
from tests.polling import wait_until
from tests.table.conftest import KvEntry
from tests.table.harness import (
    connected,
    local,
    merkle_settled,
    started,
    three_node_layout,
    three_started,
)

from garage_rpc.net import NodeKey
from garage_rpc.rpc_helper import QuorumError
from garage_table.schema import DeletedFilter, EnumerationOrder, StringKey

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def test_writes_and_reads_go_through_quorums(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        a, *others = await three_started(tg, stack, tmp_path)
        await a.table.insert(KvEntry.put("bucket", "key1", "v1", ts=10))
        got = await others[1].table.get(StringKey("bucket"), StringKey("key1"))
        assert got is not None
        assert got.value.v == "v1"
        # A newer write anywhere wins everywhere; a tombstone is a write.
        await others[0].table.insert(KvEntry.put("bucket", "key1", None, ts=11))
        deleted = await a.table.get(StringKey("bucket"), StringKey("key1"))
        assert deleted is not None
        assert deleted.is_tombstone()
        await a.table.insert_many(
            [KvEntry.put("bucket", f"k{i:02d}", str(i), ts=5) for i in range(20)]
        )
        listed = await others[1].table.get_range(StringKey("bucket"), StringKey("k"), limit=5)
        assert [e.sk for e in listed] == ["k00", "k01", "k02", "k03", "k04"]
        assert await a.table.get(StringKey("bucket"), StringKey("nope")) is None
        tg.cancel_scope.cancel()


async def test_a_replica_down_during_writes_gets_them_by_anti_entropy(tmp_path: Path) -> None:
    keys = [NodeKey.generate() for _ in range(3)]
    layout = three_node_layout(keys)
    n_writes = 200
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        a = await stack.enter_async_context(started(tg, keys[0], tmp_path / "a", layout, []))
        b = await stack.enter_async_context(
            started(tg, keys[1], tmp_path / "b", layout, [(a.id, a.addr)])
        )
        async with started(tg, keys[2], tmp_path / "c", layout, [(a.id, a.addr)]) as c:
            await wait_until(lambda: connected([a, b, c]), "full mesh")
            await a.table.insert(KvEntry.put("p", "deleted-later", "x", ts=1))
            c_port = c.addr[1]
        await wait_until(lambda: not a.netapp.is_connected(keys[2].node_id), "c is down")
        # c misses all of these; the quorum of 2 (a and b) accepts them.
        for i in range(n_writes):
            await a.table.insert(KvEntry.put(f"p{i % 7}", f"s{i}", f"v{i}", ts=100 + i))
        await b.table.insert(KvEntry.put("p", "deleted-later", None, ts=2))

        async with started(tg, keys[2], tmp_path / "c", layout, [(a.id, a.addr)], port=c_port) as c:
            await wait_until(lambda: connected([a, b, c]), "c back")
            assert local(c, "p0", "s0") is None  # not there before anti-entropy
            await wait_until(functools.partial(merkle_settled, [a, b]), "merkle trees updated")
            assert await a.syncer.full_sync()
            assert await b.syncer.full_sync()
            for i in range(n_writes):
                entry = local(c, f"p{i % 7}", f"s{i}")
                assert entry is not None, i
                assert entry.value.v == f"v{i}"
            tomb = local(c, "p", "deleted-later")
            assert tomb is not None
            assert tomb.is_tombstone()  # the delete is not undone by the older value
            # Converged: every replica's root hashes agree once c's Merkle tree caught up.
            await wait_until(functools.partial(merkle_settled, [c]), "c's merkle tree")
            for p in range(256):
                roots = {n.data.merkle_updater.root_hash(p) for n in (a, b, c)}
                assert len(roots) == 1, p
        tg.cancel_scope.cancel()


async def test_reads_repair_a_stale_replica_and_fail_clearly_without_a_quorum(
    tmp_path: Path,
) -> None:
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        a, b, c = await three_started(tg, stack, tmp_path)
        # Only a holds the newest value (as if b and c had missed it).
        await anyio.to_thread.run_sync(
            a.data.update_entry, KvEntry.put("r", "k", "new", ts=50).encode()
        )
        await anyio.to_thread.run_sync(
            b.data.update_entry, KvEntry.put("r", "k", "old", ts=40).encode()
        )
        await anyio.to_thread.run_sync(
            c.data.update_entry, KvEntry.put("r", "k", "old", ts=40).encode()
        )
        # Reads from a's side see "new" and repair whoever answered with "old".
        for _ in range(5):
            got = await a.table.get(StringKey("r"), StringKey("k"))
            assert got is not None
            if got.value.v == "new":
                break
        await wait_until(
            lambda: all(
                (e := local(n, "r", "k")) is not None and e.value.v == "new" for n in (a, b)
            ),
            "read repair",
        )
        c.scope.cancel()
        b.scope.cancel()
        await wait_until(
            lambda: not a.netapp.is_connected(b.id) and not a.netapp.is_connected(c.id),
            "b and c down",
        )
        with pytest.raises(QuorumError, match="quorum not reached"):
            await a.table.insert(KvEntry.put("r", "k2", "v", ts=1))
        tg.cancel_scope.cancel()


async def test_a_stale_replica_never_brings_back_deleted_entries_in_a_range(
    tmp_path: Path,
) -> None:
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        a, b, c = await three_started(tg, stack, tmp_path)
        c.scope.cancel()  # the read quorum is then a and b
        await wait_until(lambda: not a.netapp.is_connected(c.id), "c down")
        # a missed the deletes of k0..k2 (it lists them alive); b has the tombstones, and
        # k3..k5 alive. Each node filters its own copy: a's page is k0..k2, b's k3..k5.
        for i in range(6):
            await anyio.to_thread.run_sync(
                a.data.update_entry, KvEntry.put("p", f"k{i}", f"v{i}", ts=10).encode()
            )
            deleted = i < 3
            await anyio.to_thread.run_sync(
                b.data.update_entry,
                KvEntry.put(
                    "p", f"k{i}", None if deleted else f"v{i}", ts=11 if deleted else 10
                ).encode(),
            )
        alive = DeletedFilter.NOT_DELETED
        for reader in (a, b):
            page = await reader.table.get_range(StringKey("p"), filter=alive, limit=3)
            assert [e.sk for e in page] == ["k3", "k4", "k5"]
            one = await reader.table.get_range(StringKey("p"), filter=alive, limit=1)
            assert [e.sk for e in one] == ["k3"]
            back = await reader.table.get_range(
                StringKey("p"), filter=alive, limit=2, order=EnumerationOrder.REVERSE
            )
            assert [e.sk for e in back] == ["k5", "k4"]
            gone = await reader.table.get_range(
                StringKey("p"), filter=DeletedFilter.DELETED, limit=10
            )
            assert [e.sk for e in gone] == ["k0", "k1", "k2"]
        # The range read repaired a: its copies of k0..k2 are tombstones now.
        await wait_until(
            lambda: all(
                (e := local(a, "p", f"k{i}")) is not None and e.is_tombstone() for i in range(3)
            ),
            "a repaired by the range read",
        )
        tg.cancel_scope.cancel()


async def test_range_pages_are_complete_when_replicas_hold_different_keys(
    tmp_path: Path,
) -> None:
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        a, b, c = await three_started(tg, stack, tmp_path)
        c.scope.cancel()
        await wait_until(lambda: not a.netapp.is_connected(c.id), "c down")
        # a holds the even keys and b the odd ones, some of each deleted on the other side
        # only: paging with every limit must list each live key exactly once, in order.
        expected = []
        for i in range(40):
            holder, other = (a, b) if i % 2 == 0 else (b, a)
            await anyio.to_thread.run_sync(
                holder.data.update_entry, KvEntry.put("q", f"k{i:02d}", "v", ts=5).encode()
            )
            if i % 5 == 0:
                await anyio.to_thread.run_sync(
                    other.data.update_entry, KvEntry.put("q", f"k{i:02d}", None, ts=6).encode()
                )
            else:
                expected.append(f"k{i:02d}")
        for limit in (1, 2, 3, 7, 50):
            listed: list[str] = []
            start: StringKey | None = None
            while True:
                page = await a.table.get_range(
                    StringKey("q"), start, filter=DeletedFilter.NOT_DELETED, limit=limit
                )
                listed += [e.sk for e in page]
                if len(page) < limit:
                    break
                start = StringKey(page[-1].sk + "\x00")  # the next key after the page
            assert listed == expected, limit
        tg.cancel_scope.cancel()


async def test_a_full_copy_write_is_readable_on_its_node_as_soon_as_it_returns(
    tmp_path: Path,
) -> None:
    # Full-copy tables (buckets, keys) read from the local node only. A write quorum of
    # n - 1 can be reached without the writing node itself: the write must still wait for it.
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        nodes = await three_started(tg, stack, tmp_path, full_copy=True)
        a = nodes[0]
        # a's disk is slow: its write lock is held while the others acknowledge.
        held, release = threading.Event(), threading.Event()

        def hold(tx: object) -> None:
            held.set()
            release.wait(10)

        async def slow_disk() -> None:
            await anyio.to_thread.run_sync(a.db.transaction, hold)

        async with anyio.create_task_group() as disk:
            disk.start_soon(slow_disk)
            await anyio.to_thread.run_sync(held.wait)
            returned = anyio.Event()

            async def write() -> None:
                await a.table.insert(KvEntry.put("buckets", "b1", "id1", ts=1))
                returned.set()

            async with anyio.create_task_group() as writer:
                writer.start_soon(write)
                # b and c have it (the quorum) while a's own write waits on its disk.
                await wait_until(
                    lambda: all(local(n, "buckets", "b1") is not None for n in nodes[1:]),
                    "the quorum acknowledged",
                )
                await anyio.sleep(0.3)
                assert local(a, "buckets", "b1") is None
                assert not returned.is_set()  # insert waits for a's own copy
                release.set()
            # insert returned: a's own copy, which its reads use, is there.
            got = await a.table.get(StringKey("buckets"), StringKey("b1"))
            assert got is not None
            assert got.value.v == "id1"
        tg.cancel_scope.cancel()
