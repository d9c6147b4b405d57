"""K2V on three storage nodes in three zones, each a real OS process
(tests/model/k2v/k2v_node.py): concurrent writers, causality tokens, PollItem across
nodes, and the index counters after deletes."""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent.parent / "cluster"))
from procs import SECRET, NodeProc, apply_layout, client, cluster  # type: ignore[import-not-found]
from tests.model.k2v.k2v_node import (
    BUCKET_EMPTY,
    CREATE_BUCKET,
    INDEX,
    INSERT,
    POLL,
    READ,
    READ_LOCAL,
    BucketId,
    BucketName,
    Insert,
    ItemKey,
    ItemState,
    Poll,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from garage_rpc.net import Endpoint, NetApp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).parent


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@asynccontextmanager
async def three_nodes(tmp_path: Path) -> AsyncIterator[tuple[list[NodeProc], NetApp]]:
    script = str(HERE / "k2v_node.py")
    with cluster(tmp_path) as nodes:
        first = NodeProc(tmp_path / "n0", SECRET, [], script=script)
        first.start()
        nodes.append(first)
        for i in (1, 2):
            node = NodeProc(tmp_path / f"n{i}", SECRET, [first.peer], script=script)
            node.start()
            nodes.append(node)
        async with client() as c:
            for n in nodes:
                await c.connect(n.node_id, ("127.0.0.1", n.port))
            await apply_layout(c, nodes)
            yield nodes, c


async def call(c: NetApp, node: NodeProc, endpoint: Endpoint[Any, Any], msg: object) -> Any:
    """One call, not retried (a retried insert without token would add a sibling)."""
    with anyio.fail_after(60):
        if not c.is_connected(node.node_id):
            await c.connect(node.node_id, ("127.0.0.1", node.port))
        return await c.call(node.node_id, endpoint, msg)


async def settled(c: NetApp, node: NodeProc, endpoint: Endpoint[Any, Any], msg: object) -> Any:
    """A call retried while the new cluster settles (quorums not reachable yet)."""
    last: Exception | None = None
    for _ in range(100):
        try:
            return await call(c, node, endpoint, msg)
        except Exception as exc:
            last = exc
            await anyio.sleep(0.2)
    raise AssertionError(f"{endpoint.path} kept failing: {last!r}")


async def wait_for(check: Callable[[], Awaitable[bool]], what: str) -> None:
    with anyio.move_on_after(60):
        while not await check():  # noqa: ASYNC110  # polling other processes
            await anyio.sleep(0.1)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def on_every_node(
    c: NetApp, nodes: list[NodeProc], key: ItemKey, values: list[bytes | None]
) -> None:
    """Waits until every node's own copy holds exactly ``values`` (in any order)."""

    def norm(vs: list[bytes | None]) -> list[bytes]:
        return sorted(b"<deleted>" if v is None else v for v in vs)

    for n in nodes:

        async def holds(n: NodeProc = n) -> bool:
            local: ItemState = await call(c, n, READ_LOCAL, key)
            return norm(local.values) == norm(values)

        await wait_for(holds, f"{values} on node {n.node_id.short_hex()}")


async def test_k2v_siblings_tokens_polls_and_counters(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as (nodes, c):
        bucket = (await settled(c, nodes[0], CREATE_BUCKET, BucketName("k2v"))).id
        key = ItemKey(bucket, "p", "k")
        for n in nodes:  # every node reaches a read quorum before the writes race
            await settled(c, n, READ, key)

        # Two writers on two nodes, without tokens: both values are kept, on every node.
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, c, nodes[0], INSERT, Insert(bucket, "p", "k", None, b"n0"))
            tg.start_soon(call, c, nodes[1], INSERT, Insert(bucket, "p", "k", None, b"n1"))
        await on_every_node(c, nodes, key, [b"n0", b"n1"])
        read: ItemState = await call(c, nodes[2], READ, key)
        assert sorted(v or b"" for v in read.values) == [b"n0", b"n1"]

        # A write with the token of what was read resolves them.
        await call(c, nodes[2], INSERT, Insert(bucket, "p", "k", read.token, b"resolved"))
        await on_every_node(c, nodes, key, [b"resolved"])
        assert (await call(c, nodes[1], READ, key)).values == [b"resolved"]

        # PollItem on one node wakes when another node writes.
        current: ItemState = await call(c, nodes[0], READ, key)
        polled: list[ItemState] = []

        async def poll() -> None:
            polled.append(
                await call(c, nodes[0], POLL, Poll(bucket, "p", "k", current.token, 50_000))
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await anyio.sleep(0.5)  # not needed for correctness: lets the poll start first
            await call(c, nodes[1], INSERT, Insert(bucket, "p", "k", current.token, b"new"))
        assert polled[0].found, "the poll timed out instead of waking"
        assert polled[0].values == [b"new"]
        # Nothing newer than the latest token: the poll times out (HTTP 304).
        latest: ItemState = await call(c, nodes[2], READ, key)
        timed_out = await call(c, nodes[2], POLL, Poll(bucket, "p", "k", latest.token, 300))
        assert not timed_out.found

        # Counters per partition key, on any node, follow inserts and deletes.
        for n, pk, sk, value in (
            (nodes[0], "a", "1", b"xx"),
            (nodes[1], "a", "2", b"yyy"),
            (nodes[0], "b", "1", b"z"),
            (nodes[1], "b", "1", b"zz"),
        ):
            await call(c, n, INSERT, Insert(bucket, pk, sk, None, value))

        async def index_is(expected: list[tuple[str, int, int, int, int]]) -> bool:
            rows = (await call(c, nodes[2], INDEX, BucketId(bucket))).rows
            return [tuple(r) for r in rows] == expected

        await wait_for(
            lambda: index_is([("a", 2, 0, 2, 5), ("b", 1, 1, 2, 3), ("p", 1, 0, 1, 3)]),
            "the counters of three partition keys",
        )
        for pk, sk in (("a", "1"), ("b", "1"), ("p", "k")):
            seen: ItemState = await call(c, nodes[1], READ, ItemKey(bucket, pk, sk))
            await call(c, nodes[0], INSERT, Insert(bucket, pk, sk, seen.token, None))
        await wait_for(lambda: index_is([("a", 1, 0, 1, 3)]), "the counters after deletes")
        assert not (await call(c, nodes[0], BUCKET_EMPTY, BucketId(bucket))).value

        last: ItemState = await call(c, nodes[2], READ, ItemKey(bucket, "a", "2"))
        await call(c, nodes[2], INSERT, Insert(bucket, "a", "2", last.token, None))
        await wait_for(lambda: index_is([]), "no partition key left")

        async def empty() -> bool:
            return bool((await call(c, nodes[1], BUCKET_EMPTY, BucketId(bucket))).value)

        await wait_for(empty, "the bucket empty once its K2V items are deleted")
