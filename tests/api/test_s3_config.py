"""S3 options of the configuration, on a node of its own: virtual-hosted-style addressing
(``root_domain``) and ``s3_region = "*"`` (accept any region, for clients that hard-code
``us-east-1``)."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from tests.api.conftest import free_port, start_single_node, stop

from garage_api.signature import sign_request

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.api.conftest import S3Node

ROOT_DOMAIN = "s3.garage.localhost"


@pytest.fixture(scope="module")
def any_region_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Node]:
    data_dir: Path = tmp_path_factory.mktemp("vhost")
    (data_dir / "garage.toml").write_text(
        f"""metadata_dir = "meta"
data_dir = "data"
replication_factor = 1
rpc_secret = "{"ab" * 32}"
rpc_bind_addr = "127.0.0.1:{free_port()}"

[s3_api]
s3_region = "*"
api_bind_addr = "127.0.0.1:0"
root_domain = "{ROOT_DOMAIN}"
"""
    )
    (data_dir / "garage.toml").chmod(0o600)
    node = start_single_node(data_dir)  # keeps the configuration it finds
    try:
        yield node
    finally:
        assert stop(node) == 0


def _client(node: S3Node, region: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=node.endpoint,
        aws_access_key_id=node.key_id,
        aws_secret_access_key=node.secret,
        region_name=region,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3", "garage"])
def test_any_region_is_accepted(any_region_node: S3Node, region: str) -> None:
    client = _client(any_region_node, region)
    client.put_object(Bucket="default", Key=f"from-{region}", Body=region.encode())
    got = client.get_object(Bucket="default", Key=f"from-{region}")
    assert got["Body"].read() == region.encode()


def test_virtual_hosted_style(any_region_node: S3Node) -> None:
    node = any_region_node
    port = urlsplit(node.endpoint).port
    host = f"default.{ROOT_DOMAIN}:{port}"
    body = b"vhost body"

    def send(method: str, path: str, content: bytes = b"") -> httpx.Response:
        headers = sign_request(
            method, path, "", [("host", host)],
            key_id=node.key_id, secret=node.secret, region="us-east-1", service="s3",
            now_ms=int(time.time() * 1000), payload_hash=hashlib.sha256(content).hexdigest(),
        )  # fmt: skip
        return httpx.request(method, f"{node.endpoint}{path}", headers=headers, content=content)

    assert send("PUT", "/dir/v.txt", body).status_code == 200
    r = send("GET", "/dir/v.txt")
    assert r.status_code == 200
    assert r.content == body
    # the same object, path-style
    path_style = _client(node, "us-east-1")
    assert path_style.get_object(Bucket="default", Key="dir/v.txt")["Body"].read() == body
    listing = send("GET", "/")
    assert listing.status_code == 200
    assert "<Key>dir/v.txt</Key>" in listing.text  # ListObjects on the vhost bucket
