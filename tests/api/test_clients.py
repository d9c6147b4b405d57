"""Real S3 clients against a running node: awscli, rclone, s3cmd and the minio library.

Each test drives one client the way a user would (subprocesses with private config files
for the command-line tools; the minio library in-process) and checks what it transferred
byte for byte, on the way up through boto3 (sizes, ETags, listings) and on the way down
through files compared with what was sent. The 200 MiB multipart round trip through awscli
is marked slow. rclone is installed from Debian when missing; without root or a package
mirror its tests are skipped, saying why.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from minio import Minio
from minio.commonconfig import REPLACE, ComposeSource, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error as MinioS3Error
from tests.api.clients import (
    Aws,
    Rclone,
    S3cmd,
    find_or_install_rclone,
    tree_files,
    write_tree,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.api.conftest import S3Node

MiB = 1024 * 1024

#: A tree with nested directories, an empty file and names that need escaping.
TREE = {
    "top.txt": b"at the top\n",
    "a/one.txt": b"one\n" * 100,
    "a/b/two.bin": bytes(range(256)) * 40,
    "a/b/c/deep.txt": b"deep down\n",
    "d/empty": b"",
    "d/with space & plus+.txt": b"escaped names\n",
    "d/été ☃.txt": b"non-ascii names\n",
}


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _write_random(path: Path, size: int) -> None:
    """A file of ``size`` random bytes, written a MiB at a time."""
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(os.urandom(n))
            left -= n


def _keys(s3: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    """Every key under ``prefix`` (through boto3) with its size."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _get(s3: Any, bucket: str, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def _etag_parts(s3: Any, bucket: str, key: str) -> int:
    """The part count in a multipart ETag (``"<md5>-<n>"``), 0 for a single-part one."""
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    found = re.fullmatch(r"[0-9a-f]{32}-(\d+)", etag)
    return int(found.group(1)) if found else 0


def _new_bucket_name() -> str:
    return f"cli-{uuid.uuid4().hex[:16]}"


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def aws(s3node: S3Node, tmp_path: Path) -> Aws:
    return Aws.configure(s3node, tmp_path / "aws-home")


@pytest.fixture
def s3cmd(s3node: S3Node, tmp_path: Path) -> S3cmd:
    return S3cmd.configure(s3node, tmp_path / "s3cmd-home")


@pytest.fixture(scope="session")
def rclone_exe() -> str:
    exe, why = find_or_install_rclone()
    if exe is None:
        pytest.skip(f"rclone tests need rclone: {why}")
    return exe


@pytest.fixture
def rclone(rclone_exe: str, s3node: S3Node, tmp_path: Path) -> Rclone:
    return Rclone.configure(rclone_exe, s3node, tmp_path / "rclone-home")


@pytest.fixture
def minio(s3node: S3Node) -> Minio:
    host = s3node.endpoint.removeprefix("http://")
    return Minio(host, s3node.key_id, s3node.secret, secure=False, region=s3node.region)


# ---------------------------------------------------------------------- awscli: aws s3


def test_aws_mb_and_cp_small_and_multipart(aws: Aws, s3: Any, tmp_path: Path) -> None:
    name = _new_bucket_name()
    assert aws.s3("mb", f"s3://{name}") == [f"make_bucket: {name}"]
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    small = tmp_path / "small.txt"
    small.write_bytes(b"hello from awscli\n")
    big = tmp_path / "big.bin"
    _write_random(big, 20 * MiB)  # awscli goes multipart from 8 MiB, in 8 MiB parts
    aws.s3("cp", str(small), f"s3://{name}/small.txt")
    aws.s3("cp", str(big), f"s3://{name}/dir/big.bin")

    assert _keys(s3, name) == {"small.txt": small.stat().st_size, "dir/big.bin": 20 * MiB}
    assert _get(s3, name, "small.txt") == small.read_bytes()
    assert s3.head_object(Bucket=name, Key="small.txt")["ETag"] == f'"{_md5(small.read_bytes())}"'
    assert _etag_parts(s3, name, "dir/big.bin") == 3

    down = tmp_path / "down"
    aws.s3("cp", f"s3://{name}/small.txt", str(down / "small.txt"))
    aws.s3("cp", f"s3://{name}/dir/big.bin", str(down / "big.bin"))
    assert (down / "small.txt").read_bytes() == small.read_bytes()
    assert _sha256_file(down / "big.bin") == _sha256_file(big)


