"""The admin RPC against a real node in this process: its tables on sqlite, its transport
on 127.0.0.1, and a throw-away client node calling ``ADMIN_RPC`` over TCP, as the CLI does.

The node holds objects written through the model's write path (``ObjectWriter``), which
the CLI cannot do yet without the S3 PutObject: deleting a non-empty bucket, block info
and purge, and the repairs that find orphan rows are tested here.
"""

from __future__ import annotations

import dataclasses
import io
import types
import typing
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.polling import wait_until

from garage._cli_client import Target, open_client
from garage.admin_rpc import (
    ADMIN_RPC,
    AdminRequest,
    AdminResponse,
    AdvertiseLayout,
    BlockDetails,
    BucketDetails,
    CreateBucket,
    DeleteBucket,
    Done,
    Failed,
    GetBlockInfo,
    GetBucketInfo,
    GetStats,
    LaunchRepair,
    NodeStats,
    PerNode,
    PurgeBlocks,
    SnapshotMetadata,
    WorkerListing,
    register,
)
from garage_model import Garage, GarageTimings
from garage_model.block import RcEntry
from garage_model.bucket_table import UuidKey
from garage_model.s3 import BlockRef, MultipartUpload, ObjectBacklink, Version
from garage_model.s3.writer import ObjectWriter, read_object
from garage_rpc.layout import LayoutHistory, NodeRole
from garage_rpc.net import Endpoint, NetApp, NodeKey
from garage_table import TableTimings
from garage_table.schema import EmptyKey
from garage_util.clock import now_msec
from garage_util.config import parse_config
from garage_util.data import FixedBytes32, gen_uuid
from garage_util.encode import pack, unpack

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from garage_rpc.net import NodeId
    from garage_util.data import Uuid

SECRET = bytes(range(32))
#: Short background intervals, so that queued inserts and syncs happen within a test.
TIMINGS = GarageTimings(
    tables=TableTimings(sync_first_delay_s=60.0, gc_delay_s=60.0, gc_retry_delay_s=0.5),
    status_interval_s=0.5,
)
#: Bigger than the inline threshold (3 KiB): stored in a block.
BLOCK_DATA = bytes(range(256)) * 40


@dataclass
class Node:
    garage: Garage
    client: NetApp
    port: int

    async def ask(self, request: AdminRequest) -> AdminResponse:
        with anyio.fail_after(30):
            return await self.client.call(self.garage.node_id, ADMIN_RPC, request)

    async def done(self, request: AdminRequest) -> str:
        answer = await self.ask(request)
        assert isinstance(answer, Done), answer
        return answer.message

    async def bucket(self, name: str) -> Uuid:
        await self.done(CreateBucket(name))
        bucket_id = await self.garage.bucket_helper.resolve_global_bucket_name(name)
        assert bucket_id is not None
        return bucket_id

    async def put(self, bucket_id: Uuid, key: str, data: bytes = BLOCK_DATA) -> Any:
        async def body() -> AsyncIterator[bytes]:
            yield data

        return await ObjectWriter(self.garage, bucket_id, key).put(body())


@asynccontextmanager
async def running_node(tmp_path: Path) -> AsyncIterator[Node]:
    config = parse_config(
        {
            "metadata_dir": str(tmp_path / "meta"),
            "data_dir": str(tmp_path / "data"),
            "replication_factor": 1,
            "rpc_secret": SECRET.hex(),
            "rpc_bind_addr": "127.0.0.1:0",
            "s3_api": {"s3_region": "garage"},
        }
    )
    garage = await anyio.to_thread.run_sync(lambda: Garage(config, timings=TIMINGS))
    register(garage)
    client = NetApp(NodeKey.generate(), SECRET)
    async with anyio.create_task_group() as tg:
        host, port = await tg.start(garage.run)
        history = garage.layout.history.stage_role(
            garage.node_id, NodeRole("dc1", 10**10), now_msec()
        )
        applied, _ = history.apply_staged_changes(1, now_msec())
        await garage.layout.update(applied)
        await tg.start(client.run)
        await client.connect(garage.node_id, (host, port))
        yield Node(garage, client, port)
        tg.cancel_scope.cancel()


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Polls an async condition on the node's state (no event tells it); 15 s at most."""
    with anyio.fail_after(15):
        while not await condition():  # noqa: ASYNC110 - polling, see the docstring
            await anyio.sleep(0.05)


async def wait_worker_done(node: Node, message: str) -> None:
    """Waits until the worker a ``LaunchRepair`` started (its TID is in the message) ends."""
    tid = int(message.split("worker ")[1].split(" ")[0])

    def done() -> bool:
        info = node.garage.runner.worker_info()[tid]
        return info.state.value == "done"

    await wait_until(done, f"repair worker {tid} done")


