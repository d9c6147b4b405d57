"""``garage server`` as a real process: the single-node quick start used with awscli across a
restart, and a graceful stop that lets a request in flight finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from tests.api.conftest import start_single_node, stop

from garage_api.signature import sign_request

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.api.conftest import S3Node

pytestmark = pytest.mark.slow

AWS = Path(sys.executable).parent / "aws"


def _aws(node: S3Node, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": node.key_id,
        "AWS_SECRET_ACCESS_KEY": node.secret,
        "AWS_DEFAULT_REGION": node.region,
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
    }
    return subprocess.run(
        [str(AWS), "--endpoint-url", node.endpoint, *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_quick_start_with_awscli_survives_a_restart(tmp_path: Path) -> None:
    data = os.urandom(9 * 2**20 + 5)  # above awscli's multipart threshold (8 MiB)
    src, dst = tmp_path / "photo.bin", tmp_path / "back.bin"
    src.write_bytes(data)
    node = start_single_node(tmp_path / "node")
    try:
        up = _aws(node, tmp_path, "s3", "cp", str(src), "s3://default/photos/photo.bin")
        assert up.returncode == 0, up.stderr
        listed = _aws(node, tmp_path, "s3", "ls", "s3://default/photos/")
        assert "photo.bin" in listed.stdout
    finally:
        assert stop(node) == 0
    again = start_single_node(tmp_path / "node")
    try:
        assert again.key_id == node.key_id
        down = _aws(again, tmp_path, "s3", "cp", "s3://default/photos/photo.bin", str(dst))
        assert down.returncode == 0, down.stderr
        assert dst.read_bytes() == data
    finally:
        assert stop(again) == 0


def _slow_body(
    total: int, pause_after: int, paused: threading.Event, released: threading.Event
) -> Iterator[bytes]:
    """``total`` bytes, pausing after ``pause_after`` of them until ``released``."""
    sent = 0
    while sent < total:
        n = min(65536, total - sent)
        yield b"g" * n
        sent += n
        if sent >= pause_after and not released.is_set():
            paused.set()
            released.wait(30)


def _refuses_connections(endpoint: str) -> bool:
    """True once the server no longer accepts new connections (polls up to 30 s)."""
    stop_polling = threading.Event()
    for _ in range(600):
        try:
            httpx.get(endpoint, timeout=1)
        except httpx.TransportError:
            return True
        stop_polling.wait(0.05)
    return False


def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    node = start_single_node(tmp_path / "node")
    total = 4 * 2**20
    path = "/default/in-flight.bin"
    headers = sign_request(
        "PUT", path, "",
        [("host", node.endpoint.removeprefix("http://")), ("content-length", str(total))],
        key_id=node.key_id, secret=node.secret, region=node.region, service="s3",
        now_ms=int(time.time() * 1000), payload_hash="UNSIGNED-PAYLOAD",
    )  # fmt: skip
    paused, released = threading.Event(), threading.Event()
    result: dict[str, object] = {}

    def upload() -> None:
        try:
            r = httpx.put(
                node.endpoint + path,
                content=_slow_body(total, total // 2, paused, released),
                headers=dict(headers),
                timeout=60,
            )
            result["status"] = r.status_code
        except httpx.HTTPError as exc:
            result["error"] = exc

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        assert paused.wait(30), "the upload never started"
        node.proc.send_signal(signal.SIGTERM)
        assert _refuses_connections(node.endpoint), "new connections still accepted"
        released.set()  # the rest of the body: the request in flight must still succeed
        thread.join(60)
        assert result.get("status") == 200, result
        assert node.proc.wait(timeout=30) == 0
    finally:
        released.set()
        if node.proc.poll() is None:
            node.proc.kill()
        if node.proc.stdout is not None:
            node.proc.stdout.close()
    again = start_single_node(tmp_path / "node")
    try:
        got = again.client().get_object(Bucket="default", Key="in-flight.bin")["Body"].read()
        assert got == b"g" * total
    finally:
        assert stop(again) == 0