def test_aws_cp_and_mv_inside_the_node(aws: Aws, s3: Any, bucket: str, tmp_path: Path) -> None:
    big = os.urandom(20 * MiB)  # copied with UploadPartCopy, in 8 MiB ranges
    s3.put_object(Bucket=bucket, Key="src/big", Body=big)
    s3.put_object(
        Bucket=bucket, Key="src/small", Body=b"small", ContentType="text/x-small",
        Metadata={"colour": "blue"},
    )  # fmt: skip
    out = aws.s3("cp", f"s3://{bucket}/src/big", f"s3://{bucket}/copy/big")
    assert out == [f"copy: s3://{bucket}/src/big to s3://{bucket}/copy/big"]
    assert _get(s3, bucket, "copy/big") == big
    assert _etag_parts(s3, bucket, "copy/big") == 3

    aws.s3("cp", f"s3://{bucket}/src/small", f"s3://{bucket}/copy/small")
    head = s3.head_object(Bucket=bucket, Key="copy/small")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-small", {"colour": "blue"})
    assert _get(s3, bucket, "copy/small") == b"small"

    aws.s3("mv", f"s3://{bucket}/copy/small", f"s3://{bucket}/moved/small")
    assert _keys(s3, bucket) == {
        "src/big": 20 * MiB, "src/small": 5, "copy/big": 20 * MiB, "moved/small": 5,
    }  # fmt: skip
    assert _get(s3, bucket, "moved/small") == b"small"
    assert s3.head_object(Bucket=bucket, Key="moved/small")["Metadata"] == {"colour": "blue"}


def test_aws_sync_up_and_down_then_only_the_changed_file(
    aws: Aws, s3: Any, bucket: str, tmp_path: Path
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, TREE)

    def sync(source: str, dest: str) -> list[str]:
        """``aws s3 sync`` run from ``tmp_path`` (it prints paths relative to there)."""
        return aws.s3("sync", source, dest, cwd=tmp_path)

    up = sync("src", f"s3://{bucket}/tree")
    assert len(up) == len(TREE)
    assert _keys(s3, bucket) == {f"tree/{k}": len(v) for k, v in TREE.items()}
    for key, data in TREE.items():
        assert _get(s3, bucket, f"tree/{key}") == data

    sync(f"s3://{bucket}/tree", "dst")
    assert tree_files(dst) == TREE

    # Nothing changed: nothing to do.
    assert sync("src", f"s3://{bucket}/tree") == []

    before = {
        o["Key"]: (o["ETag"], o["LastModified"])
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
    }
    changed = b"one, changed and longer\n" * 7
    (src / "a/one.txt").write_bytes(changed)
    up = sync("src", f"s3://{bucket}/tree")
    assert up == [f"upload: src/a/one.txt to s3://{bucket}/tree/a/one.txt"]
    after = {
        o["Key"]: (o["ETag"], o["LastModified"])
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
    }
    assert after.keys() == before.keys()
    assert {k for k in after if after[k] != before[k]} == {"tree/a/one.txt"}
    assert after["tree/a/one.txt"][0] == f'"{_md5(changed)}"'

    down = sync(f"s3://{bucket}/tree", "dst")
    assert down == [f"download: s3://{bucket}/tree/a/one.txt to dst/a/one.txt"]
    assert tree_files(dst) == {**TREE, "a/one.txt": changed}


