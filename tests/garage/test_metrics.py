"""The node's Prometheus metrics, scraped from real nodes.

Most tests run a whole node in this process (sqlite, the RPC transport and the S3 API on
127.0.0.1, as ``garage server --single-node`` runs them), send it requests with boto3, and
parse what :class:`NodeMetrics` renders with ``prometheus_client``'s own parser, so that
the text is valid exposition format and the values are what the test did. The RPC
outcomes are counted by two real transports talking over TCP. The last test scrapes
``/metrics`` of the admin API of a ``garage server --single-node`` process over HTTP.
Background activity on a cluster of processes (sync, GC, resync errors) is in
test_metrics_activity.py.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import tomllib
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Final

import anyio
import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.parser import text_string_to_metric_families
from tests.api.conftest import GARAGE, free_port

from garage.metrics import CONTENT_TYPE, NodeMetrics
from garage.server import setup_single_node
from garage_api.http import Request, Response, serve
from garage_api.s3 import S3Api
from garage_model import Garage
from garage_rpc.net import Endpoint, NetApp, NodeKey, NotConnected, RemoteError
from garage_util.config import parse_config
from garage_util.errors import GarageError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from anyio.abc import ByteReceiveStream

    from garage_rpc.net import AttachedStream, NodeId
    from garage_util.config import Config as GarageConfig

SECRET: Final = bytes(range(32))
#: Bigger than the inline threshold (3 KiB), smaller than a block: one block per object.
OBJECT_SIZE: Final = 40_000
_PUT_BLOCK: Final = "garage_block/manager.rs/PutBlock"
_GET_BLOCK: Final = "garage_block/manager.rs/GetBlock"


# ---------------------------------------------------------------------- parsing


Labels = frozenset[tuple[str, str]]


def parse(text: bytes) -> dict[str, dict[Labels, float]]:
    """Every sample of an exposition, by sample name then label set."""
    out: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return out


def value(samples: dict[str, dict[Labels, float]], name: str, **labels: str) -> float:
    """One sample's value; 0 when absent (a counter never incremented)."""
    return samples.get(name, {}).get(frozenset(labels.items()), 0.0)


# ---------------------------------------------------------------------- a node


def node_config(tmp_path: Path, data_dir: object = None) -> GarageConfig:
    """A one-node configuration; ``data_dir`` as in the file (default: ``tmp_path/data``)."""
    return parse_config(
        {
            "metadata_dir": str(tmp_path / "meta"),
            "data_dir": str(tmp_path / "data") if data_dir is None else data_dir,
            "replication_factor": 1,
            "rpc_secret": SECRET.hex(),
            "rpc_bind_addr": "127.0.0.1:0",
            "s3_api": {"s3_region": "garage", "api_bind_addr": "127.0.0.1:0"},
        }
    )


@dataclass
class S3Node:
    garage: Garage
    metrics: NodeMetrics
    s3: Any
    bucket: str

    async def call(self, method: str, **kwargs: object) -> Any:
        """A boto3 call, in a worker thread (boto3 blocks)."""
        return await anyio.to_thread.run_sync(lambda: getattr(self.s3, method)(**kwargs))

    async def get(self, key: str) -> bytes:
        def read() -> bytes:
            data: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return data

        return await anyio.to_thread.run_sync(read)

    async def status_of(self, method: str, **kwargs: object) -> int:
        """The HTTP status of a call expected to fail."""
        with pytest.raises(ClientError) as info:
            await self.call(method, **kwargs)
        status: int = info.value.response["ResponseMetadata"]["HTTPStatusCode"]
        return status