# ------------------------------------------------------------------ wire format


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    """Values of a message field type: msgpack's integers (64-bit), short strings and
    tuples, nested dataclasses and unions (answers nest answers in ``PerNode``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is int:
        return st.integers(-(2**63), 2**64 - 1)
    if tp is str:
        return st.text(max_size=12)
    if tp is bool:
        return st.booleans()
    if tp is type(None):
        return st.none()
    if origin is typing.Union or origin is types.UnionType:
        return st.one_of(*[_strategy(a) for a in args])
    if origin is tuple:
        return st.lists(_strategy(args[0]), max_size=3).map(tuple)
    if tp is AdminResponse:
        return st.deferred(lambda: st.sampled_from(_RESPONSES).flatmap(_strategy))
    if tp is AdminRequest:
        return st.sampled_from(_REQUESTS).flatmap(_strategy)
    hints = typing.get_type_hints(tp)
    return st.builds(tp, **{f.name: _strategy(hints[f.name]) for f in dataclasses.fields(tp)})


# AdvertiseLayout carries a whole layout history: tested on its own below.
_REQUESTS = [v for v in AdminRequest.VARIANTS.values() if v is not AdvertiseLayout]
_RESPONSES = list(AdminResponse.VARIANTS.values())


@given(_strategy(AdminRequest))
def test_every_request_round_trips_through_the_wire_encoding(request: AdminRequest) -> None:
    assert unpack(AdminRequest, pack(request)) == request


@given(_strategy(AdminResponse))
def test_every_response_round_trips_through_the_wire_encoding(response: AdminResponse) -> None:
    assert unpack(AdminResponse, pack(response)) == response


def test_a_layout_travels_inside_a_request() -> None:
    history = LayoutHistory.new(3).stage_role(FixedBytes32(bytes(32)), NodeRole("z", 10**9), 5)
    request = AdvertiseLayout(history)
    assert unpack(AdminRequest, pack(request)) == request


def test_an_unknown_variant_is_a_decode_error() -> None:
    from garage_util.encode import to_wire
    from garage_util.errors import DecodeError

    wire = to_wire(Done("x"))
    assert isinstance(wire, dict)
    with pytest.raises(DecodeError, match="NotAVariant"):
        unpack(AdminResponse, pack({"NotAVariant": wire["Done"]}))


# ------------------------------------------------------------------ against a node


@pytest.mark.anyio
async def test_deleting_a_non_empty_bucket_is_refused(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        bucket_id = await node.bucket("full")
        await node.put(bucket_id, "a/file")

        answer = await node.ask(DeleteBucket("full"))
        assert isinstance(answer, Failed)
        assert "not empty" in answer.message

        async def counted() -> bool:
            info = await node.ask(GetBucketInfo("full"))
            assert isinstance(info, BucketDetails)
            return info.objects == 1 and info.bytes == len(BLOCK_DATA)

        await eventually(counted)
        assert isinstance(await node.ask(GetBucketInfo("full")), BucketDetails)


@pytest.mark.anyio
async def test_block_info_names_the_object_and_purge_deletes_it(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        bucket_id = await node.bucket("photos")
        put = await node.put(bucket_id, "cat.jpg")
        (block,) = put.blocks

        info = await node.ask(GetBlockInfo(block.hex()))
        assert isinstance(info, BlockDetails)
        assert info.refcount == 1
        (ref,) = info.refs
        assert (ref.bucket_id, ref.key, ref.version) == (
            bucket_id.hex(),
            "cat.jpg",
            put.version.hex(),
        )
        assert not ref.ref_deleted
        assert not ref.version_deleted

        message = await node.done(PurgeBlocks((block.hex(),)))
        assert "1 objects deleted" in message

        with pytest.raises(LookupError):
            async for _ in read_object(node.garage, bucket_id, "cat.jpg"):
                pass
        after = await node.ask(GetBlockInfo(block.hex()))
        assert isinstance(after, BlockDetails)
        assert all(r.ref_deleted and r.version_deleted for r in after.refs)
        # Nothing is left in the bucket: it can go now.
        assert "deleted" in await node.done(DeleteBucket("photos"))


@pytest.mark.anyio
async def test_block_info_of_a_malformed_hash_is_refused(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        answer = await node.ask(GetBlockInfo("xyz"))
        assert isinstance(answer, Failed)
        assert "64 hex digits" in answer.message


@pytest.mark.anyio
async def test_repair_versions_deletes_orphans_and_keeps_live_versions(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        g = node.garage
        bucket_id = await node.bucket("data")
        live = await node.put(bucket_id, "kept")
        orphan = Version.new(gen_uuid(), ObjectBacklink(bucket_id, "never-written"))
        await g.version_table.table.insert(orphan)

        await wait_worker_done(node, await node.done(LaunchRepair("versions")))

        async def deleted(uuid: Uuid) -> bool:
            v = await g.version_table.table.get(UuidKey(uuid), EmptyKey())
            return v is not None and v.is_deleted

        await eventually(lambda: deleted(orphan.uuid))
        assert not await deleted(live.version)


@pytest.mark.anyio
async def test_repair_block_refs_and_mpu_delete_orphans(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        g = node.garage
        bucket_id = await node.bucket("data")
        live = await node.put(bucket_id, "kept")
        ref = BlockRef.new(live.blocks[0], gen_uuid())  # its version never existed
        await g.block_ref_table.table.insert(ref)
        mpu = MultipartUpload.new(gen_uuid(), now_msec(), bucket_id, "no-such-upload")
        await g.mpu_table.table.insert(mpu)

        await wait_worker_done(node, await node.done(LaunchRepair("block-refs")))
        await wait_worker_done(node, await node.done(LaunchRepair("mpu")))

        async def repaired() -> bool:
            r = await g.block_ref_table.table.get(UuidKey(ref.block), UuidKey(ref.version))
            m = await g.mpu_table.table.get(UuidKey(mpu.upload_id), EmptyKey())
            return r is not None and r.is_deleted and m is not None and m.is_deleted

        await eventually(repaired)
        kept = await g.block_ref_table.table.get(UuidKey(live.blocks[0]), UuidKey(live.version))
        assert kept is not None
        assert not kept.is_deleted


@pytest.mark.anyio
async def test_repair_block_rc_fixes_a_wrong_count(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        g = node.garage
        bucket_id = await node.bucket("data")
        (block,) = (await node.put(bucket_id, "one")).blocks
        wrong = RcEntry(7).serialize()
        assert wrong is not None
        await anyio.to_thread.run_sync(g.block_manager.rc.tree.insert, bytes(block), wrong)

        await wait_worker_done(node, await node.done(LaunchRepair("block-rc")))
        assert g.block_manager.get_block_rc(block) == 1


@pytest.mark.anyio
async def test_unknown_repair_and_scrub_commands_are_refused(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        for request, words in [
            (LaunchRepair("everything"), "unknown repair"),
            (LaunchRepair("scrub", "jump"), "unknown scrub command"),
            (LaunchRepair("scrub", "set-tranquility", None), "tranquility"),
        ]:
            answer = await node.ask(request)
            assert isinstance(answer, Failed)
            assert words in answer.message


@pytest.mark.anyio
async def test_all_nodes_requests_are_answered_per_node(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        answer = await node.ask(GetStats(all_nodes=True))
        assert isinstance(answer, PerNode)
        (one,) = answer.answers
        assert one.node == node.garage.node_id.hex()
        assert one.error is None
        assert isinstance(one.answer, NodeStats)
        assert one.answer.cluster == ()  # the global part is skipped per node
        local = await node.ask(GetStats())
        assert isinstance(local, NodeStats)
        assert [d.node for d in local.cluster] == [node.garage.node_id.hex()]
        assert {t.name for t in local.tables} >= {"object", "version", "block_ref", "key"}


@pytest.mark.anyio
async def test_meta_snapshot_keeps_the_two_newest(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        paths = []
        for _ in range(3):
            message = await node.done(SnapshotMetadata())
            paths.append(message.rsplit(" ", 1)[1])
            await anyio.sleep(0.002)  # names are to the millisecond
        base = node.garage.config.metadata_snapshots_dir
        kept = sorted(str(p) for p in base.iterdir())
        assert kept == sorted(paths[1:])
        assert all((base / p / "db.sqlite").is_file() for p in kept)


class _Terminal(io.StringIO):
    """What the CLI writes progress to: a buffer that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class _Nap:
    ms: int


