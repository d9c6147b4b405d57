"""K2V on a 3-node cluster, through K2VClient against different nodes (issue 10).

Three ``garage server`` processes with ``[k2v_api]`` (tests/api/k2v_cluster.py),
replication factor 3. Writes are routed to one storage node of the partition, which stamps
them with its own clock and writes to a quorum (2 of 3); reads use a quorum too, so what
one node acknowledged is read at once through any other. The scenarios of the issue:

- concurrent writers without tokens produce sibling values, seen from every node, and a
  write with the token (through a third node) resolves them;
- PollItem and PollRange wake when another node writes (the poll's own timeout is the
  bound: a ``None`` would mean it was not woken);
- a delete without a causality token, concurrent with a write through another node, is
  kept next to the values: reads return them and a tombstone;
- batch operations over ranges, written, read and deleted through different nodes;
- the index counts match the items after deletes (eventually: counters are propagated in
  the background).
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from tests.api.k2v_cluster import K2VCluster, start_k2v_cluster

from garage_api.k2v import DeleteBatchQuery, InsertBatchItem, ReadBatchQuery

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from garage_api.k2v.client import K2VClient

pytestmark = pytest.mark.slow


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.fixture(scope="module")
def k2v_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K2VCluster]:
    yield from start_k2v_cluster(Path(tmp_path_factory.mktemp("k2vcluster")))


@pytest.fixture
async def clients(k2v_cluster: K2VCluster) -> AsyncIterator[list[K2VClient]]:
    """One client per node: A, B, C."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(k2v_cluster.client(i)) for i in range(3)]


