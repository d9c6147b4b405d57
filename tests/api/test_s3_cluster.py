"""S3 on a 3-node cluster: reads and writes through any node, and one node crashing.

Three ``garage server`` processes, replication factor 3, formed and laid out through the
CLI (tests/api/cluster.py); every test gets a boto3 client per node (A, B, C). With
quorums of 2 out of 3 for both writes and reads, whatever one node acknowledged is seen
at once through any other (read-after-write, no waiting), and with one node down the two
others still make both quorums. A crashed node restarted on its data serves what was
written while it was away (its reads go through the quorum, and blocks it lacks are
fetched from the others).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from tests.api.cluster import Cluster, start_cluster
from tests.garage.test_cli_cluster import eventually, listening

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

MIB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(Path(tmp_path_factory.mktemp("s3cluster")))


def _key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _get(client: Any, bucket: str, key: str) -> bytes:
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _error(call: Any, **kwargs: Any) -> tuple[str, int]:
    """The S3 error code and HTTP status of a call that must fail."""
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    return str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"])


def _listed(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for o in listing.get("Contents", [])}


@pytest.mark.parametrize("size", [100, 3 * MIB + 17], ids=["inline", "blocks"])
def test_put_through_one_node_reads_through_the_others_at_once(cluster: Cluster, size: int) -> None:
    a, b, c = cluster.clients
    bucket, key, body = cluster.bucket, _key("raw"), os.urandom(size)
    put = a.put_object(
        Bucket=bucket, Key=key, Body=body, ContentType="text/x-test", Metadata={"who": "a"}
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    for client in (b, c):
        got = client.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body
        assert got["ETag"] == put["ETag"]
        assert got["ContentType"] == "text/x-test"
        assert got["Metadata"] == {"who": "a"}
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == size
        assert head["ETag"] == put["ETag"]
        assert _listed(client, bucket, key) == {key: size}
        ranged = client.get_object(Bucket=bucket, Key=key, Range="bytes=10-59")
        assert ranged["Body"].read() == body[10:60]


def test_overwrite_through_another_node_wins_everywhere(cluster: Cluster) -> None:
    a, b, c = cluster.clients
    bucket, key = cluster.bucket, _key("overwrite")
    a.put_object(Bucket=bucket, Key=key, Body=b"first version")
    second = os.urandom(200_000)
    b.put_object(Bucket=bucket, Key=key, Body=second)
    for client in cluster.clients:
        assert _get(client, bucket, key) == second
    assert _listed(c, bucket, key) == {key: len(second)}


def test_multipart_upload_with_parts_through_different_nodes(cluster: Cluster) -> None:
    a, b, c = cluster.clients
    bucket, key = cluster.bucket, _key("multipart")
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB + 3), os.urandom(1234)]
    upload_id = a.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = []
    for number, (client, data) in enumerate(zip((b, c, a), parts, strict=True), start=1):
        done = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        assert done["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        etags.append(done["ETag"])

    listed = b.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (n, e, len(d)) for n, (e, d) in enumerate(zip(etags, parts, strict=True), start=1)
    ]
    uploads = c.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [(key, upload_id)]
    assert _error(c.head_object, Bucket=bucket, Key=key) == ("404", 404)  # not complete yet

    completed = c.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]
        },
    )
    md5s = b"".join(hashlib.md5(d).digest() for d in parts)
    assert completed["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"'
    whole = b"".join(parts)
    for client in cluster.clients:
        assert _get(client, bucket, key) == whole
        assert client.head_object(Bucket=bucket, Key=key)["ETag"] == completed["ETag"]
    assert a.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []) == []


def test_copy_through_one_node_of_an_object_written_through_another(cluster: Cluster) -> None:
    a, b, c = cluster.clients
    bucket, source, target = cluster.bucket, _key("copy-src"), _key("copy-dst")
    body = os.urandom(2 * MIB + 5)
    a.put_object(Bucket=bucket, Key=source, Body=body, Metadata={"origin": "node-a"})
    c.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": source})
    for client in cluster.clients:
        got = client.get_object(Bucket=bucket, Key=target)
        assert got["Body"].read() == body
        assert got["Metadata"] == {"origin": "node-a"}
    replaced = _key("copy-meta")
    b.copy_object(
        Bucket=bucket,
        Key=replaced,
        CopySource={"Bucket": bucket, "Key": target},
        MetadataDirective="REPLACE",
        Metadata={"origin": "copied-by-b"},
    )
    got = a.get_object(Bucket=bucket, Key=replaced)
    assert got["Body"].read() == body
    assert got["Metadata"] == {"origin": "copied-by-b"}
    assert _get(c, bucket, source) == body  # the source is untouched


def test_delete_through_one_node_is_gone_through_the_others(cluster: Cluster) -> None:
    a, b, c = cluster.clients
    bucket, key, kept = cluster.bucket, _key("delete"), _key("delete-kept")
    a.put_object(Bucket=bucket, Key=key, Body=os.urandom(50_000))
    a.put_object(Bucket=bucket, Key=kept, Body=b"stays")
    b.delete_object(Bucket=bucket, Key=key)
    for client in (a, c):
        assert _error(client.get_object, Bucket=bucket, Key=key) == ("NoSuchKey", 404)
        assert _error(client.head_object, Bucket=bucket, Key=key) == ("404", 404)
        assert _listed(client, bucket, key) == {}
        assert _get(client, bucket, kept) == b"stays"  # the neighbour is untouched


def test_the_cluster_counts_objects_the_same_on_every_node(cluster: Cluster) -> None:
    """Bucket counters are CRDT rows too: after traffic through all nodes they converge."""
    a, _, _ = cluster.clients
    keys = {o["Key"] for page in _pages(a, cluster.bucket) for o in page}

    def agree() -> bool:
        counts = [n.js("bucket", "info", cluster.bucket)["objects"] for n in cluster.nodes]
        return counts == [len(keys)] * len(counts)

    eventually(agree, "every node counts the bucket's objects")


def test_a_killed_node_leaves_a_working_quorum_and_catches_up_on_restart(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.clients
    bucket, run = cluster.bucket, _key("crash") + "/"
    before, doomed = f"{run}before", f"{run}deleted-while-down"
    before_body = os.urandom(300_000)
    a.put_object(Bucket=bucket, Key=before, Body=before_body)
    c.put_object(Bucket=bucket, Key=doomed, Body=b"short-lived")

    node_c = cluster.nodes[2]
    node_c.kill()
    try:
        assert not listening(node_c.s3_port)
        small, big, mpu = f"{run}small", f"{run}big", f"{run}multipart"
        small_body, big_body = b"written while C is down", os.urandom(3 * MIB + 1)
        a.put_object(Bucket=bucket, Key=small, Body=small_body)
        b.put_object(Bucket=bucket, Key=big, Body=big_body)
        b.delete_object(Bucket=bucket, Key=doomed)
        parts = [os.urandom(5 * MIB), b"tail"]
        upload_id = b.create_multipart_upload(Bucket=bucket, Key=mpu)["UploadId"]
        etags = [
            client.upload_part(Bucket=bucket, Key=mpu, UploadId=upload_id, PartNumber=n, Body=data)[
                "ETag"
            ]
            for n, (client, data) in enumerate(zip((a, b), parts, strict=True), start=1)
        ]
        a.complete_multipart_upload(
            Bucket=bucket,
            Key=mpu,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]
            },
        )
        expected = {
            before: before_body,
            small: small_body,
            big: big_body,
            mpu: b"".join(parts),
        }
        for client in (a, b):
            for key, body in expected.items():
                assert _get(client, bucket, key) == body
            assert _error(client.get_object, Bucket=bucket, Key=doomed) == ("NoSuchKey", 404)
        sizes = {k: len(v) for k, v in expected.items()}
        assert _listed(b, bucket, run) == sizes
    finally:
        node_c.start()
    node_c.wait_listening()
    cluster.wait_all_up()

    for key, body in expected.items():
        assert _get(c, bucket, key) == body
    assert _error(c.get_object, Bucket=bucket, Key=doomed) == ("NoSuchKey", 404)
    assert _listed(c, bucket, run) == sizes

    after, after_body = f"{run}after-restart", os.urandom(1 * MIB + 9)
    c.put_object(Bucket=bucket, Key=after, Body=after_body)
    for client in (a, b):
        assert _get(client, bucket, after) == after_body


def _pages(client: Any, bucket: str) -> Iterator[list[dict[str, Any]]]:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        yield page.get("Contents", [])