def test_aws_ls_recursive_and_prefixes(aws: Aws, s3: Any, bucket: str) -> None:
    for key, data in TREE.items():
        s3.put_object(Bucket=bucket, Key=f"t/{key}", Body=data)
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")

    def entries(*args: str) -> list[tuple[str, str]]:
        """(size or "PRE", name) of each line of ``aws s3 ls``."""
        out = []
        for line in aws.s3("ls", *args):
            if line.startswith("PRE "):
                out.append(("PRE", line.removeprefix("PRE ")))
            else:
                _date, _time, size, name = line.split(maxsplit=3)
                out.append((size, name))
        return out

    assert entries(f"s3://{bucket}") == [("PRE", "t/"), ("1", "other")]
    assert entries(f"s3://{bucket}/t/") == [
        ("PRE", "a/"),
        ("PRE", "d/"),
        (str(len(TREE["top.txt"])), "top.txt"),
    ]
    # A prefix that is not a whole "directory" name lists what starts with it.
    assert entries(f"s3://{bucket}/t/a") == [("PRE", "a/")]
    assert entries("--recursive", f"s3://{bucket}/t/a/") == [
        (str(len(TREE[k])), f"t/{k}") for k in sorted(TREE) if k.startswith("a/")
    ]


def test_aws_rm_recursive_removes_only_the_prefix(aws: Aws, s3: Any, bucket: str) -> None:
    for key, data in TREE.items():
        s3.put_object(Bucket=bucket, Key=f"gone/{key}", Body=data)
        s3.put_object(Bucket=bucket, Key=f"kept/{key}", Body=data)
    s3.put_object(Bucket=bucket, Key="gone-but-not-under-the-prefix", Body=b"stays")

    out = aws.s3("rm", "--recursive", f"s3://{bucket}/gone/")
    assert sorted(out) == sorted(f"delete: s3://{bucket}/gone/{k}" for k in TREE)
    assert _keys(s3, bucket) == {
        "gone-but-not-under-the-prefix": 5,
        **{f"kept/{k}": len(v) for k, v in TREE.items()},
    }
    assert _get(s3, bucket, "kept/a/b/two.bin") == TREE["a/b/two.bin"]

    # rb --force empties the bucket (a recursive rm of everything), then removes it.
    out = aws.s3("rb", "--force", f"s3://{bucket}")
    assert out[-1] == f"remove_bucket: {bucket}"
    assert sorted(out[:-1]) == sorted(
        [f"delete: s3://{bucket}/gone-but-not-under-the-prefix"]
        + [f"delete: s3://{bucket}/kept/{k}" for k in TREE]
    )
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_aws_presign_fetched_with_httpx(aws: Aws, s3: Any, bucket: str) -> None:
    data = os.urandom(10_000)
    s3.put_object(Bucket=bucket, Key="shared/file.bin", Body=data)
    (url,) = aws.s3("presign", f"s3://{bucket}/shared/file.bin", "--expires-in", "600")
    assert "X-Amz-Signature=" in url
    assert url.startswith(f"{aws.node.endpoint}/{bucket}/shared/file.bin?")

    with httpx.Client(trust_env=False) as http:
        got = http.get(url)
        assert got.status_code == 200
        assert got.content == data
        assert got.headers["etag"] == f'"{_md5(data)}"'

        # The signature covers the key and the expiry: changing either is refused.
        other = http.get(url.replace("/shared/file.bin?", "/shared/other.bin?"))
        assert other.status_code == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in other.text
        longer = http.get(url.replace("X-Amz-Expires=600", "X-Amz-Expires=6000"))
        assert longer.status_code == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in longer.text
    assert _get(s3, bucket, "shared/file.bin") == data


# ---------------------------------------------------------------------- awscli: aws s3api


