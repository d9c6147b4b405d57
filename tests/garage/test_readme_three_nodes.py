"""The README's three-node quick start, run exactly as written, then used with boto3.

The shell block under "three-node quick start" runs in bash in a temporary directory. Its
``uv run <cmd>`` lines go through a ``uv`` shim that runs ``<cmd>`` from this environment
(what ``uv run`` does in a synced checkout), so the test needs neither uv nor a network.
The block uses fixed ports (3910-3931): the test is skipped if one is taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PORTS = [3910, 3911, 3920, 3921, 3930, 3931]


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"```sh\n(# three-node quick start\n.*?)```", text, re.DOTALL)
    assert found is not None, "the README lost its three-node quick start"
    return found.group(1)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _uv_shim(bin_dir: Path) -> None:
    bin_dir.mkdir()
    venv_bin = Path(sys.executable).parent
    shim = bin_dir / "uv"
    shim.write_text(
        '#!/bin/sh\n[ "$1" = run ] || { echo "shim: only uv run" >&2; exit 2; }\n'
        f'shift\ncmd=$1; shift\nexec "{venv_bin}/$cmd" "$@"\n'
    )
    shim.chmod(0o755)


def test_three_node_quick_start_works_as_written(tmp_path: Path) -> None:
    busy = [p for p in PORTS if not _port_free(p)]
    if busy:
        pytest.skip(f"ports {busy} are in use; the README's three-node example needs them")
    _uv_shim(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    env.pop("GARAGE_CONFIG_FILE", None)
    script = tmp_path / "quickstart.sh"
    script.write_text("set -e\n" + _readme_block())
    proc = subprocess.Popen(
        ["bash", str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the nodes are its background jobs: one killpg stops all
    )
    try:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
        here = tmp_path / "garage3"
        info = subprocess.run(
            [str(Path(sys.executable).parent / "garage"), "-c", "node1.toml", "--json",
             "key", "info", "demo-key", "--show-secret"],
            cwd=here, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        key = _find_key(json.loads(info.stdout))

        def client(port: int) -> Any:
            return boto3.client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{port}",
                aws_access_key_id=key[0],
                aws_secret_access_key=key[1],
                region_name="garage",
                config=Config(s3={"addressing_style": "path"}),
            )

        body = os.urandom(2 * 2**20 + 17)
        client(3910).put_object(Bucket="demo", Key="hello.bin", Body=body)
        assert client(3920).get_object(Bucket="demo", Key="hello.bin")["Body"].read() == body
        listed = client(3930).list_objects_v2(Bucket="demo")
        assert [o["Key"] for o in listed["Contents"]] == ["hello.bin"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _find_key(doc: object) -> tuple[str, str]:
    """The key id and secret in ``key info --json`` output, wherever they are nested."""
    if isinstance(doc, dict):
        ids = [v for k, v in doc.items() if k in ("key_id", "access_key_id", "id")]
        secrets = [v for k, v in doc.items() if k in ("secret_key", "secret")]
        if ids and secrets and isinstance(ids[0], str) and isinstance(secrets[0], str):
            return ids[0], secrets[0]
        for value in doc.values():
            try:
                return _find_key(value)
            except LookupError:
                continue
    if isinstance(doc, list):
        for value in doc:
            try:
                return _find_key(value)
            except LookupError:
                continue
    raise LookupError("no key id and secret in the key info output")
