"""A 3-node cluster of real ``garage server`` processes on this machine, one zone each.

As tests/api/cluster.py, but for the benchmarks: a chosen runtime (``GARAGE_RUNTIME``),
logs in files, and optionally an announced RPC address per node that differs from the
bound one (``rpc_public_addr``): bench_geo puts a delaying relay there, so that every
node-to-node connection crosses one relay whichever node dials.

Each node gets a directory with its ``garage.toml`` (replication factor 3, one shared
secret, its RPC and S3 ports) and every other node in ``bootstrap_peers`` (node keys are
made here before the nodes start, as a node does on its first start), so they connect by
themselves. The layout (``dc1``..``dc3``, 1 GB each), a key and a bucket are then made
with the ``garage`` CLI, run in this process through its entry point, as an operator would.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import secrets
import subprocess
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from bench._load import Creds, Target
from bench._servers import (
    GARAGE,
    Server,
    ServerError,
    call,
    free_port,
    node_env,
    stop,
    wait_for,
)
from garage.cli import main as garage_cli
from garage_rpc.net import NodeKey

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["BUCKET", "REGION", "ClusterNode", "start_cluster"]

REGION: Final = "garage"
BUCKET: Final = "bench"
#: Forming a cluster over a delayed network takes a few round trips per step.
FORM_TIMEOUT_S: Final = 180.0
#: Attempts of a setup step that failed (transient errors right after a layout change).
RETRIES: Final = 5
RETRY_S: Final = 1.0
T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One node's directory and ports (``public_port``: where peers reach its RPC)."""

    name: str
    dir: Path
    rpc_port: int
    public_port: int
    s3_port: int
    node_id: str

    @property
    def config(self) -> Path:
        return self.dir / "garage.toml"

    @property
    def address(self) -> str:
        return f"{self.node_id}@127.0.0.1:{self.public_port}"

    def write_config(self, secret: str, peers: Sequence[str]) -> None:
        listed = ", ".join(f'"{p}"' for p in peers)
        self.config.write_text(
            f'metadata_dir = "{self.dir / "meta"}"\ndata_dir = "{self.dir / "data"}"\n'
            f'replication_factor = 3\nrpc_secret = "{secret}"\n'
            f'rpc_bind_addr = "127.0.0.1:{self.rpc_port}"\n'
            f'rpc_public_addr = "127.0.0.1:{self.public_port}"\n'
            f"bootstrap_peers = [{listed}]\n"
            f'[s3_api]\ns3_region = "{REGION}"\napi_bind_addr = "127.0.0.1:{self.s3_port}"\n'
        )

    def cli(self, *args: str) -> str:
        """``garage -c <config> <args>`` in this process; its stdout.

        Raises:
            ServerError: the command failed.
        """
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = garage_cli(["-c", str(self.config), *args])
            except SystemExit as exc:  # argparse refusing the command line
                code = exc.code if isinstance(exc.code, int) else 2
        if code != 0:
            raise ServerError(f"garage {' '.join(args)} on {self.name}: {err.getvalue()[-2000:]}")
        return out.getvalue()

    def js(self, *args: str) -> Any:
        return json.loads(self.cli("--json", *args))


def _all_up(node: ClusterNode, count: int) -> bool:
    try:
        status = node.js("status")
    except ServerError:
        return False
    return sum(bool(n["is_up"]) for n in status["nodes"]) == count


def _laid_out(node: ClusterNode) -> bool:
    status = node.js("status")
    return bool(status["layout_version"] == 1 and status["health"]["status"] == "healthy")


def _sees_bucket(target: Target, index: int) -> bool:
    reply = call(target, "GET", "/", address=index)
    return reply.status == 200 and f"<Name>{target.bucket}</Name>".encode() in reply.body


def _retrying(step: Callable[[], T]) -> T:
    """Runs a CLI step again if it fails at first: right after a layout change, a quorum
    may still include a node that has not applied it (a transient error)."""
    for _ in range(RETRIES - 1):
        try:
            return step()
        except ServerError as exc:
            logger.warning("retrying after a transient error: %s", exc)
            time.sleep(RETRY_S)  # noqa: TID251  # synchronous driver waiting for other processes
    return step()


