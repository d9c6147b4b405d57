"""A 3-node cluster with the K2V API on every node, for the K2V cluster tests.

tests/api/cluster.py's cluster (real ``garage server`` processes formed and laid out with
the CLI), with a ``[k2v_api]`` section added to each node's configuration on a free port
of 127.0.0.1; the nodes, the CLI steps and the graceful stop are cluster.py's own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.api.cluster import REGION, Cluster, Node, _form
from tests.garage.test_cli_admin import free_port
from tests.garage.test_cli_cluster import eventually, listening

from garage_api.k2v.client import K2VClient
from garage_rpc.net import NodeKey

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@dataclass
class K2VClusterNode(Node):
    """A cluster node that also serves the K2V API."""

    k2v_port: int = 0

    @property
    def k2v_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.k2v_port}"

    def write_config(self, secret: str, bootstrap: list[str]) -> None:
        super().write_config(secret, bootstrap)
        text = self.config.read_text()
        self.config.write_text(text + f'[k2v_api]\napi_bind_addr = "127.0.0.1:{self.k2v_port}"\n')

    def wait_listening(self) -> None:
        super().wait_listening()
        eventually(lambda: listening(self.k2v_port), f"{self.name} serves K2V")


@dataclass
class K2VCluster:
    """The cluster (its key allowed on its bucket), and a K2V client per node."""

    cluster: Cluster

    @property
    def nodes(self) -> list[K2VClusterNode]:
        return [n for n in self.cluster.nodes if isinstance(n, K2VClusterNode)]

    def client(self, i: int) -> K2VClient:
        """A K2V client of node ``i`` (0-based) with the cluster's key, on its bucket."""
        c = self.cluster
        return K2VClient(self.nodes[i].k2v_endpoint, c.key_id, c.secret, REGION, c.bucket)


def start_k2v_cluster(tmp: Path, *, size: int = 3) -> Iterator[K2VCluster]:
    """Starts ``size`` K2V nodes in ``tmp`` (as ``cluster.start_cluster`` does), yields the
    formed cluster, then stops every node; each must exit 0 (a graceful stop)."""
    rpc_secret = secrets.token_hex(32)
    nodes = [
        K2VClusterNode(f"node{i}", tmp / f"node{i}", free_port(), free_port(), k2v_port=free_port())
        for i in range(1, size + 1)
    ]
    for node in nodes:
        node.dir.mkdir(parents=True)
        node.node_id = NodeKey.load_or_create(node.dir / "meta").node_id.hex()
    for node in nodes:
        node.write_config(rpc_secret, [] if node is nodes[0] else [nodes[0].address])
    members: list[Node] = list(nodes)
    cluster = Cluster(members)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_listening()
        _form(cluster)
        yield K2VCluster(cluster)
    finally:
        codes = {node.name: node.stop() for node in nodes}
    assert all(code in (0, None) for code in codes.values()), f"unclean stops: {codes}"
