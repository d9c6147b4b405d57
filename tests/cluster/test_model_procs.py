"""Three storage nodes in three zones, each a real OS process (tests/cluster/model_node.py).

Objects go through the model's write path (object, version and block_ref tables, block
RPC); the tests look at the block files each node holds on disk, and damage them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from tests.polling import wait_until

sys.path.insert(0, str(Path(__file__).parent))
from model_node import (  # type: ignore[import-not-found]
    BLOCK_ERRORS,
    COUNTERS,
    CREATE_BUCKET,
    DELETE_OBJECT,
    GET_OBJECT,
    PUT_OBJECT,
    REPAIR_BLOCKS,
    SCRUB,
    BucketId,
    BucketName,
    Nothing,
    ObjectKey,
)
from procs import SECRET, NodeProc, apply_layout, client, cluster  # type: ignore[import-not-found]

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from garage_rpc.net import NetApp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MiB = 2**20


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def block_files(node: NodeProc) -> dict[str, Path]:
    """The block files in the node's data dir, by hash hex (quarantined ones excluded)."""
    data = node.metadata_dir / "data"
    return {
        p.name.removesuffix(".zst"): p
        for p in data.glob("??/??/*")
        if p.is_file() and not p.name.endswith(".corrupted") and ".tmp" not in p.name
    }


@asynccontextmanager
async def three_nodes(tmp_path: Path) -> AsyncIterator[tuple[list[NodeProc], NetApp]]:
    with cluster(tmp_path) as nodes:
        first = NodeProc(tmp_path / "n0", SECRET, [], script="model_node.py")
        first.start()
        nodes.append(first)
        for i in (1, 2):
            node = NodeProc(tmp_path / f"n{i}", SECRET, [first.peer], script="model_node.py")
            node.start()
            nodes.append(node)
        async with client() as c:
            for n in nodes:
                await c.connect(n.node_id, ("127.0.0.1", n.port))
            await apply_layout(c, nodes)
            yield nodes, c


async def call_ok(c: NetApp, node: NodeProc, endpoint: object, msg: object, **kw: object) -> object:
    """Calls a test endpoint, retrying while the cluster is still settling."""
    last: Exception | None = None
    for _ in range(50):
        try:
            with anyio.fail_after(60):
                if not c.is_connected(node.node_id):
                    await c.connect(node.node_id, ("127.0.0.1", node.port))
                return await c.call(node.node_id, endpoint, msg, **kw)  # type: ignore[arg-type]
        except Exception as exc:  # quorum not yet reachable: retry
            last = exc
            await anyio.sleep(0.2)
    raise AssertionError(f"{endpoint} kept failing: {last!r}")


async def put(c: NetApp, node: NodeProc, bucket: bytes, key: str, data: bytes) -> list[str]:
    stored = await call_ok(c, node, PUT_OBJECT, ObjectKey(bucket, key), stream=data)
    assert stored.size == len(data)  # type: ignore[attr-defined]
    assert stored.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()  # type: ignore[attr-defined]
    return [h.hex() for h in stored.blocks]  # type: ignore[attr-defined]


async def counters(c: NetApp, node: NodeProc, bucket: bytes) -> dict[str, int]:
    answer = await call_ok(c, node, COUNTERS, BucketId(bucket))
    return dict(answer.values)  # type: ignore[attr-defined]


