"""Per-key permissions on buckets, with a second key made through the garage CLI, and the
bucket errors that need two keys (BucketAlreadyExists, AccessDenied) or contents
(BucketNotEmpty)."""

from __future__ import annotations

import io
import json
import uuid
from contextlib import redirect_stderr, redirect_stdout
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from garage.cli import main

if TYPE_CHECKING:
    from tests.api.conftest import S3Node


def _garage(node: S3Node, *args: str) -> Any:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["-c", str(node.data_dir / "garage.toml"), "--json", *args])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue()) if out.getvalue().strip() else None


def _find(doc: object, names: tuple[str, ...]) -> str:
    if isinstance(doc, dict):
        for name in names:
            if isinstance(doc.get(name), str):
                return str(doc[name])
        for value in doc.values():
            try:
                return _find(value, names)
            except LookupError:
                continue
    raise LookupError(names)


@pytest.fixture
def other(s3node: S3Node) -> Any:
    """A boto3 client with a second key, made with `garage key create`."""
    name = f"other-{uuid.uuid4().hex[:8]}"
    _garage(s3node, "key", "create", name)
    info = _garage(s3node, "key", "info", name, "--show-secret")
    key_id = _find(info, ("key_id", "access_key_id", "id"))
    secret = _find(info, ("secret_key", "secret"))
    node = type(s3node)(**{**s3node.__dict__, "key_id": key_id, "secret": secret})
    client = node.client()
    client.key_id = key_id  # for the tests' grants
    return client


@pytest.fixture
def shared(s3node: S3Node) -> str:
    """A bucket with a global name (made with the CLI), on which the quick-start key has
    every right. (Buckets made through S3 are local aliases: other keys do not see them.)"""
    name = f"shared-{uuid.uuid4().hex[:8]}"
    _garage(s3node, "bucket", "create", name)
    _garage(s3node, "bucket", "allow", "--read", "--write", "--owner", "--key", s3node.key_id, name)
    return name


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def test_a_key_sees_only_what_it_is_allowed(
    s3node: S3Node, s3: Any, shared: str, other: Any
) -> None:
    bucket = shared
    s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"mine")
    with pytest.raises(ClientError) as exc:
        other.get_object(Bucket=bucket, Key="secret.txt")
    assert _code(exc) == ("AccessDenied", 403)
    assert bucket not in [b["Name"] for b in other.list_buckets()["Buckets"]]

    _garage(s3node, "bucket", "allow", "--read", "--key", other.key_id, bucket)
    assert other.get_object(Bucket=bucket, Key="secret.txt")["Body"].read() == b"mine"
    with pytest.raises(ClientError) as exc:
        other.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        other.delete_bucket(Bucket=bucket)
    assert _code(exc) == ("AccessDenied", 403)  # owner needed

    _garage(s3node, "bucket", "deny", "--read", "--key", other.key_id, bucket)
    with pytest.raises(ClientError) as exc:
        other.get_object(Bucket=bucket, Key="secret.txt")
    assert _code(exc) == ("AccessDenied", 403)
    assert s3.get_object(Bucket=bucket, Key="secret.txt")["Body"].read() == b"mine"


def test_create_bucket_needs_the_right_and_global_names_are_shared(
    s3node: S3Node, s3: Any, bucket: str, shared: str, other: Any
) -> None:
    name = f"b-{uuid.uuid4().hex[:12]}"
    with pytest.raises(ClientError) as exc:
        other.create_bucket(Bucket=name)
    assert _code(exc)[1] == 403  # the new key may not create buckets
    _garage(s3node, "key", "allow", "--create-bucket", other.key_id)
    with pytest.raises(ClientError) as exc:
        other.create_bucket(Bucket=shared)  # a global name, of a bucket it may not write
    assert _code(exc) == ("BucketAlreadyExists", 409)
    other.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in other.list_buckets()["Buckets"]]
    # a name that is only a local alias of another key is free in this key's namespace
    other.create_bucket(Bucket=bucket)
    other.put_object(Bucket=bucket, Key="k", Body=b"theirs")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_delete_bucket_only_when_empty(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert _code(exc) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket=bucket, Key="a")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="pending")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert _code(exc) == ("BucketNotEmpty", 409)  # an unfinished upload counts
    s3.abort_multipart_upload(Bucket=bucket, Key="pending", UploadId=upload)
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=bucket)
    assert _code(exc)[1] == 404
