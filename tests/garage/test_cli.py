"""The ``garage`` console script, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.api.conftest import start_single_node, stop

from garage.cli import EXIT_CONFIG


def _garage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    garage = Path(sys.executable).parent / "garage"
    return subprocess.run(
        [str(garage), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_version() -> None:
    out = _garage("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("garage ")


def test_single_node_quick_start_keeps_its_key_across_restarts(tmp_path: Path) -> None:
    first = start_single_node(tmp_path / "node")
    try:
        names = [b["Name"] for b in first.client().list_buckets()["Buckets"]]
        assert names == ["default"]
        assert (tmp_path / "node" / "garage.toml").stat().st_mode & 0o077 == 0  # secrets
    finally:
        assert stop(first) == 0
    again = start_single_node(tmp_path / "node")
    try:
        assert (again.key_id, again.secret) == (first.key_id, first.secret)
        assert [b["Name"] for b in again.client().list_buckets()["Buckets"]] == ["default"]
    finally:
        assert stop(again) == 0


def test_server_with_a_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "garage.toml"
    cfg.write_text('metadata_dir = "/m"\ndata_dir = "/d"\nreplication_factor = 0\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("GARAGE_")}
    out = _garage("-c", str(cfg), "server", env=env)
    assert out.returncode == EXIT_CONFIG
    assert "replication_factor" in out.stderr


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    out = _garage("-c", str(tmp_path / "nope.toml"), "server")
    assert out.returncode == EXIT_CONFIG
    assert "nope.toml" in out.stderr