@asynccontextmanager
async def s3_node(tmp_path: Path) -> AsyncIterator[S3Node]:
    """A single node with its S3 API wrapped by its metrics, as ``run_server`` starts it."""
    config = node_config(tmp_path)
    garage = await anyio.to_thread.run_sync(Garage, config)
    metrics = NodeMetrics(garage)
    assert config.s3_api.api_bind_addr is not None
    async with anyio.create_task_group() as tg:
        await tg.start(garage.run)
        quick = await setup_single_node(garage, tmp_path)
        handler = metrics.instrument("s3", S3Api(garage).handle)
        addr = await tg.start(functools.partial(serve, handler, config.s3_api.api_bind_addr))
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://{addr}",
            aws_access_key_id=quick.key_id,
            aws_secret_access_key=quick.secret_key,
            region_name="garage",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        yield S3Node(garage, metrics, s3, quick.bucket)
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_s3_requests_blocks_and_tables_are_counted(tmp_path: Path) -> None:
    async with s3_node(tmp_path) as node:
        before = parse(await node.metrics.scrape())
        objects = {f"obj-{i}": os.urandom(OBJECT_SIZE) for i in range(3)}  # incompressible
        for key, data in objects.items():
            await node.call("put_object", Bucket=node.bucket, Key=key, Body=data)
        assert await node.get("obj-0") == objects["obj-0"]
        assert await node.get("obj-1") == objects["obj-1"]
        for i in range(4):
            assert await node.status_of("get_object", Bucket=node.bucket, Key=f"no-{i}") == 404
        assert await node.status_of("head_object", Bucket=node.bucket, Key="no") == 404
        after = parse(await node.metrics.scrape())
        names = [rt.data.name for rt in node.garage.tables()]

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # API requests: by the routed endpoint and the status, exactly what was sent.
    s3 = {"api": "s3"}
    assert delta("api_requests_total", **s3, endpoint="PutObject", status="200") == 3
    assert delta("api_requests_total", **s3, endpoint="GetObject", status="200") == 2
    assert delta("api_requests_total", **s3, endpoint="GetObject", status="404") == 4
    assert delta("api_requests_total", **s3, endpoint="HeadObject", status="404") == 1
    assert delta("api_errors_total", **s3, endpoint="GetObject", status="404") == 4
    assert delta("api_errors_total", **s3, endpoint="PutObject", status="200") == 0
    assert delta("api_request_duration_seconds_count", **s3, endpoint="GetObject") == 6
    assert delta("api_request_duration_seconds_bucket", **s3, endpoint="GetObject", le="+Inf") == 6
    assert delta("api_request_duration_seconds_sum", **s3, endpoint="PutObject") > 0

    # Blocks: every byte put was written (random data is stored plain), every byte got read.
    assert delta("block_bytes_written_total") >= sum(len(d) for d in objects.values())
    assert delta("block_bytes_read_total") >= 2 * OBJECT_SIZE
    assert delta("block_write_duration_seconds_count") >= 3
    # Each new block queued the check that it arrived (in 2 * rpc_timeout: still queued).
    assert value(after, "block_resync_queue_length") >= 3
    assert value(after, "block_resync_errored_blocks") == 0
    # Nothing is being sent any more: the whole RAM budget is free, in bytes.
    budget = node.garage.config.block_ram_buffer_max // 1024 * 1024
    assert value(after, "block_ram_buffer_free_bytes") == budget

    # RPC: one PutBlock per object (one node), the two GetBlocks, all successful.
    assert delta("rpc_requests_total", endpoint=_PUT_BLOCK, result="ok") == 3
    assert delta("rpc_requests_total", endpoint=_GET_BLOCK, result="ok") >= 2
    assert delta("rpc_duration_seconds_count", endpoint=_PUT_BLOCK) == 3
    assert delta("rpc_timeouts_total", endpoint=_PUT_BLOCK) == 0

    # Tables: the object table was written for each put and read for each get.
    table = {"table_name": "object"}
    assert delta("table_put_request_total", **table) >= 3
    assert delta("table_get_request_total", **table) >= 6
    assert delta("table_put_request_duration_seconds_count", **table) >= 3
    assert delta("table_internal_update_total", **table) >= 3
    assert delta("table_internal_update_total", table_name="block_ref") >= 3
    per_table = (
        "table_merkle_updater_todo_queue_length",
        "table_gc_todo_queue_length",
        "table_sync_items_sent_total",
        "table_gc_collected_total",
    )
    for metric in per_table:
        assert {dict(labels)["table_name"] for labels in after[metric]} == set(names)

    # The node, its disks and the cluster (one healthy node, layout version 1).
    assert value(after, "garage_build_info", version=version("garage")) == 1
    assert value(after, "garage_replication_factor") == 1
    for volume in ("data", "metadata"):
        avail = value(after, "garage_local_disk_avail_bytes", volume=volume)
        assert 0 < avail <= value(after, "garage_local_disk_total_bytes", volume=volume)
    cluster = {
        "cluster_healthy": 1,
        "cluster_available": 1,
        "cluster_known_nodes": 1,
        "cluster_connected_nodes": 1,
        "cluster_storage_nodes": 1,
        "cluster_storage_nodes_ok": 1,
        "cluster_partitions": 256,
        "cluster_partitions_quorum": 256,
        "cluster_partitions_all_ok": 256,
        "cluster_layout_version": 1,
    }
    assert {name: value(after, name) for name in cluster} == cluster