@pytest.fixture
def pk() -> str:
    return f"cluster-{uuid.uuid4().hex[:12]}"


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Waits for the cluster to converge (no timing assertion: a deadline against hangs)."""
    with anyio.move_on_after(60):
        # Polling on purpose: other processes' state, with no events to wait on.
        while not await check():  # noqa: ASYNC110
            await anyio.sleep(0.2)
        return
    raise AssertionError(f"gave up waiting: {what}")


@pytest.mark.anyio
async def test_concurrent_writers_make_siblings_a_token_resolves_them(
    clients: list[K2VClient], pk: str
) -> None:
    a, b, c = clients
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.insert_item, pk, "doc", b"from A")
        tg.start_soon(b.insert_item, pk, "doc", b"from B")
    reads = [await client.read_item(pk, "doc") for client in clients]
    for read in reads:
        assert read is not None
        assert set(read.values) == {b"from A", b"from B"}
        assert read.is_conflict
    seen = reads[2]
    assert seen is not None
    # A third writer that saw both values replaces them, through the third node.
    await c.insert_item(pk, "doc", b"merged", seen.causality_token)
    for client in clients:
        item = await client.read_item(pk, "doc")
        assert item is not None
        assert item.values == (b"merged",)
    # An older token (before the merge) makes a sibling of the merged value again.
    await a.insert_item(pk, "doc", b"late", seen.causality_token)
    late = await b.read_item(pk, "doc")
    assert late is not None
    assert set(late.values) == {b"merged", b"late"}
    # A deletion with the latest token, through yet another node: a tombstone everywhere.
    await c.delete_item(pk, "doc", late.causality_token)
    for client in clients:
        gone = await client.read_item(pk, "doc")
        assert gone is not None
        assert gone.values == (None,)


#: The polls' own timeout when another node writes. A write wakes the subscribers of the
#: storage nodes as it is stored there, within a quorum write; a background sync (Merkle
#: anti-entropy runs every 10 minutes, read repair only on reads) would take far longer, so
#: a poll that only woke through one of those ends in a 304 and the test fails. The bound
#: leaves room for a loaded machine.
POLL_WAKE_BOUND_S = 20


@pytest.mark.anyio
async def test_polls_wake_when_another_node_writes(clients: list[K2VClient], pk: str) -> None:
    a, b, c = clients
    await a.insert_item(pk, "watched", b"v0")
    seen = await a.read_item(pk, "watched")
    assert seen is not None
    first_range = await c.poll_range(pk, timeout_s=10)
    assert first_range is not None
    assert [i.sort_key for i in first_range.items] == ["watched"]

    polled: dict[str, Any] = {}

    async def poll_item() -> None:
        polled["item"] = await a.poll_item(
            pk, "watched", seen.causality_token, timeout_s=POLL_WAKE_BOUND_S
        )

    async def poll_range() -> None:
        polled["range"] = await c.poll_range(
            pk, seen_marker=first_range.seen_marker, timeout_s=POLL_WAKE_BOUND_S
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll_item)
        tg.start_soon(poll_range)
        await anyio.sleep(0.5)  # let the polls subscribe; a write before is seen anyway
        await b.insert_item(pk, "watched", b"v1", seen.causality_token)
    item = polled["item"]
    assert item is not None, "PollItem on A was not woken by a write through B"
    assert item.values == (b"v1",)
    changed = polled["range"]
    assert changed is not None, "PollRange on C was not woken by a write through B"
    assert [(i.sort_key, i.values) for i in changed.items] == [("watched", (b"v1",))]


@pytest.mark.anyio
async def test_delete_without_token_concurrent_with_a_write(
    clients: list[K2VClient], pk: str
) -> None:
    """A DeleteItem without a token (through B) and a write without one (through C), at
    the same time, on an item A wrote: none supersedes another, so every node reads the
    first value, the second and a tombstone; the token of that read resolves them."""
    a, b, c = clients
    await a.insert_item(pk, "doc", b"first")
    async with anyio.create_task_group() as tg:
        tg.start_soon(b.delete_item, pk, "doc", None)
        tg.start_soon(c.insert_item, pk, "doc", b"second")
    reads = [await client.read_item(pk, "doc") for client in clients]
    for read in reads:
        assert read is not None
        assert len(read.values) == 3
        assert set(read.values) == {b"first", b"second", None}
        assert not read.is_tombstone
    # A plain delete without a token on a single value: the value and a tombstone, from
    # every node (in the order of the nodes that stamped them, as Garage lists them).
    await a.insert_item(pk, "single", b"kept")
    await b.delete_item(pk, "single", None)
    for client in clients:
        single = await client.read_item(pk, "single")
        assert single is not None
        assert sorted(single.values, key=lambda v: v is None) == [b"kept", None]
    last = reads[0]
    assert last is not None
    await c.insert_item(pk, "doc", b"resolved", last.causality_token)
    resolved = await a.read_item(pk, "doc")
    assert resolved is not None
    assert resolved.values == (b"resolved",)


@pytest.mark.anyio
async def test_batches_over_ranges_across_nodes(clients: list[K2VClient], pk: str) -> None:
    a, b, c = clients
    other = pk + "/other"
    await a.insert_batch(
        [InsertBatchItem(pk, f"k{i:03}", None, f"v{i}".encode()) for i in range(25)]
        + [InsertBatchItem(other, f"o{i}", None, b"o") for i in range(4)]
    )
    everything, window, page, backwards, single, others = await b.read_batch(
        [
            ReadBatchQuery(pk),
            ReadBatchQuery(pk, start="k005", end="k010"),
            ReadBatchQuery(pk, prefix="k01", limit=4),
            ReadBatchQuery(pk, reverse=True, limit=3),
            ReadBatchQuery(pk, start="k020", single_item=True),
            ReadBatchQuery(other),
        ]
    )
    assert [i.sort_key for i in everything.items] == [f"k{i:03}" for i in range(25)]
    assert [i.values for i in everything.items[:2]] == [(b"v0",), (b"v1",)]
    assert [i.sort_key for i in window.items] == [f"k{i:03}" for i in range(5, 10)]
    assert [i.sort_key for i in page.items] == ["k010", "k011", "k012", "k013"]
    assert (page.more, page.next_start) == (True, "k014")
    assert [i.sort_key for i in backwards.items] == ["k024", "k023", "k022"]
    assert [i.sort_key for i in single.items] == ["k020"]
    assert len(others.items) == 4

    deleted = await c.delete_batch(
        [DeleteBatchQuery(pk, prefix="k01"), DeleteBatchQuery(other, start="o1", end="o3")]
    )
    assert [d.deleted_items for d in deleted] == [10, 2]
    left, tombstones, others_left = await a.read_batch(
        [
            ReadBatchQuery(pk),
            ReadBatchQuery(pk, prefix="k01", tombstones=True),
            ReadBatchQuery(other),
        ]
    )
    assert [i.sort_key for i in left.items] == [f"k{i:03}" for i in (*range(10), *range(20, 25))]
    assert [i.values for i in tombstones.items] == [(None,)] * 10
    assert [i.sort_key for i in others_left.items] == ["o0", "o3"]


@pytest.mark.anyio
async def test_index_counts_match_items_after_deletes(clients: list[K2VClient], pk: str) -> None:
    a, b, _c = clients
    parts = [f"{pk}/p{i}" for i in range(3)]
    await a.insert_batch(
        [InsertBatchItem(parts[0], f"s{i}", None, b"x" * (i + 1)) for i in range(6)]
        + [InsertBatchItem(parts[1], f"s{i}", None, b"yy") for i in range(3)]
        + [InsertBatchItem(parts[2], "only", None, b"zzz")]
    )
    await b.insert_item(parts[1], "s0", b"sibling")  # a conflict in parts[1]
    # Deletes through another node: a range, a single item, and a whole partition.
    await b.delete_batch([DeleteBatchQuery(parts[0], start="s2", end="s4")])
    s5 = await a.read_item(parts[0], "s5")
    assert s5 is not None
    await b.delete_item(parts[0], "s5", s5.causality_token)
    await a.delete_batch([DeleteBatchQuery(parts[2])])

    async def expected() -> dict[str, tuple[int, int, int, int]]:
        """The counts the index must show, computed from the items themselves."""
        out = {}
        results = await a.read_batch([ReadBatchQuery(p) for p in parts])
        for part, result in zip(parts, results, strict=True):
            live = [v for item in result.items for v in item.values if v is not None]
            if result.items:
                out[part] = (
                    len(result.items),
                    sum(item.is_conflict for item in result.items),
                    len(live),
                    sum(len(v) for v in live),
                )
        return out

    want = await expected()
    # s0 s1 (1+2 bytes) and s4 (5 bytes) are left of p0; p1 has 3 items, one with 2 values.
    assert want == {parts[0]: (3, 0, 3, 8), parts[1]: (3, 1, 4, 13)}

    for client in clients:

        async def matches(client: K2VClient = client) -> bool:
            index = await client.read_index(prefix=pk + "/")
            got = {
                p.partition_key: (p.entries, p.conflicts, p.values, p.bytes)
                for p in index.partition_keys
            }
            return got == want

        await eventually(matches, f"{client} reports the index of the items")
