"""K2V on one node with real tables: routed inserts, polls, range reads, ReadIndex, the
node's clock (tests/model/k2v/harness.py)."""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING

import anyio
import pytest
from tests.model.k2v.harness import K2VNode, single_node

from garage_model.helper import BadRequestError
from garage_model.k2v import (
    CausalContext,
    InvalidSeenMarker,
    K2VIndexPage,
    K2VItem,
    K2VItemFilter,
    K2VItemPartition,
    PollRange,
    make_node_id,
    read_index,
    read_range,
)
from garage_util.data import FixedBytes32

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

pytestmark = pytest.mark.anyio

BUCKET = FixedBytes32(b"\xb3" * 32)
PART = K2VItemPartition(BUCKET, "pk")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[K2VNode]:
    async with single_node(tmp_path / "meta") as n:
        yield n


async def read(node: K2VNode, sk: str, pk: str = "pk") -> K2VItem | None:
    return await node.k2v_item_table.table.get(
        K2VItemPartition(BUCKET, pk), K2VItem.new(BUCKET, pk, sk).sort_key()
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Polls a condition on state that changes in the background (the insert queues)."""
    with anyio.move_on_after(30):
        while not await check():  # noqa: ASYNC110  # the queue worker has no event to wait on
            await anyio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def test_inserts_resolve_siblings_with_the_token(node: K2VNode) -> None:
    rpc = node.k2v_rpc
    await rpc.insert(BUCKET, "pk", "sk", None, b"one")
    await rpc.insert(BUCKET, "pk", "sk", None, b"two")
    item = await read(node, "sk")
    assert item is not None
    assert item.values() == [b"one", b"two"]
    ct = CausalContext.parse(item.causal_context().serialize())
    await rpc.insert(BUCKET, "pk", "sk", ct, b"three")
    item = await read(node, "sk")
    assert item is not None
    assert item.values() == [b"three"]
    # A delete with the token leaves a tombstone (filtered out of live reads).
    await rpc.insert(BUCKET, "pk", "sk", item.causal_context(), None)
    gone = await read(node, "sk")
    assert gone is not None
    assert gone.is_tombstone()
    live = await read_range(
        node.k2v_item_table.table, PART, filter=K2VItemFilter(exclude_only_tombstones=True)
    )
    assert live.entries == []


async def test_values_get_times_above_the_persisted_node_clock(tmp_path: Path) -> None:
    stuck_clock = lambda: 1000  # noqa: E731  # a wall clock that does not move
    async with single_node(tmp_path / "meta", clock_ms=stuck_clock) as node:
        me = make_node_id(node.netapp.id)
        await node.k2v_rpc.insert(BUCKET, "pk", "a", None, b"x")
        assert node.schema.local_timestamp() == 1001
        # Another item: its own entry is empty, the node's clock still moves forward.
        await node.k2v_rpc.insert(BUCKET, "pk", "b", None, b"y")
        b = await read(node, "b")
        assert b is not None
        assert dict(b.causal_context().vector_clock) == {me: 1002}
        assert node.schema.local_timestamp() == 1002
    async with single_node(tmp_path / "meta", clock_ms=stuck_clock) as node:
        # Persisted: a restart with the same clock does not reuse times.
        await node.k2v_rpc.insert(BUCKET, "pk", "c", None, b"z")
        assert node.schema.local_timestamp() == 1003


async def test_poll_item_wakes_on_a_write_and_times_out_otherwise(node: K2VNode) -> None:
    rpc = node.k2v_rpc
    await rpc.insert(BUCKET, "pk", "sk", None, b"v1")
    item = await read(node, "sk")
    assert item is not None
    ct = item.causal_context()
    # Nothing newer: the poll times out.
    assert await rpc.poll_item(BUCKET, "pk", "sk", ct, 50) is None
    # An older token: answered at once with the current item.
    now = await rpc.poll_item(BUCKET, "pk", "sk", CausalContext(), 10_000)
    assert now is not None
    assert now.values() == [b"v1"]
    # A write while polling wakes the poller.
    woken: list[K2VItem | None] = []

    async def poll() -> None:
        woken.append(await rpc.poll_item(BUCKET, "pk", "sk", ct, 30_000))

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await anyio.sleep(0.1)  # not needed for correctness: usually polls first
        await rpc.insert(BUCKET, "pk", "sk", ct, b"v2")
    (got,) = woken
    assert got is not None
    assert got.values() == [b"v2"]
    assert got.causal_context().is_newer_than(ct)


async def test_poll_range_returns_new_items_of_the_range(node: K2VNode) -> None:
    rpc = node.k2v_rpc
    rng = PollRange(PART, prefix="a")
    first = await rpc.poll_range(rng, None, 1000)
    assert first is not None
    items, marker = first
    assert items == {}
    await rpc.insert(BUCKET, "pk", "a1", None, b"x")
    await rpc.insert(BUCKET, "pk", "b1", None, b"out of range")
    second = await rpc.poll_range(rng, marker, 1000)
    assert second is not None
    items, marker = second
    assert {sk: i.values() for sk, i in items.items()} == {"a1": [b"x"]}
    # Nothing new: None at the timeout, even when items change out of the range.
    await rpc.insert(BUCKET, "pk", "b2", None, b"out of range")
    assert await rpc.poll_range(rng, marker, 100) is None
    # A write in the range while polling.
    results: list[tuple[dict[str, K2VItem], str] | None] = []

    async def poll() -> None:
        results.append(await rpc.poll_range(rng, marker, 30_000))

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await anyio.sleep(0.1)
        await rpc.insert(BUCKET, "pk", "a2", None, b"y")
    (third,) = results
    assert third is not None
    assert list(third[0]) == ["a2"]
    # The first poll without a marker sees everything of the range at once.
    everything = await rpc.poll_range(rng, None, 1000)
    assert everything is not None
    assert list(everything[0]) == ["a1", "a2"]
    with pytest.raises(InvalidSeenMarker):
        await rpc.poll_range(rng, "garbage", 100)


def select(
    keys: list[str],
    prefix: str | None,
    start: str | None,
    end: str | None,
    limit: int | None,
    reverse: bool,
) -> tuple[list[str], bool, str | None] | None:
    """What a range read returns, computed from the sorted keys (None: refused)."""
    if start is not None and prefix is not None and not start.startswith(prefix):
        return None
    chosen = sorted(keys, reverse=reverse)
    if start is not None:
        chosen = [k for k in chosen if (k <= start if reverse else k >= start)]
    if prefix is not None:
        chosen = [k for k in chosen if k.startswith(prefix)]
    if end is not None:
        chosen = [k for k in chosen if (k > end if reverse else k < end)]
    if limit is not None and len(chosen) > limit:
        return chosen[:limit], True, chosen[limit]
    return chosen, False, None


async def test_range_reads_page_prefix_end_and_reverse(node: K2VNode) -> None:
    keys = [f"k{i:04d}" for i in range(45)]
    await node.k2v_rpc.insert_batch(BUCKET, [("pk", k, None, k.encode()) for k in keys])
    table = node.k2v_item_table.table

    async def sks(**kw: object) -> tuple[list[str], bool, str | None]:
        # Small pages: the reads go over several quorum reads.
        page = await read_range(table, PART, page_size=4, **kw)  # type: ignore[arg-type]
        return [i.sk for i in page.entries], page.more, page.next_start

    assert await sks() == (keys, False, None)  # more than one page
    assert await sks(limit=3) == (keys[:3], True, keys[3])
    assert await sks(start=keys[3], limit=2) == (keys[3:5], True, keys[5])
    assert await sks(prefix="k000") == (keys[:10], False, None)
    assert await sks(prefix="k000", reverse=True) == (keys[:10][::-1], False, None)
    assert await sks(prefix="k000", reverse=True, limit=4) == (keys[9:5:-1], True, keys[5])
    assert await sks(start="k0005", end="k0008") == (keys[5:8], False, None)
    assert await sks(start="k0008", end="k0005", reverse=True) == (keys[8:5:-1], False, None)
    assert await sks(limit=10) == (keys[:10], True, keys[10])
    # Against a model of the selection, for a sample of parameter combinations.
    combos = list(
        itertools.product(
            (None, "k00", "k01", "k1", "x"),
            (None, "k0005", "k0012", "k0044"),
            (None, "k0003", "k0020"),
            (None, 0, 1, 5, 100),
            (False, True),
        )
    )
    for prefix, start, end, limit, reverse in random.Random(7).sample(combos, 60):
        kw = {"prefix": prefix, "start": start, "end": end, "limit": limit, "reverse": reverse}
        expected = select(keys, prefix, start, end, limit, reverse)
        if expected is None:
            with pytest.raises(BadRequestError):
                await sks(**kw)
        else:
            assert await sks(**kw) == expected, kw
    page = await sks(reverse=True)
    assert page == (keys[::-1], False, None)
    with pytest.raises(BadRequestError, match="prefix"):
        await read_range(table, PART, prefix="k1", start="k0")


async def test_read_index_counts_the_items_after_deletes(node: K2VNode) -> None:
    rpc = node.k2v_rpc
    await rpc.insert_batch(
        BUCKET,
        [("a", "1", None, b"xx"), ("a", "2", None, b"yyy"), ("b", "1", None, b"z"),
         ("b", "1", None, b"zz"), ("c", "1", None, b"c")],
    )  # fmt: skip

    async def index(**kw: object) -> K2VIndexPage:
        return await read_index(node, BUCKET, **kw)  # type: ignore[arg-type]

    async def counted(expected: list[tuple[str, dict[str, int]]]) -> bool:
        return (await index()).partition_keys == expected

    def row(
        pk: str, entries: int, conflicts: int, values: int, size: int
    ) -> tuple[str, dict[str, int]]:
        return pk, {"entries": entries, "conflicts": conflicts, "values": values, "bytes": size}

    await eventually(
        lambda: counted([row("a", 2, 0, 2, 5), row("b", 1, 1, 2, 3), row("c", 1, 0, 1, 1)]),
        "counters of three partitions",
    )
    page = await index(limit=1, start="b")
    assert page == K2VIndexPage([row("b", 1, 1, 2, 3)], more=True, next_start="c")
    assert [pk for pk, _ in (await index(reverse=True)).partition_keys] == ["c", "b", "a"]

    # Delete "a/1" and every value of "b": "b" disappears from the index.
    a1 = await read(node, "1", "a")
    b1 = await read(node, "1", "b")
    assert a1 is not None
    assert b1 is not None
    await rpc.insert(BUCKET, "a", "1", a1.causal_context(), None)
    await rpc.insert(BUCKET, "b", "1", b1.causal_context(), None)
    await eventually(
        lambda: counted([row("a", 1, 0, 1, 3), row("c", 1, 0, 1, 1)]), "counters after deletes"
    )


async def test_bad_keys_and_timeouts_are_refused(node: K2VNode) -> None:
    with pytest.raises(BadRequestError, match="sort key"):
        await node.k2v_rpc.insert(BUCKET, "pk", "\ud800", None, b"x")
    with pytest.raises(BadRequestError, match="partition key"):
        await node.k2v_rpc.insert_batch(BUCKET, [("\udfff", "sk", None, b"x")])
    with pytest.raises(BadRequestError, match="timeout"):
        await node.k2v_rpc.poll_item(BUCKET, "pk", "sk", CausalContext(), -1)
    assert await read(node, "sk") is None
