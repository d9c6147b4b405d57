"""Background activity seen through ``/metrics`` on a 3-node cluster of real processes.

Three ``garage server`` processes (tests/garage/metrics_node.py: the real server, with the
cluster tests' short sync, GC and resync timings), replication factor 3, two data
directories each, formed through ``bootstrap_peers`` and laid out, given a key and a bucket
through the admin API. boto3 talks S3 to them; each test scrapes ``/metrics`` of the admin
APIs over HTTP and checks that the counters of what happened in the background moved:
anti-entropy after a node missed writes, table GC after deletes, failed resyncs of a block
lost everywhere. The cluster is shared by the module's tests, which compare counters
before and after what they do, and leave every node up.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
import httpx
import pytest
from botocore.config import Config
from tests.api.conftest import free_port
from tests.garage.test_metrics import Labels, parse, value

from garage.cli import main as garage_cli
from garage_rpc.net import NodeKey
from garage_util.data import blake2sum

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.slow

NODE_MODULE: Final = "tests.garage.metrics_node"
REPO_ROOT: Final = Path(__file__).resolve().parents[2]
#: How long background work may take to show (connections, syncs, GC, resync retries):
#: a bound against hangs on a loaded machine, not a timing assertion.
CONVERGE_S: Final = 120.0
#: Bigger than the inline threshold (3 KiB), smaller than a block: one block per object.
OBJECT_SIZE: Final = 40_000
Samples = dict[str, dict[Labels, float]]


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Polls ``condition`` (other processes' state) until it holds, or fails."""
    deadline = time.monotonic() + CONVERGE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.3)  # noqa: TID251 - a sync test waiting for other processes


def wait_metric(
    node: Node,
    name: str,
    what: str,
    *,
    above: float | None = None,
    equal: float | None = None,
    **labels: str,
) -> None:
    """Polls ``node``'s ``/metrics`` until the sample is above (or equal to) a value."""

    def holds() -> bool:
        current = node.metric(name, **labels)
        return current > above if above is not None else current == equal

    eventually(holds, f"{node.dir.name}: {what}")


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------------- the cluster


