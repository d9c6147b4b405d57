"""A running single node for the S3 tests: ``garage server --single-node`` as a real process.

One node per test session (starting one takes a second or two), on free ports of
127.0.0.1, in a temporary directory; it is stopped with SIGTERM at the end and must exit
cleanly. Tests get:

- ``s3node``: the node (endpoint, key id, secret, region, data dir);
- ``s3``: a boto3 client with the quick start's key (path-style addressing);
- ``bucket``: a fresh bucket for this test (created through S3, deleted afterwards when
  empty is not required: the node goes away with the session).
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

if TYPE_CHECKING:
    from collections.abc import Iterator

GARAGE = Path(sys.executable).parent / "garage"


@dataclass
class S3Node:
    """A running node and its quick-start key."""

    endpoint: str
    key_id: str
    secret: str
    region: str
    data_dir: Path
    proc: subprocess.Popen[str]

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this node (extra botocore ``Config`` options allowed)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
        )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_single_node(data_dir: Path) -> S3Node:
    """Starts ``garage server --single-node`` and waits for its summary.

    The RPC port is chosen here (a free one) rather than by the node, so that the garage
    CLI can reach the node from its configuration (``data_dir/garage.toml``).
    """
    proc = subprocess.Popen(
        [
            str(GARAGE), "server", "--single-node", "--data-dir", str(data_dir),
            "--s3-api-bind", "127.0.0.1:0", "--rpc-bind", f"127.0.0.1:{free_port()}",
            "--admin-bind", "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Stop it with"):
            break
    text = "".join(lines)

    def field(name: str) -> str:
        found = re.search(rf"{name}:\s+(\S+)", text)
        if found is None:
            proc.kill()
            status = proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]  # a pipe: checked above
            raise AssertionError(f"the node did not print its {name}: {text!r} (exit {status})")
        return found.group(1)

    return S3Node(
        field("S3 endpoint"),
        field("Key ID"),
        field("Secret key"),
        field("S3 region"),
        data_dir,
        proc,
    )


def stop(node: S3Node) -> int:
    """SIGTERM, then the exit status (a graceful stop exits 0)."""
    node.proc.send_signal(signal.SIGTERM)
    try:
        return node.proc.wait(timeout=30)
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
        if node.proc.stdout is not None:
            node.proc.stdout.close()


@pytest.fixture(scope="session")
def s3node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Node]:
    node = start_single_node(tmp_path_factory.mktemp("s3node"))
    try:
        yield node
    finally:
        assert stop(node) == 0


@pytest.fixture
def s3(s3node: S3Node) -> Any:
    return s3node.client()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name
