"""Bucket quotas (``garage bucket set-quotas``): the pure rule, then against a running node
on PutObject, CompleteMultipartUpload, CopyObject and PostObject.

Each refusal checks Garage's answer (``403 AccessDenied`` naming the quota) and that the
bucket's contents did not change. The counters the node checks are eventually consistent,
so before each write that must be refused the test waits until ``garage bucket info``
shows the counts it expects.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import time
import uuid
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from garage.cli import main
from garage_api.s3._quotas import quota_refusal
from garage_api.signature import AWS4_HMAC_SHA256, Scope, format_amz_date, signing_key
from garage_model.bucket_table import BucketQuotas
from garage_model.s3 import (
    Complete,
    DeleteMarker,
    Inline,
    Object,
    ObjectVersion,
    ObjectVersionMeta,
    ObjectVersionMetaInner,
    Plaintext,
)
from garage_util.data import Uuid

if TYPE_CHECKING:
    from tests.api.conftest import S3Node

MiB = 1024 * 1024

# ---------------------------------------------------------------------- the pure rule

BUCKET = Uuid(bytes(32))


def _object(size: int | None) -> Object:
    """An object whose newest version holds ``size`` bytes (None: a delete marker)."""
    if size is None:
        state = Complete(DeleteMarker())
    else:
        meta = ObjectVersionMeta(size, "etag", Plaintext(ObjectVersionMetaInner()))
        state = Complete(Inline(meta, b""))
    return Object.new(BUCKET, "k", [ObjectVersion(Uuid(bytes(31) + b"\x01"), 1, state)])


_QUOTA = st.one_of(st.none(), st.integers(0, 50))
_PREVIOUS = st.one_of(st.none(), st.integers(0, 30).map(_object), st.just(_object(None)))


@given(
    max_size=_QUOTA,
    max_objects=_QUOTA,
    objects=st.integers(0, 60),
    size_bytes=st.integers(0, 60),
    previous=_PREVIOUS,
    new_size=st.integers(0, 40),
)
def test_a_write_is_refused_only_when_it_grows_a_counter_past_its_quota(
    max_size: int | None,
    max_objects: int | None,
    objects: int,
    size_bytes: int,
    previous: Object | None,
    new_size: int,
) -> None:
    quotas = BucketQuotas(max_size=max_size, max_objects=max_objects)
    counters = {"objects": objects, "bytes": size_bytes}
    refusal = quota_refusal(quotas, counters, previous, new_size)
    had = previous is not None and previous.counts()["objects"] == 1
    old_size = previous.counts()["bytes"] if previous is not None else 0
    objects_after, bytes_after = objects + (0 if had else 1), size_bytes - old_size + new_size
    too_many = max_objects is not None and not had and objects_after > max_objects
    too_big = max_size is not None and new_size > old_size and bytes_after > max_size
    assert (refusal is not None) is (too_many or too_big)
    if too_many:
        assert refusal == f"Object quota is reached, maximum objects for this bucket: {max_objects}"
    elif too_big:
        assert refusal is not None
        assert refusal.startswith("Bucket size quota is reached")
        assert f"this bucket: {max_size}." in refusal


def test_quota_examples() -> None:
    quotas = BucketQuotas(max_size=100, max_objects=2)
    assert quota_refusal(quotas, {}, None, 100) is None  # at the limit
    assert quota_refusal(quotas, {"objects": 2, "bytes": 10}, _object(5), 50) is None
    assert quota_refusal(quotas, {"objects": 2, "bytes": 10}, _object(None), 5) is not None
    # already over (the quota was lowered): shrinking or keeping a size is still allowed
    assert quota_refusal(quotas, {"objects": 2, "bytes": 500}, _object(80), 80) is None
    assert quota_refusal(quotas, {"objects": 2, "bytes": 500}, _object(80), 81) is not None
    assert quota_refusal(BucketQuotas(), {"objects": 10**9, "bytes": 10**18}, None, 1) is None
    assert quota_refusal(replace(quotas, max_size=None), {"bytes": 10**6}, None, 10**6) is None


# ---------------------------------------------------------------------- against a node


def _garage(node: S3Node, *args: str) -> Any:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["-c", str(node.data_dir / "garage.toml"), "--json", *args])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue()) if out.getvalue().strip() else None


@pytest.fixture
def qbucket(s3node: S3Node) -> str:
    """A bucket with a global name (so that the CLI can name it), writable by the key."""
    name = f"quota-{uuid.uuid4().hex[:8]}"
    _garage(s3node, "bucket", "create", name)
    _garage(s3node, "bucket", "allow", "--read", "--write", "--owner", "--key", s3node.key_id, name)
    return name


def _set_quotas(node: S3Node, bucket: str, *, size: str = "none", objects: str = "none") -> None:
    _garage(node, "bucket", "set-quotas", "--max-size", size, "--max-objects", objects, bucket)


def _wait_counted(node: S3Node, bucket: str, objects: int, size: int) -> None:
    """Waits until the bucket's counters show ``objects`` objects of ``size`` bytes."""
    seen: list[tuple[int, int]] = []

    def counted() -> bool:
        info = _garage(node, "bucket", "info", bucket)
        seen.append((info["objects"], info["bytes"]))
        return seen[-1] == (objects, size)

    async def poll() -> None:
        # The CLI runs an event loop of its own: each look runs in a worker thread.
        try:
            with anyio.fail_after(15):  # a guard against hangs, not a timing assertion
                # Polling on purpose: the counters are the node's, with no events.
                while not await anyio.to_thread.run_sync(counted):  # noqa: ASYNC110
                    await anyio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(
                f"the counters of {bucket} never showed {(objects, size)}: last {seen[-1:]}"
            ) from None

    anyio.run(poll)