def test_aws_s3api_put_head_get_list_delete(aws: Aws, s3: Any, bucket: str, tmp_path: Path) -> None:
    body = tmp_path / "body.txt"
    body.write_bytes(b"some text with metadata\n" * 50)
    data = body.read_bytes()
    put = aws.s3api(
        "put-object", "--bucket", bucket, "--key", "docs/readme.txt", "--body", str(body),
        "--content-type", "text/plain; charset=utf-8", "--cache-control", "max-age=60",
        "--metadata", "colour=blue,owner=tests",
    )  # fmt: skip
    assert put["ETag"] == f'"{_md5(data)}"'
    s3.put_object(Bucket=bucket, Key="docs/sub/x", Body=data)
    s3.put_object(Bucket=bucket, Key="root", Body=data)

    head = aws.s3api("head-object", "--bucket", bucket, "--key", "docs/readme.txt")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == f'"{_md5(data)}"'
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"colour": "blue", "owner": "tests"}

    out = tmp_path / "out.txt"
    got = aws.s3api("get-object", "--bucket", bucket, "--key", "docs/readme.txt", str(out))
    assert out.read_bytes() == data
    assert got["Metadata"] == {"colour": "blue", "owner": "tests"}
    ranged = tmp_path / "ranged.txt"
    got = aws.s3api(
        "get-object", "--bucket", bucket, "--key", "docs/readme.txt", "--range", "bytes=5-13",
        str(ranged),
    )  # fmt: skip
    assert ranged.read_bytes() == data[5:14]
    assert got["ContentRange"] == f"bytes 5-13/{len(data)}"

    listed = aws.s3api("list-objects-v2", "--bucket", bucket, "--delimiter", "/")
    assert [o["Key"] for o in listed["Contents"]] == ["root"]
    assert listed["CommonPrefixes"] == [{"Prefix": "docs/"}]
    # Pagination: the CLI follows continuation tokens on its own, 1 key per request.
    listed = aws.s3api(
        "list-objects-v2", "--bucket", bucket, "--prefix", "docs/", "--page-size", "1"
    )
    assert [(o["Key"], o["Size"]) for o in listed["Contents"]] == [
        ("docs/readme.txt", len(data)),
        ("docs/sub/x", len(data)),
    ]

    assert aws.s3api("delete-object", "--bucket", bucket, "--key", "docs/sub/x") is None
    assert _keys(s3, bucket) == {"docs/readme.txt": len(data), "root": len(data)}


def test_aws_s3api_errors_leave_objects_unchanged(
    aws: Aws, s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"original")
    body = tmp_path / "body"
    body.write_bytes(b"replacement")
    wrong_md5 = "1B2M2Y8AsgTpgAmY7PhCfg=="  # the MD5 of the empty string
    failed = aws.run(
        "s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", str(body),
        "--content-md5", wrong_md5, expect=None,
    )  # fmt: skip
    assert failed.returncode != 0
    assert "(BadDigest)" in failed.stderr
    assert _get(s3, bucket, "k") == b"original"

    missing = aws.run(
        "s3api", "get-object", "--bucket", bucket, "--key", "nope", str(tmp_path / "o"),
        expect=None,
    )  # fmt: skip
    assert missing.returncode != 0
    assert "(NoSuchKey)" in missing.stderr
    assert not (tmp_path / "o").exists()

    no_bucket = aws.run("s3", "ls", f"s3://{_new_bucket_name()}", expect=None)
    assert no_bucket.returncode != 0
    assert "(NoSuchBucket)" in no_bucket.stderr

    not_empty = aws.run("s3", "rb", f"s3://{bucket}", expect=None)
    assert not_empty.returncode != 0
    assert "(BucketNotEmpty)" in not_empty.stderr
    assert _get(s3, bucket, "k") == b"original"


