"""A 3-node Garage cluster of real ``garage server`` processes, for the S3 cluster tests.

Each node gets a directory with a ``garage.toml``: absolute metadata and data directories,
replication factor 3, one shared ``rpc_secret``, its own free RPC and S3 ports on
127.0.0.1 (a socket bound to port 0 finds them) and, for nodes 2 and 3, node 1 as
``bootstrap_peers``. Node 1's key is generated here before it starts (as the node itself
would on its first start), so the three processes start at once.

The cluster is then formed and laid out as an operator does it, with the ``garage`` CLI
(the approach of tests/garage/test_cli_cluster.py, whose helpers are reused): ``node
connect``, ``layout assign -z dcN -c 1G <id>`` for every node, ``layout apply --version
1``, then ``key create``, ``bucket create`` and ``bucket allow --read --write --owner``.
The CLI runs through its entry point (``garage.cli.main``) in this process, which is the
same argument parsing, throw-away node key, secret handshake and node handlers as the
console script without a Python start per command (as tests/garage/test_cli_admin.py does).

A node can be killed with SIGKILL (no graceful stop: the crash case) and started again on
the same configuration, ports and data. Nodes write their logs to the test's stderr.
"""

from __future__ import annotations

import functools
import io
import json
import os
import secrets
import signal
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from tests.garage.test_cli_admin import ENV, GARAGE, free_port
from tests.garage.test_cli_cluster import eventually, listening

from garage.cli import main
from garage_rpc.net import NodeKey

if TYPE_CHECKING:
    from collections.abc import Iterator

#: How long a node may take to stop on SIGTERM before it is killed.
STOP_TIMEOUT_S = 30
REGION = "garage"


@dataclass(frozen=True, slots=True)
class CliResult:
    """What one ``garage`` command printed, and its exit status."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class Node:
    """One ``garage server`` process and its directory (config, metadata, data)."""

    name: str
    dir: Path
    rpc_port: int
    s3_port: int
    node_id: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.dir / "garage.toml"

    @property
    def address(self) -> str:
        """``<node id>@127.0.0.1:<rpc port>``, as ``bootstrap_peers`` and ``node connect``
        take it."""
        return f"{self.node_id}@127.0.0.1:{self.rpc_port}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def write_config(self, secret: str, bootstrap: list[str]) -> None:
        meta, data = self.dir / "meta", self.dir / "data"
        peers = ", ".join(f'"{p}"' for p in bootstrap)
        self.config.write_text(
            f'metadata_dir = "{meta}"\ndata_dir = "{data}"\nreplication_factor = 3\n'
            f'rpc_secret = "{secret}"\nrpc_bind_addr = "127.0.0.1:{self.rpc_port}"\n'
            f"bootstrap_peers = [{peers}]\n"
            f'[s3_api]\ns3_region = "{REGION}"\napi_bind_addr = "127.0.0.1:{self.s3_port}"\n'
        )

    def start(self) -> None:
        """Starts the server (returns at once: see :meth:`wait_listening`)."""
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        self.proc = subprocess.Popen(
            [str(GARAGE), "-c", str(self.config), "server"],
            stdout=subprocess.DEVNULL,
            env=ENV,
            start_new_session=True,
        )

    def wait_listening(self) -> None:
        def up() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, f"{self.name} exited with {self.proc.returncode}"
            return listening(self.rpc_port) and listening(self.s3_port)

        eventually(up, f"{self.name} listens")

    def kill(self) -> None:
        """SIGKILL: the node stops at once, without flushing or saying goodbye."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int | None:
        """SIGTERM, then the exit status (SIGKILL after STOP_TIMEOUT_S); None if not running."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def cli(self, *args: str) -> CliResult:
        """``garage -c <this node's config> <args>`` through the CLI's entry point."""
        out, err = io.StringIO(), io.StringIO()
        saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GARAGE_")}
        try:
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    code = main(["-c", str(self.config), *args])
                except SystemExit as exc:  # argparse refusing the command line
                    code = exc.code if isinstance(exc.code, int) else 2
        finally:
            os.environ.update(saved)
        return CliResult(code, out.getvalue(), err.getvalue())

    def ok(self, *args: str) -> str:
        """Runs a command that must succeed; its stdout."""
        done = self.cli(*args)
        assert done.returncode == 0, f"garage {' '.join(args)} on {self.name}: {done.stderr}"
        return done.stdout

    def js(self, *args: str) -> Any:
        """Runs a command with ``--json``; its parsed output."""
        return json.loads(self.ok("--json", *args))

    def s3(self, key_id: str, secret: str) -> Any:
        """A boto3 client for this node's S3 endpoint (path-style, no retries)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


