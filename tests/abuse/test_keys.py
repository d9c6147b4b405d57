"""Path-like, control and invalid keys: names, never paths.

Object keys never build a filesystem path (blocks are named by their hash), so a key such
as ``../../etc/passwd`` is stored and read back verbatim, a key over 1024 bytes is
``400 KeyTooLongError`` and a path that is not UTF-8 is ``400 InvalidRequest`` (fault-testing
§3.9; MinIO CVE-2023-28433, #6983). The module's finaliser walks the temporary tree around
the node: nothing new or changed outside its metadata and data directories, the canary
directory next to ``data_dir`` untouched, and every file in the data directory named by a
hash. tests/api/test_s3_bad_input.py checks a few odd keys through boto3; here the paths
also go raw on the wire (no client normalises ``..`` or ``%2e`` away).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import pytest
from tests.abuse.harness import (
    Node,
    error_code,
    exchange,
    http_status,
    request_bytes,
    signed,
    tree_snapshot,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Keys stored and read back verbatim through boto3 (it percent-encodes them).
VERBATIM_KEYS: Final = [
    "../../etc/passwd",
    "../../../../../../../../tmp/escaped",
    "a/../b",
    "./.",
    "..",
    "%2e%2e%2f",
    "%2e%2e%2fetc%2fpasswd",
    "..\\..\\windows\\system32",
    "back\\slash",
    "/leading/slash",
    "trailing/",
    "ctl\x01\x02\x1f\x7f",
    "tab\tnew\nline\rreturn",
    "ünïcødé/ключ/鍵/🙂",
    "k" * 1024,
    "é" * 512,  # 1024 bytes of UTF-8
]
#: Block files are named by the hex BLAKE2/SHA-256 of their content, maybe compressed.
_BLOCK_NAME: Final = re.compile(r"[0-9a-f]{64}(\.zst)?(\.tmp[0-9a-z]*)?")


@pytest.fixture(scope="module", autouse=True)
def _nothing_written_outside_the_node_dirs(node: Node) -> Iterator[None]:
    tmp = node.root.parent
    skip = [node.meta_dir, node.blocks_dir]
    before = tree_snapshot(tmp, skip=skip)
    yield
    after = tree_snapshot(tmp, skip=skip)
    assert sorted(after.keys() - before.keys()) == []
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}
    for path in node.blocks_dir.rglob("*"):
        if path.is_file() and path.name != "garage-marker":
            assert _BLOCK_NAME.fullmatch(path.name), path
            assert len(path.relative_to(node.blocks_dir).parts) <= 3, path


@pytest.mark.parametrize("key", VERBATIM_KEYS)
def test_odd_keys_round_trip_verbatim(s3: Any, bucket: str, key: str) -> None:
    body = f"value of {key!r}".encode() * 200  # over the inline limit: a real block
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_a_nul_byte_is_a_key_byte_or_refused(node: Node, s3: Any, bucket: str) -> None:
    key = "nul\x00byte/../x"
    path = f"/{bucket}/{quote(key, safe='/')}"
    raw = exchange(node, _put(node, path, b"with a nul"))
    if http_status(raw) == 200:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"with a nul"
        listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
        assert [o["Key"] for o in listed] == [key]
    else:
        assert http_status(raw) == 400, raw
        assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


@pytest.mark.parametrize(
    ("raw_key", "key"),
    [
        ("../../etc/passwd", "../../etc/passwd"),
        ("a/../b", "a/../b"),
        ("./x/./y", "./x/./y"),
        ("%2e%2e%2f%2e%2e%2fetc%2fpasswd", "../../etc/passwd"),
        ("%2E%2E/%2E%2E/x", "../../x"),
        ("..%5c..%5cwin", "..\\..\\win"),
        ("a%2F..%2F..%2Fb", "a/../../b"),
    ],
)
def test_raw_dot_segments_are_not_normalised(
    node: Node, s3: Any, bucket: str, raw_key: str, key: str
) -> None:
    """The path goes on the wire as written: the node neither resolves ``..`` nor lets a
    key leave its bucket."""
    body = b"raw path " + raw_key.encode()
    raw = exchange(node, _put(node, f"/{bucket}/{raw_key}", body))
    assert http_status(raw) == 200, raw
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    back = exchange(node, _get(node, f"/{bucket}/{raw_key}"))
    assert http_status(back) == 200
    assert back.endswith(body)


@pytest.mark.parametrize(
    "raw_key",
    [
        "%FF%FE",  # not UTF-8 at all
        "ok/%C0%AF",  # overlong "/"
        "%E0%80%AF",  # overlong "/" in three bytes
        "%ED%A0%80",  # a UTF-16 surrogate
        "trunc%E2%82",  # a truncated sequence
    ],
)
def test_invalid_utf8_keys_are_refused(node: Node, s3: Any, bucket: str, raw_key: str) -> None:
    raw = exchange(node, _put(node, f"/{bucket}/{raw_key}", b"never stored"))
    assert http_status(raw) == 400, raw
    assert error_code(raw) == "InvalidRequest"
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


@pytest.mark.parametrize("key", ["k" * 1025, "é" * 512 + "k", "🙂" * 257])
def test_keys_over_1024_bytes_are_refused(node: Node, s3: Any, bucket: str, key: str) -> None:
    raw = exchange(node, _put(node, f"/{bucket}/{quote(key)}", b"never stored"))
    assert http_status(raw) == 400, raw
    assert error_code(raw) == "KeyTooLongError"
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_a_key_cannot_reach_another_bucket(node: Node, s3: Any, bucket: str) -> None:
    """``/<bucket>/../canary/...`` names a key of ``<bucket>``, not a canary."""
    raw = exchange(node, _put(node, f"/{bucket}/../canary/canary/inline.bin", b"overwrite?"))
    assert http_status(raw) == 200, raw
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [
        "../canary/canary/inline.bin"
    ]
    # the canary itself is checked by the module's finaliser


def _put(node: Node, path: str, body: bytes) -> bytes:
    headers = signed(node, "PUT", path, headers=[("content-length", str(len(body)))], body=body)
    return request_bytes("PUT", path, [*headers, ("connection", "close")]) + body


def _get(node: Node, path: str) -> bytes:
    return request_bytes("GET", path, [*signed(node, "GET", path), ("connection", "close")])