@pytest.mark.anyio
async def test_render_and_scrape_export_the_same_metrics(tmp_path: Path) -> None:
    async with s3_node(tmp_path) as node:
        await node.call("put_object", Bucket=node.bucket, Key="k", Body=b"x" * OBJECT_SIZE)
        scraped = parse(await node.metrics.scrape())
        rendered = parse(node.metrics.render())
    assert CONTENT_TYPE.startswith("text/plain")
    assert set(rendered) == set(scraped)
    assert value(rendered, "api_requests_total", api="s3", endpoint="PutObject", status="200") == 1


# ---------------------------------------------------------------------- a node never started


@pytest.fixture(scope="module")
def idle_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeMetrics]:
    """The metrics of a node built but never run (no layout, no peers)."""
    garage = Garage(node_config(tmp_path_factory.mktemp("idle")))
    try:
        yield NodeMetrics(garage)
    finally:
        garage.db.close()


def test_a_node_without_layout_is_reported_unavailable(idle_node: NodeMetrics) -> None:
    samples = parse(idle_node.render())
    assert value(samples, "cluster_healthy") == 0
    assert value(samples, "cluster_available") == 0
    assert value(samples, "cluster_storage_nodes") == 0
    assert value(samples, "cluster_layout_version") == 0
    assert value(samples, "block_resync_queue_length") == 0


def test_each_data_dir_reports_its_filesystem_and_the_total_counts_it_once(
    tmp_path: Path,
) -> None:
    """Two data directories on one filesystem: one sample per directory, and the
    ``volume="data"`` total holds that filesystem once, not twice."""
    dirs = [tmp_path / "hdd1", tmp_path / "hdd2"]
    garage = Garage(node_config(tmp_path, [{"path": str(d), "capacity": "1G"} for d in dirs]))
    try:
        samples = parse(NodeMetrics(garage).render())
    finally:
        garage.db.close()
    assert os.stat(dirs[0]).st_dev == os.stat(dirs[1]).st_dev  # one filesystem (tmp)
    size = shutil.disk_usage(dirs[0]).total
    assert {dict(labels)["path"] for labels in samples["garage_data_dir_avail_bytes"]} == {
        str(d) for d in dirs
    }
    for d in dirs:
        assert value(samples, "garage_data_dir_total_bytes", path=str(d)) == size
        assert 0 < value(samples, "garage_data_dir_avail_bytes", path=str(d)) <= size
    assert value(samples, "garage_local_disk_total_bytes", volume="data") == size
    # The per-directory families have no aggregate sample a sum() would count twice.
    assert all("path" in dict(labels) for labels in samples["garage_data_dir_total_bytes"])


def test_names_follow_prometheus_conventions(idle_node: NodeMetrics) -> None:
    """Counters end in ``_total``, units are base units in the name, and no ``_created``
    series is exported."""
    families = list(text_string_to_metric_families(idle_node.render().decode()))
    names = {sample.name for family in families for sample in family.samples}
    assert not [n for n in names if n.endswith("_created")]
    for family in families:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", family.name), family.name
        assert not family.name.endswith(("_kb", "_kib", "_ms", "_msec", "_counter")), family.name
        if family.type == "counter":
            assert "counter" not in family.name, family.name
            assert all(s.name == family.name + "_total" for s in family.samples), family.name
    renamed = {
        "block_ram_buffer_free_bytes",
        "block_resyncs_total",
        "block_resync_errors_total",
    }
    assert renamed <= names
    assert not names & {"block_ram_buffer_free_kb", "block_resync_counter_total"}


