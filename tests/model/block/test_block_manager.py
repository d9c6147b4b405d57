"""BlockManager: puts reach the storage nodes, gets fall back from node to node, streams
(Garage: src/block/manager.rs; design §9.4, §9.5, §9.8).

Three nodes in one process over real TCP, each with its sqlite db and data directory
(tests/model/block/harness.py). Waits poll with a deadline; no test asserts a duration.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import ByteReceiveStream
from tests.model.block.harness import (
    FakeClock,
    block_of,
    cluster,
    connected,
    flip_a_bit,
    started,
    three_node_layout,
)
from tests.polling import wait_until

from garage_model.block import (
    BlockStream,
    CorruptBlockError,
    DataBlock,
    DataBlockHeader,
    MissingBlockError,
    block_read_nodes_of,
)
from garage_rpc.layout import LayoutHelper, NodeRole
from garage_rpc.net import NodeKey
from garage_rpc.rpc_helper import QuorumError
from garage_util.data import FixedBytes32, Hash, blake2sum

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

pytestmark = pytest.mark.anyio

TEXT = b"a very compressible block of text " * 30_000  # ~1 MiB, compresses well


async def test_put_reaches_all_three_nodes_and_any_node_gets_it(tmp_path: Path) -> None:
    clock = FakeClock()
    async with cluster(tmp_path, clock) as nodes:
        a, b, c = nodes
        h, data = block_of(TEXT)
        await a.manager.rpc_put_block(h, data)
        # The third replica is written after the quorum, in the background.
        await wait_until(lambda: all(n.has_block(h) for n in nodes), "block on all nodes")
        # Compressed on the wire and on disk: the stored file is the zstd frame.
        for n in nodes:
            found = n.store.find_block(h)
            assert found is not None
            assert found.compressed
        await wait_until(lambda: a.manager.ram_buffer_used_bytes == 0, "RAM budget released")
        for n in nodes:
            assert await n.manager.rpc_get_block(h) == TEXT
        # An incompressible block, or one whose compression is prevented, is stored plain.
        h2, data2 = block_of(os.urandom(300_000))
        await b.manager.rpc_put_block(h2, data2, prevent_compression=True)
        await wait_until(lambda: all(n.has_block(h2) for n in nodes), "plain block everywhere")
        found2 = c.store.find_block(h2)
        assert found2 is not None
        assert not found2.compressed
        assert await c.manager.rpc_get_block(h2) == data2


async def test_streamed_get_decompresses_and_verifies(tmp_path: Path) -> None:
    clock = FakeClock()
    async with cluster(tmp_path, clock) as nodes:
        a, _b, c = nodes
        h, data = block_of(TEXT)
        await a.manager.rpc_put_block(h, data)
        await wait_until(lambda: c.has_block(h), "block on c")
        stream = await c.manager.rpc_get_block_streaming(h)
        assert stream.header is DataBlockHeader.COMPRESSED
        assert stream.node == c.id  # the local copy first
        chunks = []
        async with stream:
            async for chunk in stream:
                assert len(chunk) <= 1 << 20
                chunks.append(chunk)
        assert b"".join(chunks) == TEXT
        # Small reads, from a remote node this time (c's copy is gone).
        c.store.delete_block(h)
        stream = await c.manager.rpc_get_block_streaming(h)
        assert stream.node != c.id
        async with stream:
            parts = []
            while True:
                try:
                    parts.append(await stream.receive(1000))
                except anyio.EndOfStream:
                    break
        assert all(len(p) <= 1000 for p in parts)
        assert b"".join(parts) == TEXT


async def test_a_block_bigger_than_the_message_size_limit_travels_as_a_stream(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    limit = 64 * 1024
    data = os.urandom(3 * 1024 * 1024 + 17)  # incompressible: sent plain, 48 x the limit
    async with cluster(tmp_path, clock, max_message_size=limit) as nodes:
        a, b, c = nodes
        h = blake2sum(data)
        await a.manager.rpc_put_block(h, data)
        await wait_until(lambda: all(n.has_block(h) for n in nodes), "block on all nodes")
        c.store.delete_block(h)
        assert await c.manager.rpc_get_block(h) == data
        stream = await c.manager.rpc_get_block_streaming(h)
        assert stream.node in (a.id, b.id)
        assert await stream.read_all() == data


async def test_get_falls_back_when_a_node_lacks_the_block_or_has_a_corrupt_copy(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with cluster(tmp_path, clock, workers=False) as nodes:  # queues stay to be seen
        a, b, _c = nodes
        h, data = block_of(TEXT)
        await a.manager.rpc_put_block(h, data)
        await wait_until(lambda: all(n.has_block(h) for n in nodes), "block on all nodes")
        # a asks itself first: its copy is gone, so it asks another node, and queues
        # itself a resync to check later whether it should have it.
        a.store.delete_block(h)
        assert await a.manager.rpc_get_block(h) == TEXT
        queued = await anyio.to_thread.run_sync(a.manager.resync.queued_hashes)
        assert h in [qh for _when, qh in queued]
        # b's own copy is corrupt: b quarantines it, queues an immediate resync, and gets
        # a good copy elsewhere.
        found = b.store.find_block(h)
        assert found is not None
        flip_a_bit(found.path)
        assert await b.manager.rpc_get_block(h) == TEXT
        assert found.path.with_name(found.path.name + ".corrupted").is_file()
        assert not found.path.exists()
        queued_b = await anyio.to_thread.run_sync(b.manager.resync.queued_hashes)
        assert (clock(), h) in queued_b


async def test_get_works_with_two_nodes_stopped(tmp_path: Path) -> None:
    clock = FakeClock()
    keys = [NodeKey.generate() for _ in range(3)]
    history = three_node_layout(keys)
    h, data = block_of(TEXT)
    async with anyio.create_task_group() as tg:
        async with started(tg, keys[0], tmp_path / "a", history, [], clock) as a:
            async with started(tg, keys[1], tmp_path / "b", history, [(a.id, a.addr)], clock) as b:
                async with started(
                    tg, keys[2], tmp_path / "c", history, [(a.id, a.addr)], clock
                ) as c:
                    await wait_until(lambda: connected([a, b, c]), "full mesh")
                    await c.manager.rpc_put_block(h, data)
                    await wait_until(lambda: all(n.has_block(h) for n in (a, b, c)), "stored")
                    a.store.delete_block(h)
                await wait_until(lambda: not a.netapp.is_connected(keys[2].node_id), "c down")
                # a lacks it, c is down: b serves it.
                assert await a.manager.rpc_get_block(h) == TEXT
                b.store.delete_block(h)
                with pytest.raises(MissingBlockError) as info:
                    await a.manager.rpc_get_block(h)
                assert {node for node, _ in info.value.errors} == {a.id, b.id, c.id}
                await b.manager.rpc_put_block(h, data)  # a and b form a quorum again
            await wait_until(lambda: not a.netapp.is_connected(keys[1].node_id), "b down")
            # Two nodes stopped: the third still serves from its own copy.
            assert await a.manager.rpc_get_block(h) == TEXT
            stream = await a.manager.rpc_get_block_streaming(h)
            assert await stream.read_all() == TEXT
        tg.cancel_scope.cancel()


async def test_put_with_two_nodes_down_fails_with_a_quorum_error(tmp_path: Path) -> None:
    clock = FakeClock()
    keys = [NodeKey.generate() for _ in range(3)]
    history = three_node_layout(keys)
    h, data = block_of(TEXT)
    async with anyio.create_task_group() as tg:
        async with started(tg, keys[0], tmp_path / "a", history, [], clock) as a:
            async with started(tg, keys[1], tmp_path / "b", history, [(a.id, a.addr)], clock):
                await wait_until(lambda: a.netapp.is_connected(keys[1].node_id), "a-b connected")
            await wait_until(lambda: not a.netapp.is_connected(keys[1].node_id), "b down")
            with pytest.raises(QuorumError) as info:
                await a.manager.rpc_put_block(h, data)
            # Decided as soon as two sends failed (a's own write may still be running).
            assert info.value.successes <= 1
            assert info.value.quorum == 2
            failed = {node for node, _ in info.value.errors}
            assert failed == {keys[1].node_id, keys[2].node_id}
            # Once every send ended, nothing is held in the RAM budget.
            await wait_until(lambda: a.manager.ram_buffer_used_bytes == 0, "budget released")
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------------------- pure parts


def test_read_nodes_put_self_first_and_interleave_live_versions() -> None:
    keys = sorted((NodeKey.generate() for _ in range(4)), key=lambda k: bytes(k.node_id))
    ids = [k.node_id for k in keys]
    history = three_node_layout(keys[:3])
    helper = LayoutHelper(history)
    h = FixedBytes32(bytes(32))

    def ordered(nodes: Sequence[FixedBytes32]) -> list[FixedBytes32]:
        return sorted(nodes)  # a deterministic preference order: by id

    nodes = block_read_nodes_of(helper, h, our_id=ids[2], order=ordered)
    assert nodes[0] == ids[2]
    assert sorted(nodes) == sorted(ids[:3])
    # A second version (a fourth node replaces the first): both versions' nodes, each once.
    staged = history.stage_removal(ids[0], now_ms=3).stage_role(
        ids[3], NodeRole("z0", 10**9, ()), now_ms=3
    )
    history2, _ = staged.apply_staged_changes(2, now_ms=4)
    helper2 = LayoutHelper(history2)
    assert len(helper2.versions) == 2
    nodes2 = block_read_nodes_of(helper2, h, our_id=ids[3], order=ordered)
    # Every zone holds a copy: the new node takes over from the removed one in zone z0.
    assert set(nodes2) == set(ids)
    assert len(nodes2) == 4
    assert nodes2[0] == ids[3]
    # Seen from a node outside both versions' sets: rank by rank, each version in turn.
    nodes3 = block_read_nodes_of(helper2, h, our_id=FixedBytes32(b"\xff" * 32), order=ordered)
    # Old version: ids 0, 1, 2; new one: ids 1, 2, 3 (by preference) -> 0, 1 | 2 | 3.
    assert nodes3 == ids


class _Chunks(ByteReceiveStream):
    """An in-memory byte stream delivering given chunks (what the transport hands over)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        if not self._chunks:
            raise anyio.EndOfStream
        first = self._chunks[0]
        self._chunks[0] = first[max_bytes:]
        if not self._chunks[0]:
            self._chunks.pop(0)
        return first[:max_bytes]

    async def aclose(self) -> None:
        self._chunks = []


async def test_block_stream_refuses_damaged_data_at_its_end() -> None:
    h: Hash = blake2sum(TEXT)
    good = DataBlock.from_buffer(TEXT, compression_level=1)
    assert good.is_compressed
    half = len(good.data) // 2
    ok = BlockStream(h, good.header, _Chunks([good.data[:half], good.data[half:]]), h)
    assert await ok.read_all() == TEXT
    truncated = BlockStream(h, good.header, _Chunks([good.data[:-10]]), h)
    with pytest.raises(CorruptBlockError):
        await truncated.read_all()
    trailing = BlockStream(h, good.header, _Chunks([good.data, b"junk"]), h)
    with pytest.raises(CorruptBlockError):
        await trailing.read_all()
    flipped = bytearray(TEXT)
    flipped[5] ^= 1
    plain = BlockStream(h, DataBlockHeader.PLAIN, _Chunks([bytes(flipped)]), h)
    with pytest.raises(CorruptBlockError, match="blake2"):
        await plain.read_all()
    plain_ok = BlockStream(h, DataBlockHeader.PLAIN, _Chunks([TEXT[:7], TEXT[7:]]), h)
    assert await plain_ok.receive(3) == TEXT[:3]
    assert await plain_ok.read_all() == TEXT[3:]
