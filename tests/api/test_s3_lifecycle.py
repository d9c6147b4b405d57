"""Bucket lifecycle configuration and the lifecycle worker, against real node processes.

The configuration round trips through boto3; malformed or unsupported documents are sent
raw (signed here) and must be refused without changing what is stored. The worker runs
in a node of its own, restarted with its lifecycle clock moved two days ahead
(``GARAGE_TEST_LIFECYCLE_CLOCK_OFFSET_MS``): objects keep their real timestamps, so the
rules see them two days old.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import time
import uuid
from contextlib import redirect_stderr, redirect_stdout
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError
from tests.api.conftest import S3Node, start_single_node, stop

from garage.cli import main
from garage_api.signature import sign_request
from garage_model.lifecycle import CLOCK_OFFSET_ENV

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TWO_DAYS_MS = 2 * 24 * 3600 * 1000


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _rules(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return list(s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])


# ---------------------------------------------------------------------- configuration


def test_no_configuration_is_404(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert _code(exc) == ("NoSuchLifecycleConfiguration", 404)
    # Deleting what is not there is fine (S3 answers 204 too).
    s3.delete_bucket_lifecycle(Bucket=bucket)


def test_rules_round_trip(s3: Any, bucket: str) -> None:
    rules = [
        {
            "ID": "logs",
            "Status": "Enabled",
            "Filter": {
                "And": {
                    "Prefix": "logs/",
                    "ObjectSizeGreaterThan": 10,
                    "ObjectSizeLessThan": 1000000,
                }
            },
            "Expiration": {"Days": 30},
        },
        {
            "ID": "tmp",
            "Status": "Disabled",
            "Filter": {"Prefix": "tmp/"},
            "Expiration": {"Date": dt.datetime(2030, 1, 31, tzinfo=dt.UTC)},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
        },
        {
            "ID": "big",
            "Status": "Enabled",
            "Filter": {"ObjectSizeGreaterThan": 5000},
            "Expiration": {"Days": 1},
        },
        {
            "ID": "uploads",
            "Status": "Enabled",
            "Filter": {},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        },
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    assert _rules(s3, bucket) == rules
    # A new configuration replaces the whole old one.
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": rules[2:]}
    )
    assert _rules(s3, bucket) == rules[2:]
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert _code(exc) == ("NoSuchLifecycleConfiguration", 404)


def test_the_deprecated_rule_prefix_becomes_a_filter(s3: Any, bucket: str) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [{"Prefix": "old/", "Status": "Enabled", "Expiration": {"Days": 3}}]
        },
    )
    assert _rules(s3, bucket) == [
        {"Filter": {"Prefix": "old/"}, "Status": "Enabled", "Expiration": {"Days": 3}}
    ]


def test_a_rule_without_a_filter_applies_to_every_object(s3: Any, bucket: str) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [{"Status": "Enabled", "Expiration": {"Days": 3}}]},
    )
    assert _rules(s3, bucket) == [{"Filter": {}, "Status": "Enabled", "Expiration": {"Days": 3}}]


# ---------------------------------------------------------------------- refused documents


def _send(node: S3Node, method: str, path: str, query: str, body: bytes) -> httpx.Response:
    host = urlsplit(node.endpoint).netloc
    headers = sign_request(
        method, path, query, [("host", host)],
        key_id=node.key_id, secret=node.secret, region=node.region, service="s3",
        now_ms=int(time.time() * 1000), payload_hash=hashlib.sha256(body).hexdigest(),
    )  # fmt: skip
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    url = f"{node.endpoint}{path}?{query}"
    return httpx.request(
        method, url, headers=[*headers, ("content-md5", md5)], content=body, timeout=30
    )


def _error_code(r: httpx.Response) -> str:
    start = r.text.index("<Code>") + len("<Code>")
    return r.text[start : r.text.index("</Code>")]


def _doc(*rules: str) -> bytes:
    inner = "".join(f"<Rule>{r}</Rule>" for r in rules)
    return (
        '<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"{inner}</LifecycleConfiguration>"
    ).encode()


EXPIRE = "<Expiration><Days>3</Days></Expiration>"
ON = "<Status>Enabled</Status>"

REFUSED = [
    pytest.param(b"<LifecycleConfiguration/>", "MalformedXML", 400, id="no rule"),
    pytest.param(b"<Lifecycle><Rule/></Lifecycle>", "MalformedXML", 400, id="wrong root"),
    pytest.param(b"<LifecycleConfiguration><Rule>", "MalformedXML", 400, id="not xml"),
    pytest.param(_doc(EXPIRE), "MalformedXML", 400, id="no status"),
    pytest.param(_doc("<Status>On</Status>" + EXPIRE), "MalformedXML", 400, id="bad status"),
    pytest.param(_doc(ON), "InvalidRequest", 400, id="no action"),
    pytest.param(
        _doc(ON + "<Expiration></Expiration>"), "MalformedXML", 400, id="empty expiration"
    ),
    pytest.param(
        _doc(ON + "<Expiration><Days>3</Days><Date>2030-01-01</Date></Expiration>"),
        "MalformedXML",
        400,
        id="days and date",
    ),
    pytest.param(
        _doc(ON + "<Expiration><Days>0</Days></Expiration>"), "InvalidArgument", 400, id="0 days"
    ),
    pytest.param(
        _doc(ON + "<Expiration><Days>x</Days></Expiration>"), "MalformedXML", 400, id="bad days"
    ),
    pytest.param(
        _doc(ON + "<Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration>"),
        "InvalidArgument",
        400,
        id="not midnight",
    ),
    pytest.param(
        _doc(ON + "<Expiration><Date>2030-02-30</Date></Expiration>"),
        "InvalidArgument",
        400,
        id="no such date",
    ),
    pytest.param(
        _doc(
            ON + "<AbortIncompleteMultipartUpload><DaysAfterInitiation>-1"
            "</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
        ),
        "InvalidArgument",
        400,
        id="negative abort days",
    ),
    pytest.param(
        _doc(
            ON + EXPIRE + "<Filter><Prefix>a</Prefix><ObjectSizeLessThan>5</ObjectSizeLessThan>"
            "</Filter>"
        ),
        "MalformedXML",
        400,
        id="two conditions without And",
    ),
    pytest.param(
        _doc(ON + EXPIRE + "<Filter><Prefix>a</Prefix><And><Prefix>b</Prefix></And></Filter>"),
        "MalformedXML",
        400,
        id="And beside a condition",
    ),
    pytest.param(
        _doc(ON + EXPIRE + "<Filter><And><And><Prefix>b</Prefix></And></And></Filter>"),
        "MalformedXML",
        400,
        id="nested And",
    ),
    pytest.param(
        _doc(ON + EXPIRE + "<Filter><Prefix>a</Prefix></Filter><Prefix>b</Prefix>"),
        "MalformedXML",
        400,
        id="Filter and legacy Prefix",
    ),
    pytest.param(
        _doc(
            ON + EXPIRE + "<Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan>"
            "<ObjectSizeLessThan>10</ObjectSizeLessThan></And></Filter>"
        ),
        "InvalidArgument",
        400,
        id="empty size range",
    ),
    pytest.param(
        _doc("<ID>a</ID>" + ON + EXPIRE, "<ID>a</ID>" + ON + EXPIRE),
        "InvalidArgument",
        400,
        id="repeated ID",
    ),
    pytest.param(
        _doc("<ID>" + "x" * 256 + "</ID>" + ON + EXPIRE), "InvalidArgument", 400, id="long ID"
    ),
    pytest.param(
        _doc(ON + "<Transition><Days>3</Days><StorageClass>GLACIER</StorageClass></Transition>"),
        "NotImplemented",
        501,
        id="transition",
    ),
    pytest.param(
        _doc(
            ON + EXPIRE + "<NoncurrentVersionExpiration><NoncurrentDays>3</NoncurrentDays>"
            "</NoncurrentVersionExpiration>"
        ),
        "NotImplemented",
        501,
        id="noncurrent versions",
    ),
    pytest.param(
        _doc(
            ON + "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker>"
            "</Expiration>"
        ),
        "NotImplemented",
        501,
        id="expired delete markers",
    ),
    pytest.param(
        _doc(ON + EXPIRE + "<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>"),
        "NotImplemented",
        501,
        id="tag filter",
    ),
    pytest.param(
        _doc(
            ON + EXPIRE + "<Filter><And><Prefix>p</Prefix><Tag><Key>k</Key><Value>v</Value>"
            "</Tag></And></Filter>"
        ),
        "NotImplemented",
        501,
        id="tag in And",
    ),
    pytest.param(_doc(*[ON + EXPIRE] * 1001), "InvalidArgument", 400, id="too many rules"),
]


@pytest.mark.parametrize(("body", "code", "status"), REFUSED)
def test_refused_documents_change_nothing(
    s3node: S3Node, s3: Any, bucket: str, body: bytes, code: str, status: int
) -> None:
    kept = [
        {"ID": "kept", "Filter": {"Prefix": "k/"}, "Status": "Enabled", "Expiration": {"Days": 9}}
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": kept})
    r = _send(s3node, "PUT", f"/{bucket}", "lifecycle=", body)
    assert (r.status_code, _error_code(r)) == (status, code), r.text
    assert _rules(s3, bucket) == kept


def test_a_raw_document_with_every_accepted_form(s3node: S3Node, s3: Any, bucket: str) -> None:
    body = _doc(
        "<ID>a</ID>" + ON + "<Filter><Prefix></Prefix></Filter>"
        "<Expiration><Date>2030-01-31T00:00:00.000Z</Date></Expiration>",
        "<ID>b</ID><Status>Disabled</Status><Prefix>legacy/</Prefix>"
        "<Expiration><Date>2030-02-01</Date></Expiration>",
        "<ID>c</ID>" + ON + "<Filter><And><Prefix>p/</Prefix></And></Filter>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload><UnknownNewField>ignored</UnknownNewField>",
    )
    r = _send(s3node, "PUT", f"/{bucket}", "lifecycle=", body)
    assert r.status_code == 200, r.text
    assert _rules(s3, bucket) == [
        {
            "ID": "a",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "Expiration": {"Date": dt.datetime(2030, 1, 31, tzinfo=dt.UTC)},
        },
        {
            "ID": "b",
            "Filter": {"Prefix": "legacy/"},
            "Status": "Disabled",
            "Expiration": {"Date": dt.datetime(2030, 2, 1, tzinfo=dt.UTC)},
        },
        {
            "ID": "c",
            "Filter": {"Prefix": "p/"},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
    ]


# ---------------------------------------------------------------------- the worker


def _garage(node: S3Node, *args: str) -> Any:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["-c", str(node.data_dir / "garage.toml"), "--json", *args])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue()) if out.getvalue().strip() else None


def _last_completed(node: S3Node) -> str:
    answer = _garage(node, "worker", "get", "lifecycle-last-completed")
    return str(answer["vars"][0]["value"])


def _lifecycle_status(node: S3Node) -> list[str]:
    workers = _garage(node, "worker", "list")["workers"]
    found = [w for w in workers if w["name"] == "Object lifecycle worker"]
    assert len(found) == 1, workers
    return list(found[0]["freeform"])


def _eventually(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    """Polls the node's state (no event tells the test when a queued insert landed)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.1)  # noqa: TID251 - a sync test waiting for another process