def _contents(s3: Any, bucket: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def _refused(exc: pytest.ExceptionInfo[ClientError], quota: str) -> None:
    err = exc.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (
        "AccessDenied",
        403,
    )
    assert err["Error"]["Message"].startswith(quota)


OBJECT_QUOTA = "Object quota is reached"
SIZE_QUOTA = "Bucket size quota is reached"


def test_put_object_count(s3node: S3Node, s3: Any, qbucket: str) -> None:
    _set_quotas(s3node, qbucket, objects="2")
    s3.put_object(Bucket=qbucket, Key="a", Body=b"a")
    s3.put_object(Bucket=qbucket, Key="b", Body=b"b")  # at the limit
    _wait_counted(s3node, qbucket, 2, 2)
    before = _contents(s3, qbucket)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=qbucket, Key="c", Body=b"c")
    _refused(exc, OBJECT_QUOTA)
    assert _contents(s3, qbucket) == before
    s3.put_object(Bucket=qbucket, Key="a", Body=b"replaced")  # replacing adds no object
    s3.delete_object(Bucket=qbucket, Key="b")
    _wait_counted(s3node, qbucket, 1, len(b"replaced"))
    s3.put_object(Bucket=qbucket, Key="c", Body=b"c")
    assert _contents(s3, qbucket) == {"a": b"replaced", "c": b"c"}