def test_aws_s3api_multipart(aws: Aws, s3: Any, bucket: str, tmp_path: Path) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(1234)]
    created = aws.s3api(
        "create-multipart-upload", "--bucket", bucket, "--key", "mp/obj",
        "--content-type", "application/x-test",
    )  # fmt: skip
    upload_id = created["UploadId"]
    assert created["Key"] == "mp/obj"

    # Parts uploaded out of order; each answer is the part's MD5.
    etags: dict[int, str] = {}
    for number in (2, 1):
        path = tmp_path / f"part{number}"
        path.write_bytes(parts[number - 1])
        out = aws.s3api(
            "upload-part", "--bucket", bucket, "--key", "mp/obj", "--upload-id", upload_id,
            "--part-number", str(number), "--body", str(path),
        )  # fmt: skip
        assert out["ETag"] == f'"{_md5(parts[number - 1])}"'
        etags[number] = out["ETag"]

    uploads = aws.s3api("list-multipart-uploads", "--bucket", bucket)
    assert [(u["Key"], u["UploadId"]) for u in uploads["Uploads"]] == [("mp/obj", upload_id)]
    listed = aws.s3api(
        "list-parts", "--bucket", bucket, "--key", "mp/obj", "--upload-id", upload_id
    )
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == [
        (n, etags[n], len(parts[n - 1])) for n in (1, 2)
    ]
    assert "mp/obj" not in _keys(s3, bucket)

    layout = tmp_path / "parts.json"
    layout.write_text(json.dumps({"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2)]}))
    done = aws.s3api(
        "complete-multipart-upload", "--bucket", bucket, "--key", "mp/obj",
        "--upload-id", upload_id, "--multipart-upload", f"file://{layout}",
    )  # fmt: skip
    md5s = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
    assert done["ETag"] == f'"{_md5(md5s)}-2"'

    out = tmp_path / "whole"
    got = aws.s3api("get-object", "--bucket", bucket, "--key", "mp/obj", str(out))
    assert got["ContentType"] == "application/x-test"
    assert got["ContentLength"] == sum(map(len, parts))
    assert out.read_bytes() == b"".join(parts)

    # An aborted upload leaves nothing behind (and the completed one is no longer listed).
    other = aws.s3api("create-multipart-upload", "--bucket", bucket, "--key", "mp/aborted")
    s3.upload_part(
        Bucket=bucket, Key="mp/aborted", UploadId=other["UploadId"], PartNumber=1, Body=b"p"
    )
    aws.s3api(
        "abort-multipart-upload", "--bucket", bucket, "--key", "mp/aborted",
        "--upload-id", other["UploadId"],
    )  # fmt: skip
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert _keys(s3, bucket) == {"mp/obj": sum(map(len, parts))}


@pytest.mark.slow
def test_aws_200_mib_multipart_round_trip(aws: Aws, s3: Any, bucket: str, tmp_path: Path) -> None:
    size = 200 * MiB
    src = tmp_path / "huge.bin"
    _write_random(src, size)
    aws.s3("cp", str(src), f"s3://{bucket}/huge.bin")
    assert _keys(s3, bucket) == {"huge.bin": size}
    assert _etag_parts(s3, bucket, "huge.bin") == 25  # 8 MiB parts

    dst = tmp_path / "huge.out"
    aws.s3("cp", f"s3://{bucket}/huge.bin", str(dst))
    assert dst.stat().st_size == size
    assert _sha256_file(dst) == _sha256_file(src)


# ---------------------------------------------------------------------- rclone


def test_rclone_copy_sync_check_ls_delete(
    rclone: Rclone, s3: Any, bucket: str, tmp_path: Path
) -> None:
    remote = f"garage:{bucket}"
    src = tmp_path / "src"
    write_tree(src, TREE)
    single = tmp_path / "single.txt"
    single.write_bytes(b"copied by rclone\n")

    rclone.run("copy", str(single), f"{remote}/copied")
    assert _get(s3, bucket, "copied/single.txt") == single.read_bytes()

    rclone.run("sync", str(src), f"{remote}/tree")
    assert {k: _get(s3, bucket, f"tree/{k}") for k in TREE} == TREE
    checked = rclone.run("check", str(src), f"{remote}/tree")
    assert "0 differences found" in checked.stderr
    assert f"{len(TREE)} matching files" in checked.stderr

    assert sorted(rclone.lines("lsf", "-R", "--files-only", f"{remote}/tree")) == sorted(TREE)
    assert rclone.lines("lsf", f"{remote}") == ["copied/", "tree/"]
    sized = {}
    for line in rclone.lines("ls", remote):
        size, name = line.split(maxsplit=1)
        sized[name] = int(size)
    assert sized == {"copied/single.txt": 17, **{f"tree/{k}": len(v) for k, v in TREE.items()}}

    # Deleting one object is seen by check, and sync puts it back.
    rclone.run("deletefile", f"{remote}/tree/a/b/two.bin")
    assert "tree/a/b/two.bin" not in _keys(s3, bucket)
    differs = rclone.run("check", str(src), f"{remote}/tree", expect=1)
    assert "1 differences found" in differs.stderr
    (src / "top.txt").write_bytes(b"changed at the top\n")
    (src / "d/empty").unlink()
    rclone.run("sync", str(src), f"{remote}/tree")
    assert "0 differences found" in rclone.run("check", str(src), f"{remote}/tree").stderr
    assert _keys(s3, bucket, "tree/") == {f"tree/{k}": len(v) for k, v in tree_files(src).items()}

    dst = tmp_path / "dst"
    rclone.run("copy", f"{remote}/tree", str(dst))
    assert tree_files(dst) == tree_files(src)

    # A new modification time alone is stored by copying the object onto itself with new
    # metadata (CopyObject, metadata directive REPLACE); the content stays.
    os.utime(src / "a/one.txt", (1_500_000_000, 1_500_000_000))
    out = rclone.run("sync", "-v", str(src), f"{remote}/tree").stderr
    assert "a/one.txt: Updated modification time in destination" in out
    assert "Copied" not in out
    (line,) = rclone.lines("lsl", f"{remote}/tree/a/one.txt")
    assert "2017-07-14 02:40:00" in line
    assert _get(s3, bucket, "tree/a/one.txt") == TREE["a/one.txt"]

    # Server-side copy and move.
    rclone.run("copyto", f"{remote}/tree/a/one.txt", f"{remote}/copies/one.txt")
    rclone.run("moveto", f"{remote}/copies/one.txt", f"{remote}/moved/one.txt")
    assert _get(s3, bucket, "moved/one.txt") == TREE["a/one.txt"]
    assert "copies/one.txt" not in _keys(s3, bucket)
    rclone.run("deletefile", f"{remote}/moved/one.txt")

    rclone.run("delete", f"{remote}/tree")
    assert _keys(s3, bucket) == {"copied/single.txt": 17}


def test_rclone_multipart_file(rclone: Rclone, s3: Any, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "up" / "big.bin"
    src.parent.mkdir()
    _write_random(src, 12 * MiB + 3)
    rclone.run("copy", str(src.parent), f"garage:{bucket}/big")
    assert _keys(s3, bucket) == {"big/big.bin": 12 * MiB + 3}
    assert _etag_parts(s3, bucket, "big/big.bin") == 3  # 5 MiB chunks
    checked = rclone.run("check", str(src.parent), f"garage:{bucket}/big")
    assert "0 differences found" in checked.stderr

    rclone.run("copy", f"garage:{bucket}/big/big.bin", str(tmp_path / "down"))
    assert _sha256_file(tmp_path / "down" / "big.bin") == _sha256_file(src)
    assert (
        rclone.run("md5sum", f"garage:{bucket}/big").stdout.split()[0]
        == hashlib.md5(src.read_bytes(), usedforsecurity=False).hexdigest()
    )


# ---------------------------------------------------------------------- s3cmd


def test_s3cmd_mb_put_get_ls_la_del(s3cmd: S3cmd, s3: Any, tmp_path: Path) -> None:
    name = _new_bucket_name()
    s3cmd.run("mb", f"s3://{name}")
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    small = tmp_path / "small.txt"
    small.write_bytes(b"put by s3cmd\n")
    big = tmp_path / "big.bin"
    _write_random(big, 20 * MiB)  # s3cmd goes multipart from 15 MiB, in 15 MiB parts
    s3cmd.run("put", str(small), f"s3://{name}/dir/small.txt")
    s3cmd.run("put", str(big), f"s3://{name}/big.bin")
    assert _keys(s3, name) == {"dir/small.txt": small.stat().st_size, "big.bin": 20 * MiB}
    assert _get(s3, name, "dir/small.txt") == small.read_bytes()
    assert _etag_parts(s3, name, "big.bin") == 2

    s3cmd.run("get", f"s3://{name}/dir/small.txt", str(tmp_path / "small.out"))
    s3cmd.run("get", f"s3://{name}/big.bin", str(tmp_path / "big.out"))
    assert (tmp_path / "small.out").read_bytes() == small.read_bytes()
    assert _sha256_file(tmp_path / "big.out") == _sha256_file(big)

    listing = s3cmd.lines("ls", f"s3://{name}")
    assert listing[0].split() == ["DIR", f"s3://{name}/dir/"]
    assert listing[1].split()[2:] == [str(20 * MiB), f"s3://{name}/big.bin"]
    assert len(listing) == 2
    recursive = [line.split()[2:] for line in s3cmd.lines("ls", "-r", f"s3://{name}")]
    assert recursive == [
        [str(20 * MiB), f"s3://{name}/big.bin"],
        [str(small.stat().st_size), f"s3://{name}/dir/small.txt"],
    ]
    everything = s3cmd.lines("la")
    assert any(line.endswith(f"s3://{name}/big.bin") for line in everything)
    assert any(line.endswith(f"s3://{name}/dir/") for line in everything)

    # Copies inside the node; ``modify`` rewrites an object's headers by copying it onto
    # itself (CopyObject with the REPLACE directive).
    s3cmd.run("cp", f"s3://{name}/dir/small.txt", f"s3://{name}/copy.txt")
    s3cmd.run("mv", f"s3://{name}/copy.txt", f"s3://{name}/moved.txt")
    s3cmd.run("modify", "--add-header=x-amz-meta-colour:blue", f"s3://{name}/moved.txt")
    info = s3cmd.run("info", f"s3://{name}/moved.txt").stdout
    assert "x-amz-meta-colour: blue" in info
    assert _get(s3, name, "moved.txt") == small.read_bytes()
    assert s3.head_object(Bucket=name, Key="moved.txt")["Metadata"]["colour"] == "blue"
    (du,) = s3cmd.lines("du", f"s3://{name}")
    assert du.split()[:3] == [str(20 * MiB + 2 * small.stat().st_size), "3", "objects"]

    s3cmd.run("del", f"s3://{name}/dir/small.txt", f"s3://{name}/moved.txt")
    assert _keys(s3, name) == {"big.bin": 20 * MiB}
    missing = s3cmd.run("get", f"s3://{name}/dir/small.txt", str(tmp_path / "x"), expect=None)
    assert missing.returncode != 0
    assert "does not exist" in missing.stderr
    s3cmd.run("del", f"s3://{name}/big.bin")
    s3cmd.run("rb", f"s3://{name}")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_s3cmd_sync_up_and_down(s3cmd: S3cmd, s3: Any, bucket: str, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, TREE)
    s3cmd.run("sync", f"{src}/", f"s3://{bucket}/tree/")
    assert {k: _get(s3, bucket, f"tree/{k}") for k in TREE} == TREE
    assert _keys(s3, bucket) == {f"tree/{k}": len(v) for k, v in TREE.items()}

    s3cmd.run("sync", f"s3://{bucket}/tree/", f"{dst}/")
    assert tree_files(dst) == TREE

    # s3cmd compares sizes and MD5s: only the changed file moves, and --delete-removed
    # removes what is gone locally.
    (src / "a/b/c/deep.txt").write_bytes(b"deeper now\n")
    (src / "top.txt").unlink()
    out = s3cmd.lines("sync", "--delete-removed", f"{src}/", f"s3://{bucket}/tree/")
    uploads = [line for line in out if line.startswith("upload:")]
    deletes = [line for line in out if line.startswith("delete:")]
    assert len(uploads) == 1
    assert "a/b/c/deep.txt" in uploads[0]
    assert deletes == [f"delete: 's3://{bucket}/tree/top.txt'"]
    assert _get(s3, bucket, "tree/a/b/c/deep.txt") == b"deeper now\n"
    assert "tree/top.txt" not in _keys(s3, bucket)

    s3cmd.run("sync", "--delete-removed", f"s3://{bucket}/tree/", f"{dst}/")
    assert tree_files(dst) == tree_files(src)


# ---------------------------------------------------------------------- minio library


def test_minio_objects(minio: Minio, s3: Any, tmp_path: Path) -> None:
    name = _new_bucket_name()
    minio.make_bucket(name)
    assert minio.bucket_exists(name)
    assert not minio.bucket_exists(_new_bucket_name())

    # A stream of unknown length in 5 MiB parts: a multipart upload.
    big = os.urandom(12 * MiB + 5)
    put = minio.put_object(name, "p/big", io.BytesIO(big), length=-1, part_size=5 * MiB)
    assert put.etag is not None
    assert put.etag.endswith("-3")
    assert _etag_parts(s3, name, "p/big") == 3
    minio.put_object(
        name, "p/small", io.BytesIO(b"hello"), length=5, content_type="text/plain",
        metadata={"x-amz-meta-colour": "blue"},
    )  # fmt: skip
    minio.put_object(name, "top", io.BytesIO(b"top"), length=3)

    response = minio.get_object(name, "p/big")
    try:
        assert response.read() == big
    finally:
        response.close()
        response.release_conn()
    response = minio.get_object(name, "p/big", offset=MiB, length=100)
    try:
        assert response.read() == big[MiB : MiB + 100]
    finally:
        response.close()
        response.release_conn()

    stat = minio.stat_object(name, "p/small")
    assert stat.size == 5
    assert stat.content_type == "text/plain"
    assert stat.etag == _md5(b"hello")
    assert stat.metadata is not None
    assert stat.metadata["x-amz-meta-colour"] == "blue"
    with pytest.raises(MinioS3Error) as exc:
        minio.stat_object(name, "p/none")
    assert exc.value.code == "NoSuchKey"

    def names(**kwargs: Any) -> list[str]:
        return [str(o.object_name) for o in minio.list_objects(name, **kwargs)]

    assert sorted(names()) == ["p/", "top"]  # objects first, then common prefixes
    assert names(recursive=True) == ["p/big", "p/small", "top"]
    assert names(prefix="p/") == ["p/big", "p/small"]
    assert names(prefix="p/s", recursive=True) == ["p/small"]
    sizes = {o.object_name: o.size for o in minio.list_objects(name, recursive=True)}
    assert sizes == {"p/big": len(big), "p/small": 5, "top": 3}

    url = minio.presigned_get_object(name, "p/small", expires=timedelta(minutes=5))
    with httpx.Client(trust_env=False) as http:
        got = http.get(url)
    assert got.status_code == 200
    assert got.content == b"hello"

    src = tmp_path / "file.bin"
    _write_random(src, 7 * MiB)
    minio.fput_object(name, "f/file.bin", str(src))
    minio.fget_object(name, "f/file.bin", str(tmp_path / "file.out"))
    assert _sha256_file(tmp_path / "file.out") == _sha256_file(src)
    assert _get(s3, name, "f/file.bin") == src.read_bytes()

    # Server-side copies: as is, with new metadata, and composed from two sources
    # (UploadPartCopy).
    minio.copy_object(name, "c/copy", CopySource(name, "p/small"))
    copied = minio.stat_object(name, "c/copy").metadata
    assert copied is not None
    assert copied["x-amz-meta-colour"] == "blue"
    minio.copy_object(
        name, "c/replaced", CopySource(name, "p/small"),
        metadata={"x-amz-meta-colour": "red"}, metadata_directive=REPLACE,
    )  # fmt: skip
    assert s3.head_object(Bucket=name, Key="c/replaced")["Metadata"] == {"colour": "red"}
    minio.compose_object(
        name, "c/composed", [ComposeSource(name, "p/big"), ComposeSource(name, "top")]
    )
    assert _get(s3, name, "c/composed") == big + b"top"
    assert _etag_parts(s3, name, "c/composed") == 2
    removed = [DeleteObject(k) for k in ("c/copy", "c/replaced", "c/composed")]
    assert list(minio.remove_objects(name, removed)) == []  # lazy: runs when iterated

    minio.remove_object(name, "top")
    assert names(recursive=True) == ["f/file.bin", "p/big", "p/small"]
    errors = list(
        minio.remove_objects(
            name, [DeleteObject("p/big"), DeleteObject("p/small"), DeleteObject("f/file.bin")]
        )
    )
    assert errors == []
    assert names(recursive=True) == []
    assert _keys(s3, name) == {}
    minio.remove_bucket(name)
    assert not minio.bucket_exists(name)