@pytest.mark.anyio
async def test_a_slow_call_shows_its_progress_on_a_terminal(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        slow = Endpoint("test/Slow", _Nap, _Nap)

        async def nap(msg: _Nap, _from: NodeId, _s: object) -> tuple[_Nap, None]:
            await anyio.sleep(msg.ms / 1000)
            return msg, None

        node.garage.netapp.endpoint(slow, nap)
        target = Target(node.garage.node_id, "127.0.0.1", node.port, SECRET, None)
        terminal, pipe = _Terminal(), io.StringIO()
        async with open_client(target, err=terminal) as client:
            assert await client.call(slow, _Nap(2500), what="napping") == _Nap(2500)
        async with open_client(target, err=pipe) as client:
            await client.call(slow, _Nap(2500))
        assert "\rnapping... 1 s" in terminal.getvalue()
        assert terminal.getvalue().endswith("\r\033[K")  # the line is cleared at the end
        assert pipe.getvalue() == ""  # not a terminal: nothing


@pytest.mark.anyio
async def test_worker_listing_shows_the_runner(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        from garage.admin_rpc import ListWorkers

        answer = await node.ask(ListWorkers())
        assert isinstance(answer, WorkerListing)
        names = [w.name for w in answer.workers]
        assert "object sync" in names
        assert "Block scrub worker" in names
        assert [w.tid for w in answer.workers] == sorted(w.tid for w in answer.workers)
