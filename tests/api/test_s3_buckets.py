"""Bucket operations with boto3 against a running node; and the server's common behaviour
(authentication, errors, 501 for what is not implemented)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from tests.api.conftest import S3Node


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def test_create_list_head_delete(s3: Any) -> None:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert name in names
    assert "default" in names
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "garage"
    assert "Status" not in s3.get_bucket_versioning(Bucket=name)
    assert s3.get_bucket_acl(Bucket=name)["Grants"][0]["Permission"] == "FULL_CONTROL"
    s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert _code(exc) == ("404", 404)


def test_create_twice_is_ok_for_its_owner(s3: Any) -> None:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)  # the key owns it: 200, as Garage
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count(name) == 1


def test_location_constraint_must_be_the_region(s3: Any) -> None:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "garage"})
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(
            Bucket=f"{name}-2", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
        )
    assert _code(exc)[1] == 400
    assert f"{name}-2" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("name", ["ab", "UPPER", "with_underscore", "-dash", "a" * 64, "1.2.3.4"])
def test_invalid_bucket_names(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert _code(exc)[0] in {"InvalidBucketName", "InvalidRequest"}


def test_unknown_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_location(Bucket="no-such-bucket-here")
    assert _code(exc) == ("NoSuchBucket", 404)


def test_not_implemented_operations_answer_501(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert _code(exc) == ("NotImplemented", 501)
    assert "GetBucketPolicy" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    assert _code(exc) == ("NotImplemented", 501)


def test_forged_and_unknown_keys_are_refused(s3node: S3Node) -> None:
    s3node_bad = type(s3node)(**{**s3node.__dict__, "secret": "0" * 64})
    with pytest.raises(ClientError) as exc:
        s3node_bad.client().list_buckets()
    assert _code(exc) == ("SignatureDoesNotMatch", 403)
    unknown = type(s3node)(**{**s3node.__dict__, "key_id": "GK" + "0" * 24})
    with pytest.raises(ClientError) as exc:
        unknown.client().list_buckets()
    assert _code(exc) == ("InvalidAccessKeyId", 403)


def test_anonymous_requests_are_refused_with_an_xml_error(s3node: S3Node) -> None:
    r = httpx.get(f"{s3node.endpoint}/default")
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/xml"
    assert "<Code>AccessDenied</Code>" in r.text
    assert "<RequestId>" in r.text
    assert r.headers["x-amz-request-id"] in r.text