@dataclass
class Cluster:
    """Three laid-out nodes, one key allowed on one bucket, a boto3 client per node."""

    nodes: list[Node]
    key_id: str = ""
    secret: str = ""
    bucket: str = ""
    clients: list[Any] = field(default_factory=list)

    def all_up(self, observer: Node) -> bool:
        """Whether ``observer`` sees every node up (and is itself answering)."""
        if observer.cli("status").returncode != 0:
            return False
        status = observer.js("status")
        return sum(bool(n["is_up"]) for n in status["nodes"]) == len(self.nodes)

    def wait_all_up(self) -> None:
        for node in self.nodes:
            eventually(functools.partial(self.all_up, node), f"{node.name} sees all nodes up")


def _laid_out(node: Node) -> bool:
    status = node.js("status")
    return bool(status["layout_version"] == 1 and status["health"]["status"] == "healthy")


def _sees_bucket(client: Any, bucket: str) -> bool:
    return bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]


def _form(cluster: Cluster) -> None:
    """Connects, lays out, and creates the key and bucket, all through the CLI."""
    first = cluster.nodes[0]
    for node in cluster.nodes[1:]:
        assert "Connected" in first.ok("node", "connect", node.address)
    cluster.wait_all_up()
    for i, node in enumerate(cluster.nodes, start=1):
        first.ok("layout", "assign", "-z", f"dc{i}", "-c", "1G", node.node_id[:16])
    assert "has been applied" in first.ok("layout", "apply", "--version", "1")
    for node in cluster.nodes:
        eventually(functools.partial(_laid_out, node), f"{node.name} has layout 1, healthy")

    key = first.js("key", "create", "cluster-tests")
    cluster.key_id, cluster.secret, cluster.bucket = key["key_id"], key["secret_key"], "shared"
    first.ok("bucket", "create", cluster.bucket)
    first.ok(
        "bucket", "allow", "--read", "--write", "--owner", cluster.bucket, "--key", cluster.key_id
    )
    cluster.clients = [n.s3(cluster.key_id, cluster.secret) for n in cluster.nodes]
    for node, client in zip(cluster.nodes, cluster.clients, strict=True):
        sees = functools.partial(_sees_bucket, client, cluster.bucket)
        eventually(sees, f"{node.name} lists the bucket")


def start_cluster(tmp: Path, *, size: int = 3) -> Iterator[Cluster]:
    """Starts ``size`` nodes in ``tmp``, forms the cluster, yields it, then stops every node.

    A generator for a pytest fixture: on the way out, each running node gets SIGTERM and
    must exit 0 (a graceful stop), even when the test failed.
    """
    rpc_secret = secrets.token_hex(32)
    nodes = [
        Node(f"node{i}", tmp / f"node{i}", free_port(), free_port()) for i in range(1, size + 1)
    ]
    for node in nodes:
        node.dir.mkdir(parents=True)
        node.node_id = NodeKey.load_or_create(node.dir / "meta").node_id.hex()
    for node in nodes:
        node.write_config(rpc_secret, [] if node is nodes[0] else [nodes[0].address])
    cluster = Cluster(nodes)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_listening()
        _form(cluster)
        yield cluster
    finally:
        codes = {node.name: node.stop() for node in nodes}
    assert all(code in (0, None) for code in codes.values()), f"unclean stops: {codes}"
