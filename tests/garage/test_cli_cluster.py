"""A 3-node cluster formed, laid out and used only through the CLI, all real processes.

Three ``garage -c nodeN/garage.toml server`` processes on free ports of 127.0.0.1, one
secret, replication factor 3. The console script then does what an operator does:
``node id``, ``node connect``, ``status``, ``layout assign -z dcN -c 1G`` for each node,
``layout apply --version 1``, ``key create``, ``bucket create``, ``bucket allow``. Finally
boto3 talks to the S3 endpoint of every node with the new key.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.garage.test_cli_admin import ENV, GARAGE, free_port, run_process

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.slow

#: How long the cluster may take to converge (connections, layout gossip) before a test
#: gives up: a bound against hangs, not a timing assertion.
CONVERGE_S = 90.0


@dataclass
class ClusterNode:
    dir: Path
    rpc_port: int
    s3_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.dir / "garage.toml"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = run_process("-c", str(self.config), *args)
        return subprocess.CompletedProcess(args, done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str) -> str:
        out = self.cli(*args)
        assert out.returncode == 0, f"garage {' '.join(args)}: {out.stderr}"
        return out.stdout

    def js(self, *args: str) -> Any:
        return json.loads(self.ok("--json", *args))

    def s3(self, key_id: str, secret: str) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.s3_port}",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name="garage",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Polls ``condition`` (other processes' state) until it holds, or fails."""
    deadline = time.monotonic() + CONVERGE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.5)  # noqa: TID251 - a sync test waiting for other processes


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[ClusterNode]]:
    secret = secrets.token_hex(32)
    nodes = [ClusterNode(tmp_path / f"node{i}", free_port(), free_port()) for i in (1, 2, 3)]
    try:
        for node in nodes:
            node.dir.mkdir()
            node.config.write_text(
                f'metadata_dir = "meta"\ndata_dir = "data"\nreplication_factor = 3\n'
                f'rpc_secret = "{secret}"\nrpc_bind_addr = "127.0.0.1:{node.rpc_port}"\n'
                f'[s3_api]\ns3_region = "garage"\napi_bind_addr = "127.0.0.1:{node.s3_port}"\n'
            )
            with (node.dir / "log").open("wb") as log:
                node.proc = subprocess.Popen(
                    [str(GARAGE), "-c", str(node.config), "server"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=ENV,
                    start_new_session=True,
                )
        for node in nodes:
            eventually(functools.partial(listening, node.rpc_port), f"{node.dir.name} listens")
        yield nodes
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait()


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def test_three_nodes_formed_laid_out_and_used_through_the_cli(
    cluster: list[ClusterNode],
) -> None:
    first, *others = cluster
    ids = [n.ok("node", "id", "-q").strip() for n in cluster]
    for node_id, node in zip(ids, cluster, strict=True):
        assert node_id.endswith(f"@127.0.0.1:{node.rpc_port}")
    hexes = [i.split("@")[0] for i in ids]

    for node_id in ids[1:]:
        assert "Connected" in first.ok("node", "connect", node_id)

    def all_up() -> bool:
        status = first.js("status")
        return sum(bool(n["is_up"]) for n in status["nodes"]) == len(cluster)

    eventually(all_up, "the first node sees all three up")
    status = first.ok("status")
    assert "NO ROLE ASSIGNED" in status

    ambiguous = first.cli(
        "layout", "assign", _common_prefix(hexes[0], hexes[1]), "-z", "dc1", "-c", "1G"
    )
    assert ambiguous.returncode == 1
    assert "ambiguous" in ambiguous.stderr
    bad = first.cli("layout", "assign", hexes[0][:10], "-z", "dc1", "-c", "one gig")
    assert bad.returncode == 1
    assert "invalid capacity" in bad.stderr

    for i, node_hex in enumerate(hexes, start=1):
        first.ok("layout", "assign", node_hex[:10], "-z", f"dc{i}", "-c", "1G")
    show = first.ok("layout", "show")
    assert "garage layout apply --version 1" in show
    wrong = first.cli("layout", "apply", "--version", "2")
    assert wrong.returncode == 1
    assert "must be 1" in wrong.stderr
    assert "has been applied" in first.ok("layout", "apply", "--version", "1")

    def laid_out(node: ClusterNode) -> bool:
        status = node.js("status")
        return bool(status["layout_version"] == 1 and status["health"]["status"] == "healthy")

    for node in cluster:
        eventually(functools.partial(laid_out, node), f"{node.dir.name} has layout 1, healthy")
    roles = {r["id"]: r["zone"] for r in others[0].js("layout", "show")["roles"]}
    assert roles == {h: f"dc{i}" for i, h in enumerate(hexes, start=1)}
    assert "partitions with a write quorum" in others[1].ok("status")

    key = first.js("key", "create", "app")
    first.ok("bucket", "create", "data")
    first.ok("bucket", "allow", "--read", "--write", "data", "--key", key["key_id"])
    clients = [n.s3(key["key_id"], key["secret_key"]) for n in cluster]

    def sees_bucket(s3: Any) -> bool:
        return bool([b["Name"] for b in s3.list_buckets()["Buckets"]] == ["data"])

    for node, s3 in zip(cluster, clients, strict=True):
        eventually(functools.partial(sees_bucket, s3), f"{node.dir.name} lists the bucket")
    info = others[1].js("bucket", "info", "data")
    assert [(k["key_id"], k["read"], k["write"]) for k in info["keys"]] == [
        (key["key_id"], True, True)
    ]

    bodies = {f"from-node{i}": os.urandom(100_000 + i) for i in range(len(cluster))}
    try:
        for s3, (key_name, body) in zip(clients, bodies.items(), strict=True):
            s3.put_object(Bucket="data", Key=key_name, Body=body)  # in a block, not inline
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NotImplemented":
            pytest.skip(
                "PutObject is not implemented yet (garage_api/s3/_h_object.py): the cluster "
                "was formed and laid out, but objects were not put and read through it"
            )
        raise
    for s3 in clients:
        for key_name, body in bodies.items():
            assert s3.get_object(Bucket="data", Key=key_name)["Body"].read() == body

    def counted() -> bool:
        return bool(others[0].js("bucket", "info", "data")["objects"] == len(cluster))

    eventually(counted, "bucket info counts the three objects")  # counters propagate