def _ensure_bucket(node: ClusterNode) -> None:
    """Creates the bucket, unless a first attempt that failed did create it."""
    try:
        node.cli("bucket", "info", BUCKET)
    except ServerError:
        node.cli("bucket", "create", BUCKET)


def _form(nodes: list[ClusterNode], procs: list[subprocess.Popen[bytes]]) -> Target:
    first = nodes[0]

    def listening() -> bool:
        for proc in procs:
            if proc.poll() is not None:
                raise ServerError(f"a node exited with {proc.returncode}")
        return all(_all_up(n, len(nodes)) for n in nodes)

    wait_for(listening, "every node sees every node up", FORM_TIMEOUT_S)
    for i, node in enumerate(nodes, start=1):
        first.cli("layout", "assign", "-z", f"dc{i}", "-c", "1G", node.node_id[:16])
    first.cli("layout", "apply", "--version", "1")
    for node in nodes:
        wait_for(lambda n=node: _laid_out(n), f"{node.name} has layout 1", FORM_TIMEOUT_S)  # type: ignore[misc]  # the default binds the loop's node
    key = _retrying(lambda: first.js("key", "create", "bench"))
    _retrying(lambda: _ensure_bucket(first))
    _retrying(
        lambda: first.cli(
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", key["key_id"]
        )
    )
    creds = Creds(key["key_id"], key["secret_key"], REGION, BUCKET)
    addresses = tuple(("127.0.0.1", n.s3_port) for n in nodes)
    target = Target(addresses, creds, BUCKET)
    for i, node in enumerate(nodes):
        wait_for(lambda i=i: _sees_bucket(target, i), f"{node.name} lists the bucket")  # type: ignore[misc]  # as above
    return target


def start_cluster(
    runtime: str,
    tmp: Path,
    *,
    size: int = 3,
    rpc_ports: Sequence[int] | None = None,
    public_ports: Sequence[int] | None = None,
) -> tuple[Server, list[ClusterNode]]:
    """Starts ``size`` nodes on ``runtime`` in ``tmp``, forms the cluster and returns it.

    Args:
        runtime: ``trio`` or ``asyncio``.
        tmp: where the nodes' directories and logs go.
        size: how many nodes (one zone each).
        rpc_ports: the RPC port each node binds (default: free ones).
        public_ports: the RPC port each node announces (default: the one it binds).

    Raises:
        ServerError: a node did not start or the cluster did not form (the nodes are
            stopped then).
    """
    secret = secrets.token_hex(32)
    nodes = []
    for i in range(size):
        directory = tmp / f"cluster-{runtime}" / f"node{i + 1}"
        directory.mkdir(parents=True)
        node_id = NodeKey.load_or_create(directory / "meta").node_id.hex()
        rpc = rpc_ports[i] if rpc_ports is not None else free_port()
        public = public_ports[i] if public_ports is not None else rpc
        nodes.append(ClusterNode(f"node{i + 1}", directory, rpc, public, free_port(), node_id))
    for node in nodes:
        node.write_config(secret, [n.address for n in nodes if n is not node])
    procs: list[subprocess.Popen[bytes]] = []
    logs = [node.dir.parent / f"{node.name}.log" for node in nodes]
    placeholder = Target((), None, BUCKET)
    label = f"cluster {runtime}"
    try:
        for node, log in zip(nodes, logs, strict=True):
            with log.open("wb") as err:
                procs.append(
                    subprocess.Popen(
                        [str(GARAGE), "-c", str(node.config), "server"],
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                        env=node_env(runtime),
                        start_new_session=True,
                    )
                )
        target = _form(nodes, procs)
    except BaseException as exc:
        failed = Server(label, "cluster", runtime, placeholder, tuple(procs), tuple(logs))
        tails = failed.log_tail()  # before the caller removes the directory
        with contextlib.suppress(Exception):
            stop(failed)
        if isinstance(exc, ServerError):
            raise ServerError(f"{exc}\n{tails}") from None
        raise
    return Server(label, "cluster", runtime, target, tuple(procs), tuple(logs)), nodes
