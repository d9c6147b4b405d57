"""``GARAGE_RUNTIME``: the node on asyncio as well as on trio (the code is written against anyio)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.api.conftest import start_single_node, stop

from garage.cli import EXIT_CONFIG


@pytest.mark.parametrize("runtime", ["trio", "asyncio"])
def test_the_node_serves_s3_on_each_runtime(
    runtime: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GARAGE_RUNTIME", runtime)
    node = start_single_node(tmp_path / "node")
    try:
        s3 = node.client()
        small, big = os.urandom(5000), os.urandom(3 << 20)  # a block; several blocks
        s3.put_object(Bucket="default", Key="small", Body=small)
        s3.put_object(Bucket="default", Key="big", Body=big)
        assert s3.get_object(Bucket="default", Key="small")["Body"].read() == small
        assert s3.get_object(Bucket="default", Key="big")["Body"].read() == big
        listed = s3.list_objects_v2(Bucket="default")["Contents"]
        assert [o["Key"] for o in listed] == ["big", "small"]
        s3.delete_object(Bucket="default", Key="small")
        assert s3.list_objects_v2(Bucket="default")["KeyCount"] == 1
    finally:
        assert stop(node) == 0  # a graceful stop on either runtime


def test_an_unknown_runtime_is_a_configuration_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GARAGE_")}
    env["GARAGE_RUNTIME"] = "curio"
    garage = Path(sys.executable).parent / "garage"
    out = subprocess.run(
        [str(garage), "server", "--single-node", "--data-dir", str(tmp_path / "node")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == EXIT_CONFIG
    assert "GARAGE_RUNTIME='curio'" in out.stderr
    assert "asyncio" in out.stderr