@dataclass
class Node:
    """One node process: its directory, ports and admin token."""

    dir: Path
    node_id: str
    rpc_port: int
    s3_port: int
    admin_port: int
    admin_token: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.dir / "garage.toml"

    @property
    def data_dirs(self) -> list[Path]:
        return [self.dir / "data1", self.dir / "data2"]

    @property
    def peer(self) -> str:
        return f"{self.node_id}@127.0.0.1:{self.rpc_port}"

    def start(self) -> None:
        with (self.dir / "log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", NODE_MODULE, "-c", str(self.config), "server"],
                cwd=REPO_ROOT,  # -m puts it on sys.path: the runner imports tests.cluster
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # The admin API is the last server to start: once it listens, all are up.
        eventually(lambda: listening(self.admin_port), f"{self.dir.name} listens")

    def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def admin(self, method: str, path: str, body: object = None) -> Any:
        answer = httpx.request(
            method,
            f"http://127.0.0.1:{self.admin_port}{path}",
            json=body,
            headers={"authorization": f"Bearer {self.admin_token}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    def scrape(self) -> Samples:
        """``GET /metrics`` of the admin API, parsed."""
        answer = httpx.get(
            f"http://127.0.0.1:{self.admin_port}/metrics",
            headers={"authorization": f"Bearer {self.admin_token}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        return parse(answer.content)

    def metric(self, name: str, **labels: str) -> float:
        return value(self.scrape(), name, **labels)

    def block_files(self) -> dict[str, list[Path]]:
        """The block files in the data directories, by hash hex."""
        found: dict[str, list[Path]] = {}
        for data in self.data_dirs:
            for p in data.glob("??/??/*"):
                if p.is_file() and not p.name.endswith(".corrupted") and ".tmp" not in p.name:
                    found.setdefault(p.name.removesuffix(".zst"), []).append(p)
        return found


@dataclass
class Cluster:
    nodes: list[Node]
    key_id: str
    secret_key: str
    bucket: str

    def s3(self, node: Node) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{node.s3_port}",
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret_key,
            region_name="garage",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def wait_healthy(self) -> None:
        for node in self.nodes:
            wait_metric(node, "cluster_healthy", "a healthy cluster", equal=1)

    def total(self, name: str, **labels: str) -> float:
        """A counter summed over the nodes."""
        return sum(n.metric(name, **labels) for n in self.nodes)


def _write_config(node: Node, secret: str, peers: list[str]) -> None:
    data_dirs = ", ".join(f'{{ path = "{d}", capacity = "1G" }}' for d in node.data_dirs)
    node.config.write_text(
        f'metadata_dir = "{node.dir / "meta"}"\n'
        f"data_dir = [{data_dirs}]\n"
        f"replication_factor = 3\n"
        f'rpc_secret = "{secret}"\n'
        f'rpc_bind_addr = "127.0.0.1:{node.rpc_port}"\n'
        f"bootstrap_peers = {json.dumps(peers)}\n"
        f'[s3_api]\ns3_region = "garage"\napi_bind_addr = "127.0.0.1:{node.s3_port}"\n'
        f'[admin]\napi_bind_addr = "127.0.0.1:{node.admin_port}"\n'
        f'admin_token = "{node.admin_token}"\n'
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("activity")
    secret, token = secrets.token_hex(32), secrets.token_urlsafe(24)
    nodes = []
    for i in range(3):
        node_dir = root / f"node{i}"
        # The node key made before the first start, so that each config names its peers.
        key = NodeKey.load_or_create(node_dir / "meta")
        ports = (free_port(), free_port(), free_port())
        nodes.append(Node(node_dir, bytes(key.node_id).hex(), *ports, token))
    try:
        for node in nodes:
            _write_config(node, secret, [n.peer for n in nodes if n is not node])
            node.start()
        first = nodes[0]
        roles = [{"id": n.node_id, "zone": f"dc{i}", "capacity": 10**9, "tags": []}
                 for i, n in enumerate(nodes)]  # fmt: skip
        first.admin("POST", "/v1/layout", roles)
        first.admin("POST", "/v1/layout/apply", {"version": 1})
        for node in nodes:
            wait_metric(node, "cluster_layout_version", "layout 1 applied", equal=1)
        key = first.admin("POST", "/v1/key", {"name": "activity"})
        bucket = first.admin("POST", "/v1/bucket", {"globalAlias": "activity"})
        rights = {"read": True, "write": True, "owner": True}
        first.admin("POST", "/v1/bucket/allow",
                    {"bucketId": bucket["id"], "accessKeyId": key["accessKeyId"],
                     "permissions": rights})  # fmt: skip
        made = Cluster(nodes, key["accessKeyId"], key["secretAccessKey"], "activity")
        made.wait_healthy()
        yield made
    finally:
        for node in nodes:
            node.stop()


# ---------------------------------------------------------------------- the tests


def test_a_node_that_missed_writes_gets_them_by_anti_entropy(cluster: Cluster) -> None:
    cluster.wait_healthy()
    first, second, third = cluster.nodes
    s3 = cluster.s3(first)
    third.stop()
    eventually(lambda: first.metric("cluster_connected_nodes") == 2, "the stop seen")
    down = first.scrape()
    # Two of three storage nodes: not healthy, still available (a write quorum is up).
    assert value(down, "cluster_healthy") == 0
    assert value(down, "cluster_available") == 1
    assert value(down, "cluster_storage_nodes_ok") == 2
    assert value(down, "cluster_partitions_all_ok") == 0

    missed = [f"missed-{i}" for i in range(5)]
    for key in missed:
        s3.put_object(Bucket=cluster.bucket, Key=key, Body=b"written while node 2 was down")
    table = {"table_name": "object"}
    sent_before = sum(n.metric("table_sync_items_sent_total", **table) for n in (first, second))
    third.start()  # same ports and data: the others reconnect and sync it

    eventually(
        lambda: third.metric("table_sync_items_received_total", **table) >= len(missed),
        "the restarted node receives the objects it missed",
    )
    back = third.scrape()
    # Its counters started at 0: the entries it merged since are the ones it lacked.
    assert value(back, "table_internal_update_total", **table) >= len(missed)
    # The senders count a batch once its receiver acknowledged it: polled too.
    eventually(
        lambda: (
            sum(n.metric("table_sync_items_sent_total", **table) for n in (first, second))
            >= sent_before + len(missed)
        ),
        "the others count the items they pushed",
    )
    eventually(
        lambda: third.metric("table_sync_full_syncs_total", **table) >= 1,
        "a full sync of the object table completed on the restarted node",
    )
    cluster.wait_healthy()
    for key in missed:
        got = cluster.s3(third).get_object(Bucket=cluster.bucket, Key=key)["Body"].read()
        assert got == b"written while node 2 was down"


def test_table_gc_collects_the_tombstones_of_deleted_objects(cluster: Cluster) -> None:
    cluster.wait_healthy()
    s3 = cluster.s3(cluster.nodes[1])
    data = os.urandom(OBJECT_SIZE)  # incompressible: one plain block file
    block = bytes(blake2sum(data)).hex()
    before = {
        t: cluster.total("table_gc_collected_total", table_name=t) for t in ("version", "block_ref")
    }
    deletes_before = [n.metric("table_internal_delete_total", table_name="version")
                      for n in cluster.nodes]  # fmt: skip
    blocks_deleted_before = cluster.total("block_delete_total")
    s3.put_object(Bucket=cluster.bucket, Key="collect-me", Body=data)
    eventually(
        lambda: all(block in n.block_files() for n in cluster.nodes), "the block on every node"
    )
    s3.delete_object(Bucket=cluster.bucket, Key="collect-me")

    # The version and its block reference became tombstones; their GC leader collects
    # them once they are gc_delay old and every replica acknowledged.
    for table, collected in before.items():
        name = "table_gc_collected_total"
        eventually(
            functools.partial(_total_above, cluster, name, collected, table_name=table),
            f"a {table} tombstone collected",
        )
    # Every replica deleted its copy of the version tombstone.
    for node, deleted in zip(cluster.nodes, deletes_before, strict=True):
        wait_metric(node, "table_internal_delete_total", "the version tombstone deleted",
                    above=deleted, table_name="version")  # fmt: skip
    # The block lost its last reference: each node deletes its copy after the block GC delay.
    eventually(lambda: all(block not in n.block_files() for n in cluster.nodes), "block deleted")
    # (Counted just after the file is gone: polled too.)
    eventually(
        functools.partial(_total_above, cluster, "block_delete_total", blocks_deleted_before + 2),
        "three block copies deleted",
    )
    for node in cluster.nodes:
        wait_metric(node, "table_gc_todo_queue_length", "no version tombstone left to collect",
                    equal=0, table_name="version")  # fmt: skip


def _total_above(cluster: Cluster, name: str, bound: float, **labels: str) -> bool:
    return cluster.total(name, **labels) > bound


def test_resyncs_of_a_block_lost_everywhere_fail_and_are_counted(cluster: Cluster) -> None:
    cluster.wait_healthy()
    s3 = cluster.s3(cluster.nodes[0])
    data = os.urandom(OBJECT_SIZE)
    block = bytes(blake2sum(data)).hex()
    s3.put_object(Bucket=cluster.bucket, Key="lost-block", Body=data)
    eventually(
        lambda: all(block in n.block_files() for n in cluster.nodes), "the block on every node"
    )
    before = [n.scrape() for n in cluster.nodes]
    for node in cluster.nodes:
        for path in node.block_files()[block]:
            path.unlink()
    # ``garage repair blocks`` on every node: each resyncs its blocks, finds this one
    # referenced but absent, and no peer can send it.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        launched = garage_cli(
            ["-c", str(cluster.nodes[0].config), "repair", "--yes", "-a", "blocks"]
        )
    assert launched == 0, out.getvalue()
    for node, old in zip(cluster.nodes, before, strict=True):
        wait_metric(node, "block_resync_errors_total", "a failed resync counted",
                    above=value(old, "block_resync_errors_total"))  # fmt: skip
        # The failure is recorded in the db just after it is counted: polled too.
        wait_metric(node, "block_resync_errored_blocks", "the block listed as errored", above=0)
        now = node.scrape()
        assert value(now, "block_resyncs_total") > value(old, "block_resyncs_total")
        assert value(now, "block_resync_duration_seconds_count") > value(
            old, "block_resync_duration_seconds_count"
        )


def test_each_data_dir_is_reported_over_http(cluster: Cluster) -> None:
    for node in cluster.nodes:
        samples = node.scrape()
        for data in node.data_dirs:
            avail = value(samples, "garage_data_dir_avail_bytes", path=str(data))
            assert 0 < avail <= value(samples, "garage_data_dir_total_bytes", path=str(data))