@pytest.mark.parametrize("unit", [1, 5000], ids=["inline", "blocks"])
def test_put_object_size(s3node: S3Node, s3: Any, qbucket: str, unit: int) -> None:
    _set_quotas(s3node, qbucket, size=str(10 * unit))
    a, b = os.urandom(6 * unit), os.urandom(4 * unit)
    s3.put_object(Bucket=qbucket, Key="a", Body=a)
    _wait_counted(s3node, qbucket, 1, 6 * unit)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=qbucket, Key="b", Body=os.urandom(4 * unit + 1))
    _refused(exc, SIZE_QUOTA)
    assert _contents(s3, qbucket) == {"a": a}
    s3.put_object(Bucket=qbucket, Key="b", Body=b)  # exactly at the limit
    _wait_counted(s3node, qbucket, 2, 10 * unit)

    # replacing counts the difference: one byte more is refused, less is fine
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=qbucket, Key="a", Body=os.urandom(6 * unit + 1))
    _refused(exc, SIZE_QUOTA)
    assert _contents(s3, qbucket) == {"a": a, "b": b}
    smaller = os.urandom(5 * unit)
    s3.put_object(Bucket=qbucket, Key="a", Body=smaller)
    _wait_counted(s3node, qbucket, 2, 9 * unit)
    bigger = os.urandom(5 * unit)
    s3.put_object(Bucket=qbucket, Key="b", Body=bigger)  # 4 -> 5 units: 10 again
    assert _contents(s3, qbucket) == {"a": smaller, "b": bigger}


