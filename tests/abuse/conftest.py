"""One live node for every abuse module, and the checks that it survived each attack.

The ``node`` fixture (session scope) starts ``garage server --single-node`` in a temporary
directory ``root/node``, next to a canary directory ``root/canary-dir`` whose files must
never change, and stores the canary objects (:meth:`tests.abuse.harness.Node.put_canaries`).
After every test the node must still run and answer; after every module the canaries are
read back byte for byte and the canary directory compared with its first snapshot (both
in fixture finalisers, so a module that breaks the node fails there even if its own
assertions passed). The node stops with SIGTERM at the end and must exit 0.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from tests.abuse.harness import Node, tree_snapshot
from tests.api.conftest import start_single_node, stop

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def anyio_backend() -> str:
    """The attackers' side runs on trio only: the node is another process either way."""
    return "trio"


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("abuse")
    canary_dir = root / "canary-dir"
    (canary_dir / "etc").mkdir(parents=True)
    (canary_dir / "etc" / "passwd").write_text("root:x:0:0:canary:/root:/bin/sh\n")
    (canary_dir / "keep.txt").write_bytes(b"never touched\n")
    target = Node.attach(start_single_node(root / "node"), root)
    try:
        target.put_canaries()
        yield target
    finally:
        assert stop(target.s3) == 0


@pytest.fixture(scope="module", autouse=True)
def _canaries_survive_the_module(node: Node) -> Iterator[None]:
    before = tree_snapshot(node.root / "canary-dir")
    yield
    node.check_canaries()
    assert tree_snapshot(node.root / "canary-dir") == before


@pytest.fixture(autouse=True)
def _node_survives_the_test(node: Node) -> Iterator[None]:
    yield
    node.check_alive()


@pytest.fixture
def s3(node: Node) -> Any:
    """A boto3 client with the node's quick-start key."""
    return node.client()


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket for one test."""
    name = f"abuse-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name