def test_created_series_are_dropped_for_the_node_registry_only(idle_node: NodeMetrics) -> None:
    """The node does not flip ``prometheus_client``'s process-wide switch: another
    registry of the same process (an embedding application's) keeps its ``_created``."""
    other = CollectorRegistry()
    PromCounter("app_jobs", "An application's counter.", registry=other).inc()

    async def answer(request: Request) -> Response:
        return Response(200, endpoint="ListBuckets")

    # A request counted makes the API counter and histogram children that carry _created.
    anyio.run(idle_node.instrument("created", answer), Request("GET", "/", "", []), backend="trio")
    samples = parse(idle_node.render())
    labels = {"api": "created", "endpoint": "ListBuckets"}
    assert value(samples, "api_requests_total", **labels, status="200") == 1
    assert value(samples, "api_request_duration_seconds_count", **labels) == 1
    assert not [name for name in samples if name.endswith("_created")]
    assert b"app_jobs_created" in generate_latest(other)


_ENDPOINTS = st.sampled_from(["", "GetObject", "PutObject", "ListBuckets"])
_STATUSES = st.sampled_from([200, 204, 206, 304, 400, 403, 404, 500, 503])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(_ENDPOINTS, _STATUSES, st.booleans()), max_size=12))
def test_instrument_counts_each_answer_by_endpoint_and_status(
    idle_node: NodeMetrics, answers: list[tuple[str, int, bool]]
) -> None:
    """Each answer is counted once under its endpoint (the method when not routed) and
    status; a handler that raises counts as a 500 and its exception goes through."""
    requests: Counter[tuple[str, str]] = Counter()
    errors: Counter[tuple[str, str]] = Counter()
    timed: Counter[str] = Counter()
    for endpoint, status, raises in answers:
        name = "GET" if raises or not endpoint else endpoint  # no response, no endpoint
        code = str(500 if raises else status)
        requests[name, code] += 1
        timed[name] += 1
        if int(code) >= 400:
            errors[name, code] += 1
    before = parse(idle_node.render())

    async def run_all() -> None:
        for endpoint, status, raises in answers:

            async def handler(
                request: Request, e: str = endpoint, s: int = status, r: bool = raises
            ) -> Response:
                if r:
                    raise RuntimeError("handler bug")
                return Response(s, endpoint=e)

            instrumented = idle_node.instrument("prop", handler)
            if raises:
                with pytest.raises(RuntimeError, match="handler bug"):
                    await instrumented(Request("GET", "/", "", []))
            else:
                await instrumented(Request("GET", "/", "", []))

    anyio.run(run_all, backend="trio")
    after = parse(idle_node.render())

    def delta(name: str, **labels: str) -> float:
        return value(after, name, api="prop", **labels) - value(before, name, api="prop", **labels)

    for name in ["GET", "GetObject", "PutObject", "ListBuckets"]:
        for code in ["200", "204", "206", "304", "400", "403", "404", "500", "503"]:
            assert delta("api_requests_total", endpoint=name, status=code) == requests[name, code]
            assert delta("api_errors_total", endpoint=name, status=code) == errors[name, code]
        assert delta("api_request_duration_seconds_count", endpoint=name) == timed[name]


# ---------------------------------------------------------------------- RPC outcomes


@dataclass(frozen=True, slots=True)
class Msg:
    text: str


