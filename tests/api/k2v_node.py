"""A single ``garage server --single-node`` process with the K2V API on, for the K2V tests.

The quick start's configuration is written first (``garage.server.prepare_single_node``,
on free ports of 127.0.0.1), a ``[k2v_api]`` section is appended to it, and the node is
started as tests/api/conftest.py starts its S3 node (``start_single_node``: an existing
configuration is kept as it is). The quick start makes the key and the ``default`` bucket;
:func:`cli_json` runs ``garage -c <config> --json ...`` in this process for more keys.
"""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.api.conftest import S3Node, free_port, start_single_node, stop

from garage.cli import main
from garage.server import DEFAULT_BUCKET, prepare_single_node
from garage_api.k2v.client import K2VClient

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class K2VNode:
    """A running node, its K2V endpoint, and the quick start's key and bucket."""

    s3: S3Node
    endpoint: str
    bucket: str = DEFAULT_BUCKET

    @property
    def config(self) -> Path:
        return self.s3.data_dir / "garage.toml"

    def client(self, *, key: tuple[str, str] | None = None, bucket: str | None = None) -> K2VClient:
        """A K2V client of the quick start's key (or ``key``) on its bucket (or ``bucket``)."""
        key_id, secret = key if key is not None else (self.s3.key_id, self.s3.secret)
        return K2VClient(self.endpoint, key_id, secret, self.s3.region, bucket or self.bucket)


def cli_json(config: Path, *args: str) -> Any:
    """``garage -c <config> --json <args>`` through the CLI's entry point; its output.

    Runs the CLI's own event loop: call it from sync code (fixtures), not inside a test's.
    """
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GARAGE_")}
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["-c", str(config), "--json", *args])
    finally:
        os.environ.update(saved)
    assert code == 0, f"garage {' '.join(args)}: {err.getvalue()}"
    return json.loads(out.getvalue()) if out.getvalue().strip() else None


def start_k2v_node(data_dir: Path) -> K2VNode:
    """Starts a single node with ``[k2v_api]`` on a free port; stop it with :func:`stop_k2v_node`."""
    config = prepare_single_node(
        data_dir,
        s3_api_bind="127.0.0.1:0",
        rpc_bind=f"127.0.0.1:{free_port()}",
        admin_bind="127.0.0.1:0",
    )
    port = free_port()
    config.write_text(config.read_text() + f'\n[k2v_api]\napi_bind_addr = "127.0.0.1:{port}"\n')
    return K2VNode(start_single_node(data_dir), f"http://127.0.0.1:{port}")


def stop_k2v_node(node: K2VNode) -> int:
    """SIGTERM, then the exit status (a graceful stop exits 0)."""
    return stop(node.s3)