async def test_object_blocks_are_placed_shared_counted_and_collected(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as (nodes, c):
        bucket = (await call_ok(c, nodes[0], CREATE_BUCKET, BucketName("photos"))).id  # type: ignore[attr-defined]
        data = os.urandom(50 * MiB)
        blocks = await put(c, nodes[0], bucket, "big.bin", data)
        assert len(blocks) == 50
        assert len(set(blocks)) == 50
        # Each block on all three nodes (one per zone), with nothing else stored: the PUT is
        # acknowledged by a write quorum (2 of 3), the third copy may land just after.
        await wait_until(
            lambda: all(set(block_files(n)) == set(blocks) for n in nodes),
            "every block on every node",
            timeout_s=30,
        )
        read = await call_ok(c, nodes[2], GET_OBJECT, ObjectKey(bucket, "big.bin"))
        assert (read.found, read.size) == (True, len(data))  # type: ignore[attr-defined]
        assert read.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()  # type: ignore[attr-defined]

        # The same bytes under another key share every block.
        assert await put(c, nodes[1], bucket, "copy.bin", data) == blocks
        await wait_until(
            lambda: all(set(block_files(n)) == set(blocks) for n in nodes),
            "every block still on every node",
            timeout_s=30,
        )

        async def counted() -> bool:
            values = await counters(c, nodes[1], bucket)
            return values.get("objects") == 2 and values.get("bytes") == 2 * len(data)

        await _wait_async(counted, "object counters of two objects")

        # Deleting one object keeps the shared blocks; deleting both frees them everywhere.
        await call_ok(c, nodes[2], DELETE_OBJECT, ObjectKey(bucket, "big.bin"))
        await anyio.sleep(3)  # longer than the block GC delay (2 s)
        for n in nodes:
            assert set(block_files(n)) == set(blocks)
        await call_ok(c, nodes[0], DELETE_OBJECT, ObjectKey(bucket, "copy.bin"))
        await wait_until(
            lambda: all(not block_files(n) for n in nodes),
            "every block file deleted on every node",
            timeout_s=60,
        )
        gone = await call_ok(c, nodes[1], GET_OBJECT, ObjectKey(bucket, "copy.bin"))
        assert gone.found is False  # type: ignore[attr-defined]

        async def zero() -> bool:
            values = await counters(c, nodes[0], bucket)
            return values.get("objects") == 0 and values.get("bytes") == 0

        await _wait_async(zero, "object counters back to zero")


async def _wait_async(
    condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30
) -> None:
    with anyio.move_on_after(timeout_s):
        while not await condition():  # noqa: ASYNC110  # polling another process
            await anyio.sleep(0.2)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def test_scrub_finds_a_corrupted_block_and_resync_repairs_it(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as (nodes, c):
        bucket = (await call_ok(c, nodes[0], CREATE_BUCKET, BucketName("docs"))).id  # type: ignore[attr-defined]
        data = os.urandom(3 * MiB + 5)
        blocks = await put(c, nodes[0], bucket, "doc", data)
        victim, good = nodes[1], nodes[2]
        # The PUT returns once a write quorum (2 of 3) stored each block: wait for all three.
        await wait_until(
            lambda: all(blocks[1] in block_files(n) for n in nodes),
            "the block on every node",
            timeout_s=30,
        )
        path = block_files(victim)[blocks[1]]
        original = path.read_bytes()
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0x40
        path.write_bytes(bytes(damaged))

        await call_ok(c, victim, SCRUB, Nothing())
        await wait_until(
            lambda: list(path.parent.glob(path.name + "*.corrupted")) != [],
            "the corrupted file quarantined",
            timeout_s=30,
        )
        await wait_until(
            lambda: path.exists() and path.read_bytes() == original,
            "the block refetched from a peer",
            timeout_s=30,
        )
        assert block_files(good)[blocks[1]].read_bytes() == original
        read = await call_ok(c, victim, GET_OBJECT, ObjectKey(bucket, "doc"))
        assert read.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()  # type: ignore[attr-defined]


async def test_a_wiped_data_dir_is_refilled_by_resync(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as (nodes, c):
        bucket = (await call_ok(c, nodes[0], CREATE_BUCKET, BucketName("backup"))).id  # type: ignore[attr-defined]
        data = os.urandom(5 * MiB)
        blocks = await put(c, nodes[0], bucket, "archive", data)
        await wait_until(
            lambda: all(set(block_files(n)) == set(blocks) for n in nodes),
            "every block on every node",
            timeout_s=30,
        )
        wiped = nodes[2]
        wiped.kill()
        for sub in (wiped.metadata_dir / "data").iterdir():
            if sub.is_dir():
                shutil.rmtree(sub)
        assert block_files(wiped) == {}
        wiped.bootstrap = [nodes[0].peer]
        wiped.start()  # same port: the others reconnect to it
        await call_ok(c, wiped, REPAIR_BLOCKS, Nothing())
        await wait_until(
            lambda: set(block_files(wiped)) == set(blocks),
            "every block back on the wiped node",
            timeout_s=60,
        )
        errors = await call_ok(c, wiped, BLOCK_ERRORS, Nothing())
        assert errors.hashes == []  # type: ignore[attr-defined]
        for h, p in block_files(wiped).items():
            assert p.read_bytes() == block_files(nodes[0])[h].read_bytes()