def test_complete_multipart_upload(s3node: S3Node, s3: Any, qbucket: str) -> None:
    small = os.urandom(MiB)
    s3.put_object(Bucket=qbucket, Key="small", Body=small)
    _wait_counted(s3node, qbucket, 1, MiB)
    _set_quotas(s3node, qbucket, size=str(7 * MiB - 1))
    upload = s3.create_multipart_upload(Bucket=qbucket, Key="mp")["UploadId"]
    parts_data = [os.urandom(5 * MiB), os.urandom(MiB)]
    parts = []
    for number, data in enumerate(parts_data, start=1):
        done = s3.upload_part(
            Bucket=qbucket, Key="mp", UploadId=upload, PartNumber=number, Body=data
        )
        parts.append({"PartNumber": number, "ETag": done["ETag"]})
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=qbucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
        )
    _refused(exc, SIZE_QUOTA)
    assert _contents(s3, qbucket) == {"small": small}
    # the upload is still in progress: the client may make room and complete it
    listed = s3.list_parts(Bucket=qbucket, Key="mp", UploadId=upload)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 2]

    _set_quotas(s3node, qbucket, size=str(7 * MiB))  # exactly what it needs
    s3.complete_multipart_upload(
        Bucket=qbucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert _contents(s3, qbucket) == {"small": small, "mp": b"".join(parts_data)}


def test_complete_multipart_upload_object_count(s3node: S3Node, s3: Any, qbucket: str) -> None:
    _set_quotas(s3node, qbucket, objects="1")
    s3.put_object(Bucket=qbucket, Key="only", Body=b"x")
    _wait_counted(s3node, qbucket, 1, 1)
    for key, allowed in [("other", False), ("only", True)]:  # replacing is allowed
        upload = s3.create_multipart_upload(Bucket=qbucket, Key=key)["UploadId"]
        etag = s3.upload_part(
            Bucket=qbucket, Key=key, UploadId=upload, PartNumber=1, Body=b"multipart"
        )["ETag"]
        parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
        if allowed:
            s3.complete_multipart_upload(
                Bucket=qbucket, Key=key, UploadId=upload, MultipartUpload=parts
            )
        else:
            with pytest.raises(ClientError) as exc:
                s3.complete_multipart_upload(
                    Bucket=qbucket, Key=key, UploadId=upload, MultipartUpload=parts
                )
            _refused(exc, OBJECT_QUOTA)
            s3.abort_multipart_upload(Bucket=qbucket, Key=key, UploadId=upload)
    assert _contents(s3, qbucket) == {"only": b"multipart"}


def test_copy_object(s3node: S3Node, s3: Any, qbucket: str) -> None:
    big, small = os.urandom(6000), os.urandom(3500)
    s3.put_object(Bucket=qbucket, Key="big", Body=big)
    s3.put_object(Bucket=qbucket, Key="small", Body=small)
    _wait_counted(s3node, qbucket, 2, 9500)
    _set_quotas(s3node, qbucket, size="11000", objects="2")

    with pytest.raises(ClientError) as exc:  # a third object
        s3.copy_object(Bucket=qbucket, Key="third", CopySource={"Bucket": qbucket, "Key": "small"})
    _refused(exc, OBJECT_QUOTA)
    with pytest.raises(ClientError) as exc:  # replaces 3500 bytes by 6000: 12000 bytes
        s3.copy_object(Bucket=qbucket, Key="small", CopySource={"Bucket": qbucket, "Key": "big"})
    _refused(exc, SIZE_QUOTA)
    assert _contents(s3, qbucket) == {"big": big, "small": small}

    s3.copy_object(Bucket=qbucket, Key="big", CopySource={"Bucket": qbucket, "Key": "small"})
    _wait_counted(s3node, qbucket, 2, 7000)
    s3.copy_object(  # a copy onto itself adds nothing
        Bucket=qbucket,
        Key="big",
        CopySource={"Bucket": qbucket, "Key": "big"},
        MetadataDirective="REPLACE",
        ContentType="text/plain",
    )
    assert _contents(s3, qbucket) == {"big": small, "small": small}


def _post_form(node: S3Node, key: str) -> dict[str, str]:
    now = int(time.time() * 1000)
    amz_date = format_amz_date(now)
    scope = Scope(amz_date[:8], node.region, "s3")
    fields = {
        "key": key,
        "x-amz-algorithm": AWS4_HMAC_SHA256,
        "x-amz-credential": f"{node.key_id}/{scope}",
        "x-amz-date": amz_date,
    }
    expiration = datetime.fromtimestamp(now / 1000 + 600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document = {"expiration": expiration, "conditions": [{k: v} for k, v in fields.items()]}
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    signing = signing_key(node.secret, scope.date, node.region, "s3")
    signature = hmac.new(signing, policy.encode(), hashlib.sha256).hexdigest()
    return {**fields, "policy": policy, "x-amz-signature": signature}


def test_post_object(s3node: S3Node, s3: Any, qbucket: str) -> None:
    _set_quotas(s3node, qbucket, size="100", objects="1")
    url = f"{s3node.endpoint}/{qbucket}"
    form = _post_form(s3node, "first")
    resp = httpx.post(url, data=form, files={"file": ("f.txt", b"x" * 100, "text/plain")})
    assert resp.status_code == 204, resp.text  # at both limits
    _wait_counted(s3node, qbucket, 1, 100)

    resp = httpx.post(
        url, data=_post_form(s3node, "second"), files={"file": ("f.txt", b"y", "text/plain")}
    )
    assert resp.status_code == 403
    assert "<Code>AccessDenied</Code>" in resp.text
    assert OBJECT_QUOTA in resp.text
    resp = httpx.post(url, data=form, files={"file": ("f.txt", b"z" * 101, "text/plain")})
    assert resp.status_code == 403
    assert SIZE_QUOTA in resp.text
    assert _contents(s3, qbucket) == {"first": b"x" * 100}

    resp = httpx.post(url, data=form, files={"file": ("f.txt", b"z" * 60, "text/plain")})
    assert resp.status_code == 204, resp.text
    assert _contents(s3, qbucket) == {"first": b"z" * 60}


def test_bucket_without_quotas_is_not_limited(s3node: S3Node, s3: Any, qbucket: str) -> None:
    _set_quotas(s3node, qbucket, size="10", objects="1")
    s3.put_object(Bucket=qbucket, Key="a", Body=b"0123456789")
    _wait_counted(s3node, qbucket, 1, 10)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=qbucket, Key="b", Body=b"")
    _refused(exc, OBJECT_QUOTA)
    _set_quotas(s3node, qbucket)  # both back to none
    s3.put_object(Bucket=qbucket, Key="b", Body=os.urandom(5000))
    s3.put_object(Bucket=qbucket, Key="c", Body=b"c")
    assert sorted(_contents(s3, qbucket)) == ["a", "b", "c"]
