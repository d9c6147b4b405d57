"""A running node with a website server, for the garage_web tests.

``garage -c <cfg> server --single-node`` as a real process, with a configuration written
here: small blocks (:data:`BLOCK_SIZE`), the S3 API, the website server (root domain
:data:`ROOT_DOMAIN`, metrics by host) and the admin API (no tokens: only ``/metrics`` and
the open endpoints answer), all on port 0 of 127.0.0.1: the S3 address comes from the
quick start's summary, the others from the node's log lines (``web on ...``). One node
per session; SIGTERM at the end, and it must exit 0. Global bucket names are made with the
CLI (S3 CreateBucket makes local aliases, which the website server never consults).

Tests get:

- ``webnode``: the node (:class:`WebNode`: S3 endpoint and key, web address);
- ``s3``: a boto3 client with the quick start's key;
- ``site``: a fresh bucket with website access on (``index.html``, ``error.html``);
- ``web``: an httpx client for the website server that never follows redirects.
"""

from __future__ import annotations

import io
import re
import secrets
import subprocess
import uuid
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from tests.api.conftest import GARAGE, S3Node, free_port, stop

from garage.cli import main

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The website root domain of the test node: ``<bucket>.web.test`` serves ``<bucket>``.
ROOT_DOMAIN = "web.test"
#: Small blocks, so that a streamed object of a few hundred KiB spans several of them.
BLOCK_SIZE = 64 * 1024


@dataclass
class WebNode:
    """A running node, its quick-start key and its website server."""

    s3: S3Node
    web_host: str
    web_port: int
    admin_url: str
    log: Path

    @property
    def config(self) -> Path:
        """The node's configuration file (for the CLI)."""
        return self.s3.data_dir / "garage.toml"

    @property
    def web_url(self) -> str:
        """The website server's base URL (by IP; set ``Host`` to pick a site)."""
        return f"http://{self.web_host}:{self.web_port}"

    def site_host(self, bucket: str, *, port: bool = False) -> str:
        """The ``Host`` of bucket ``bucket`` under the root domain (with the port if asked)."""
        host = f"{bucket}.{ROOT_DOMAIN}"
        return f"{host}:{self.web_port}" if port else host


def _config(tmp: Path) -> Path:
    path = tmp / "garage.toml"
    path.write_text(
        f"""metadata_dir = "{tmp / "meta"}"
data_dir = "{tmp / "data"}"
replication_factor = 1
block_size = {BLOCK_SIZE}
rpc_secret = "{secrets.token_hex(32)}"
rpc_bind_addr = "127.0.0.1:{free_port()}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:0"

[s3_web]
bind_addr = "127.0.0.1:0"
root_domain = ".{ROOT_DOMAIN}"
add_host_to_metrics = true

[admin]
api_bind_addr = "127.0.0.1:0"
"""
    )
    return path


def start_web_node(tmp: Path) -> WebNode:
    """Starts a single node with a website server in ``tmp`` and waits until it serves."""
    config = _config(tmp)
    log = tmp / "node.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [str(GARAGE), "-c", str(config), "server", "--single-node"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Stop it with"):
            break
    text = "".join(lines)
    fields = {
        name: re.search(rf"{name}:\s+(\S+)", text)
        for name in ("S3 endpoint", "Key ID", "Secret key", "S3 region")
    }
    logged = log.read_text()
    web = re.search(r"web on (127\.0\.0\.1):(\d+)", logged)
    admin = re.search(r"admin API on (127\.0\.0\.1:\d+)", logged)
    if web is None or admin is None or any(found is None for found in fields.values()):
        proc.kill()
        raise AssertionError(
            f"the node did not start: {text!r} {log.read_text()!r} (exit {proc.wait()})"
        )
    values = {name: found.group(1) for name, found in fields.items() if found is not None}
    node = S3Node(
        values["S3 endpoint"],
        values["Key ID"],
        values["Secret key"],
        values["S3 region"],
        tmp,
        proc,
    )
    return WebNode(node, web.group(1), int(web.group(2)), f"http://{admin.group(1)}", log)


@pytest.fixture(scope="session")
def webnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebNode]:
    node = start_web_node(tmp_path_factory.mktemp("webnode"))
    try:
        yield node
    finally:
        assert stop(node.s3) == 0


@pytest.fixture
def s3(webnode: WebNode) -> Any:
    return webnode.s3.client()


def garage_cli(node: WebNode, *args: str) -> str:
    """``garage -c <node config> <args>`` through the CLI's entry point, in this process;
    its stdout (the command must succeed)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["-c", str(node.config), *args])
    assert code == 0, f"garage {' '.join(args)}: {err.getvalue()}"
    return out.getvalue()


def global_bucket(node: WebNode, name: str | None = None) -> str:
    """A fresh bucket with a global name (S3 CreateBucket only makes local aliases), on
    which the quick-start key has every permission."""
    name = name or f"site-{uuid.uuid4().hex[:12]}"
    garage_cli(node, "bucket", "create", name)
    key = node.s3.key_id
    garage_cli(node, "bucket", "allow", name, "--key", key, "--read", "--write", "--owner")
    return name


def make_site(node: WebNode, s3: Any, *, error_document: bool = True) -> str:
    """A fresh global bucket with website access on (set through S3 PutBucketWebsite)."""
    name = global_bucket(node)
    config: dict[str, Any] = {"IndexDocument": {"Suffix": "index.html"}}
    if error_document:
        config["ErrorDocument"] = {"Key": "error.html"}
    s3.put_bucket_website(Bucket=name, WebsiteConfiguration=config)
    return name


@pytest.fixture
def site(webnode: WebNode, s3: Any) -> str:
    return make_site(webnode, s3)


@pytest.fixture
def web(webnode: WebNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=webnode.web_url, follow_redirects=False, timeout=30) as client:
        yield client