def _days_ahead(days: int) -> set[str]:
    """The UTC date ``days`` from now, as two candidates if midnight is near."""
    now = dt.datetime.now(dt.UTC)
    return {(now + dt.timedelta(days=days, minutes=m)).date().isoformat() for m in (-1, 1)}


def _exists(s3: Any, bucket: str, key: str) -> bool:
    found = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
    return key in [o["Key"] for o in found]


def _uploads(s3: Any, bucket: str) -> list[tuple[str, str]]:
    found = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [(u["Key"], u["UploadId"]) for u in found]


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    return tmp_path / "lifecycle-node"


def _restart(
    node: S3Node | None, node_dir: Path, monkeypatch: pytest.MonkeyPatch, offset_ms: int
) -> S3Node:
    if node is not None:
        assert stop(node) == 0
    if offset_ms:
        monkeypatch.setenv(CLOCK_OFFSET_ENV, str(offset_ms))  # inherited by the node process
    else:
        monkeypatch.delenv(CLOCK_OFFSET_ENV, raising=False)
    return start_single_node(node_dir)


def test_the_worker_applies_the_rules_once_a_day(
    node_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = _restart(None, node_dir, monkeypatch, 0)
    try:
        # The first pass ran when the node started (nothing to do yet): today is done.
        _eventually(lambda: _last_completed(node) in _days_ahead(0), "today's pass")
        s3 = node.client()
        bucket = f"lc-{uuid.uuid4().hex[:12]}"
        other = f"lc-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        s3.create_bucket(Bucket=other)
        objects = {
            "logs/small": b"x" * 10,  # prefix and size match: expires
            "logs/big": b"x" * 5000,  # too big for the size filter
            "keep/x": b"k",  # no rule
            "tmp/y": b"t",  # Days 3: not yet
            "docs/d": b"d",  # the rule is disabled
            "old/z": b"z",  # a Date in the past
        }
        for key, data in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=data)
        s3.put_object(Bucket=other, Key="logs/small", Body=b"x")  # no rules in that bucket
        upload = s3.create_multipart_upload(Bucket=bucket, Key="uploads/u")["UploadId"]
        s3.upload_part(Bucket=bucket, Key="uploads/u", UploadId=upload, PartNumber=1, Body=b"p")
        young = s3.create_multipart_upload(Bucket=bucket, Key="keep/u")["UploadId"]
        rules = [
            {
                "ID": "small logs",
                "Status": "Enabled",
                "Filter": {"And": {"Prefix": "logs/", "ObjectSizeLessThan": 1000}},
                "Expiration": {"Days": 1},
            },
            {"Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 3}},
            {"Status": "Disabled", "Filter": {"Prefix": "docs/"}, "Expiration": {"Days": 1}},
            {
                "Status": "Enabled",
                "Filter": {"Prefix": "old/"},
                "Expiration": {"Date": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)},
            },
            {
                "Status": "Enabled",
                "Filter": {"Prefix": "uploads/"},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            },
        ]
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": rules}
        )

        # Two days later (for the worker only): a new pass.
        node = _restart(node, node_dir, monkeypatch, TWO_DAYS_MS)
        s3 = node.client()
        _eventually(lambda: _last_completed(node) in _days_ahead(2), "the pass two days later")
        _eventually(lambda: not _exists(s3, bucket, "logs/small"), "logs/small expired")
        _eventually(lambda: not _exists(s3, bucket, "old/z"), "old/z expired")
        _eventually(lambda: _uploads(s3, bucket) == [("keep/u", young)], "uploads/u aborted")
        for key in ("logs/big", "keep/x", "tmp/y", "docs/d"):
            got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert got == objects[key], key
        assert s3.get_object(Bucket=other, Key="logs/small")["Body"].read() == b"x"
        with pytest.raises(ClientError) as exc:
            s3.list_parts(Bucket=bucket, Key="uploads/u", UploadId=upload)
        assert _code(exc) == ("NoSuchUpload", 404)
        status = _lifecycle_status(node)
        assert status[0].startswith("Last completed: ")
        assert "Objects expired: 2" in status
        assert "Multipart uploads aborted: 1" in status

        # Progress survives a restart: no second pass the same day, so a new object that
        # the rules would expire stays.
        s3.put_object(Bucket=bucket, Key="logs/new", Body=b"n")
        done = _last_completed(node)
        node = _restart(node, node_dir, monkeypatch, TWO_DAYS_MS)
        s3 = node.client()
        assert _last_completed(node) == done
        assert _lifecycle_status(node) == [f"Last completed: {done}"]  # no pass in this run
        assert s3.get_object(Bucket=bucket, Key="logs/new")["Body"].read() == b"n"
    finally:
        assert stop(node) == 0