OK = Endpoint("test/metrics/Ok", Msg, Msg)
FAIL = Endpoint("test/metrics/Fail", Msg, Msg)
HANG = Endpoint("test/metrics/Hang", Msg, Msg)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_rpc_calls_are_counted_by_endpoint_and_outcome() -> None:
    """A timeout is told from a cancellation by the deadline, on both backends."""
    hanging = anyio.Event()

    async def ok(msg: Msg, node: NodeId, s: ByteReceiveStream | None) -> tuple[Msg, None]:
        return msg, None

    async def fail(msg: Msg, node: NodeId, s: ByteReceiveStream | None) -> tuple[Msg, None]:
        raise GarageError("refused")

    async def hang(
        msg: Msg, node: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Msg, AttachedStream | None]:
        hanging.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    client, server = NetApp(NodeKey.generate(), SECRET), NetApp(NodeKey.generate(), SECRET)
    server.endpoint(OK, ok)
    server.endpoint(FAIL, fail)
    server.endpoint(HANG, hang)
    async with anyio.create_task_group() as tg:
        addr = await tg.start(server.run, ("127.0.0.1", 0))
        await tg.start(client.run)
        await client.connect(server.id, addr)
        for _ in range(3):
            assert await client.call(server.id, OK, Msg("hi")) == Msg("hi")
        with pytest.raises(RemoteError, match="refused"):
            await client.call(server.id, FAIL, Msg("x"))
        with pytest.raises(NotConnected):
            await client.call(NodeKey.generate().node_id, OK, Msg("nobody"))
        with pytest.raises(TimeoutError), anyio.fail_after(0.2):
            await client.call(server.id, HANG, Msg("slow"))
        # Cancelled before any deadline, e.g. once a quorum was met without it.
        hanging = anyio.Event()
        async with anyio.create_task_group() as quorum:
            quorum.start_soon(client.call, server.id, HANG, Msg("unneeded"))
            await hanging.wait()
            quorum.cancel_scope.cancel()
        tg.cancel_scope.cancel()

    stats = client.call_statistics()
    assert (stats[OK.path].ok, stats[OK.path].net_errors) == (3, 1)
    assert (stats[FAIL.path].errors, stats[FAIL.path].ok) == (1, 0)
    hung = stats[HANG.path]
    assert (hung.timeouts, hung.cancelled, hung.ended) == (1, 1, 1)
    assert hung.duration_s > 0


# ---------------------------------------------------------------------- over HTTP


@pytest.mark.slow  # a node process starts in seconds, tens of them on a loaded machine
def test_the_admin_api_serves_the_metrics_of_a_real_node(tmp_path: Path) -> None:
    admin = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [
            str(GARAGE), "server", "--single-node", "--data-dir", str(tmp_path),
            "--s3-api-bind", "127.0.0.1:0", "--rpc-bind", f"127.0.0.1:{free_port()}",
            "--admin-bind", admin,
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        summary = ""
        for line in proc.stdout:
            summary += line
            if line.startswith("Stop it with"):
                break

        def field(name: str) -> str:
            found = re.search(rf"{name}:\s+(\S+)", summary)
            assert found is not None, f"no {name} in {summary!r}"
            return found.group(1)

        s3 = boto3.client(
            "s3",
            endpoint_url=field("S3 endpoint"),
            aws_access_key_id=field("Key ID"),
            aws_secret_access_key=field("Secret key"),
            region_name=field("S3 region"),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        bucket = field("Bucket")
        s3.put_object(Bucket=bucket, Key="k", Body=os.urandom(OBJECT_SIZE))
        with pytest.raises(ClientError):
            s3.get_object(Bucket=bucket, Key="missing")
        config = tomllib.loads((tmp_path / "garage.toml").read_text())
        token = config["admin"]["metrics_token"]
        answer = httpx.get(
            f"http://{admin}/metrics", headers={"authorization": f"Bearer {token}"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == CONTENT_TYPE
        samples = parse(answer.content)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
    s3_labels = {"api": "s3"}
    assert (
        value(samples, "api_requests_total", **s3_labels, endpoint="PutObject", status="200") == 1
    )
    assert (
        value(samples, "api_requests_total", **s3_labels, endpoint="GetObject", status="404") == 1
    )
    assert value(samples, "block_bytes_written_total") >= OBJECT_SIZE
    assert value(samples, "cluster_healthy") == 1
    assert value(samples, "garage_local_disk_avail_bytes", volume="data") > 0
