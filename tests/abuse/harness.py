"""The node under attack and the tools to attack it: canaries, process gauges, raw HTTP.

One ``garage server --single-node`` process serves every abuse module (started by
``conftest.py`` with :func:`tests.api.conftest.start_single_node`). Before the first attack
it stores the *canaries*, objects of each storage shape (inline in the metadata, one block,
several blocks, a multipart upload), whose bytes must never change whatever the attacks do.

Requests that a polite client would never send are written here by hand: :func:`signed`
signs with :func:`garage_api.signature.sign_request` (so a test can alter any part
afterwards), :func:`exchange` speaks raw bytes over a socket (paths with ``..``, broken
framing, lying ``Content-Length``), and :func:`aws_chunked` builds ``aws-chunked`` bodies
with :func:`garage_api.signature.chunk_signature` and friends.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import httpx
from tests.api.conftest import S3Node

from garage_api.signature import (
    PayloadMode,
    Scope,
    chunk_signature,
    sign_request,
    signing_key,
    trailer_signature,
)
from garage_rpc.net import NodeKey

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CANARY_BUCKET",
    "ChunkSigning",
    "Node",
    "aws_chunked",
    "error_code",
    "exchange",
    "http_status",
    "request_bytes",
    "send",
    "signed",
    "tree_snapshot",
]

CANARY_BUCKET: Final = "canary"
#: Size of a multipart canary's first part: S3's minimum part size.
_PART_BYTES: Final = 5 * 2**20
#: The canaries: one per storage shape. Garage stores objects up to 3 KiB inline in the
#: object table; larger ones are cut in 1 MiB blocks (block_size).
_CANARY_SIZES: Final = {
    "canary/inline.bin": 100,
    "canary/one-block.bin": 700 * 1024,
    "canary/multi-block.bin": 2 * 2**20 + 12345,
}
_MULTIPART_KEY: Final = "canary/multipart.bin"
#: Generous safety net for one raw exchange; tests never assert durations.
_EXCHANGE_TIMEOUT_S: Final = 30.0
_STATUS_RE: Final = re.compile(rb"^HTTP/1\.[01] (\d{3})")


def _canary_bytes(key: str, size: int) -> bytes:
    return random.Random(key).randbytes(size)


@dataclass
class Node:
    """The node under attack: its S3 side (``s3``) and what the RPC tests need.

    Attributes:
        s3: the running single node (endpoint, quick-start key, process).
        root: the temporary directory holding the node's directory and a canary directory.
        rpc_port: the RPC port on 127.0.0.1.
        rpc_secret: the cluster's ``rpc_secret``.
        node_id: the node's public key.
        canaries: key → bytes of every canary object, in bucket :data:`CANARY_BUCKET`.
    """

    s3: S3Node
    root: Path
    rpc_port: int
    rpc_secret: bytes
    node_id: bytes
    canaries: dict[str, bytes]
    _client: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def attach(cls, s3: S3Node, root: Path) -> Node:
        """Reads the node's RPC settings from the configuration it wrote."""
        config = (s3.data_dir / "garage.toml").read_text()
        port = re.search(r'rpc_bind_addr = "127\.0\.0\.1:(\d+)"', config)
        secret = re.search(r'rpc_secret = "([0-9a-f]{64})"', config)
        assert port is not None, config
        assert secret is not None, config
        node_id = NodeKey.load_or_create(s3.data_dir / "meta").node_id
        return cls(s3, root, int(port.group(1)), bytes.fromhex(secret.group(1)), node_id, {})

    # ---------------------------------------------------------------- addresses

    @property
    def host(self) -> str:
        return urlsplit(self.s3.endpoint).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.s3.endpoint).port or 80

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.s3.proc.pid

    @property
    def meta_dir(self) -> Path:
        return self.s3.data_dir / "meta"

    @property
    def blocks_dir(self) -> Path:
        return self.s3.data_dir / "data"

    def client(self) -> Any:
        """A boto3 client with the quick-start key (one per node: making one is slow, and
        botocore clients are thread-safe)."""
        if self._client is None:
            self._client = self.s3.client()
        return self._client

    # ---------------------------------------------------------------- health

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.s3.proc.poll() is None

    def rss_kib(self) -> int:
        """The process's resident memory (``VmRSS``), in KiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert found is not None, status
        return int(found.group(1))

    def fd_count(self) -> int:
        """How many file descriptors the process holds."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def tcp_connections(self, port: int) -> int:
        """Established TCP connections of the node on its local ``port`` (from /proc)."""
        inodes = set()
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        count = 0
        for line in Path(f"/proc/{self.pid}/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
        return count

    # ---------------------------------------------------------------- canaries

    def put_canaries(self) -> None:
        """Stores the canary objects (once, before any attack)."""
        s3 = self.client()
        s3.create_bucket(Bucket=CANARY_BUCKET)
        for key, size in _CANARY_SIZES.items():
            data = _canary_bytes(key, size)
            s3.put_object(Bucket=CANARY_BUCKET, Key=key, Body=data)
            self.canaries[key] = data
        parts = [_canary_bytes("part1", _PART_BYTES), _canary_bytes("part2", 300_001)]
        upload = s3.create_multipart_upload(Bucket=CANARY_BUCKET, Key=_MULTIPART_KEY)["UploadId"]
        done = []
        for number, part in enumerate(parts, start=1):
            etag = s3.upload_part(
                Bucket=CANARY_BUCKET, Key=_MULTIPART_KEY, UploadId=upload,
                PartNumber=number, Body=part,
            )["ETag"]  # fmt: skip
            done.append({"PartNumber": number, "ETag": etag})
        s3.complete_multipart_upload(
            Bucket=CANARY_BUCKET, Key=_MULTIPART_KEY, UploadId=upload,
            MultipartUpload={"Parts": done},
        )  # fmt: skip
        self.canaries[_MULTIPART_KEY] = b"".join(parts)

    def check_canaries(self) -> None:
        """Every canary reads back byte for byte, and nothing else is in their bucket."""
        assert self.alive(), f"the node died (exit {self.s3.proc.returncode})"
        s3 = self.client()
        for key, data in self.canaries.items():
            got = s3.get_object(Bucket=CANARY_BUCKET, Key=key)["Body"].read()
            assert len(got) == len(data), key
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), key
        listed = s3.list_objects_v2(Bucket=CANARY_BUCKET).get("Contents", [])
        assert sorted(o["Key"] for o in listed) == sorted(self.canaries)

    def check_alive(self) -> None:
        """The process runs and answers: a cheap check for after each test."""
        assert self.alive(), f"the node died (exit {self.s3.proc.returncode})"
        head = self.client().head_object(Bucket=CANARY_BUCKET, Key="canary/inline.bin")
        assert head["ContentLength"] == len(self.canaries["canary/inline.bin"])


def tree_snapshot(root: Path, *, skip: Iterable[Path] = ()) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` (except under ``skip``) → (size, sha256), by relative path."""
    skipped = {str(p.resolve()) for p in skip}
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = os.path.realpath(dirpath)
        dirnames[:] = [d for d in dirnames if os.path.join(here, d) not in skipped]
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            out[os.path.relpath(path, root)] = (len(data), hashlib.sha256(data).hexdigest())
    return out


# -------------------------------------------------------------------- HTTP


def signed(
    node: Node,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Iterable[tuple[str, str]] = (),
    payload_hash: str | None = None,
    body: bytes = b"",
    now_ms: int | None = None,
) -> list[tuple[str, str]]:
    """The headers of a request signed in its ``Authorization`` header (sha256 of ``body``
    unless ``payload_hash`` names another mode)."""
    return sign_request(
        method, path, query, [("host", node.netloc), *headers],
        key_id=node.s3.key_id, secret=node.s3.secret, region=node.s3.region, service="s3",
        now_ms=now_ms if now_ms is not None else int(time.time() * 1000),
        payload_hash=payload_hash or hashlib.sha256(body).hexdigest(),
    )  # fmt: skip


def send(
    node: Node,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    sign: bool = True,
    payload_hash: str | None = None,
) -> httpx.Response:
    """Sends one request with httpx (signed unless ``sign`` is false)."""
    hdrs = list(headers)
    if sign:
        hdrs = signed(
            node, method, path, query=query, headers=hdrs, payload_hash=payload_hash, body=body
        )
    url = f"{node.s3.endpoint}{path}" + (f"?{query}" if query else "")
    return httpx.request(method, url, headers=hdrs, content=body, timeout=_EXCHANGE_TIMEOUT_S)


def error_code(response: httpx.Response | bytes) -> str:
    """The ``<Code>`` of an S3 error document."""
    text = response.decode("utf-8", "replace") if isinstance(response, bytes) else response.text
    found = re.search(r"<Code>([^<]*)</Code>", text)
    assert found is not None, text[:500]
    return found.group(1)


def exchange(node: Node, data: bytes, *, shutdown: bool = False) -> bytes:
    """Writes ``data`` on a fresh connection (then half-closes it if ``shutdown``) and
    returns what the node sent back: up to the end of a response whose length is known,
    or until the node closed the connection."""
    with socket.create_connection((node.host, node.port), timeout=_EXCHANGE_TIMEOUT_S) as sock:
        try:
            sock.sendall(data)
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the node refused early: its answer is read below
        out = bytearray()
        while True:
            try:
                piece = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not piece:
                break
            out += piece
            if _complete(out):
                break
        return bytes(out)


def _complete(raw: bytearray) -> bool:
    head, sep, rest = bytes(raw).partition(b"\r\n\r\n")
    if not sep:
        return False
    found = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    return found is not None and len(rest) >= int(found.group(1))


def http_status(raw: bytes) -> int | None:
    """The status code of a raw HTTP response, or None if the node sent nothing."""
    found = _STATUS_RE.match(raw)
    return int(found.group(1)) if found else None


def request_bytes(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """A request line and header block, as raw bytes."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


# -------------------------------------------------------------------- aws-chunked


@dataclass(frozen=True, slots=True)
class ChunkSigning:
    """What chunk signatures chain on: the request's key, date, scope and signature."""

    key: bytes
    amz_date: str
    scope: str
    seed: str

    @classmethod
    def of(cls, node: Node, headers: list[tuple[str, str]]) -> ChunkSigning:
        """The chunk signing of a request signed by :func:`signed`."""
        values = dict(headers)
        amz_date = values["x-amz-date"]
        seed = values["authorization"].rpartition("Signature=")[2]
        key = signing_key(node.s3.secret, amz_date[:8], node.s3.region, "s3")
        return cls(key, amz_date, str(Scope(amz_date[:8], node.s3.region, "s3")), seed)


def aws_chunked(
    chunks: list[bytes],
    mode: PayloadMode,
    *,
    signing: ChunkSigning | None = None,
    trailers: list[tuple[str, str]] | None = None,
) -> bytes:
    """An ``aws-chunked`` body of ``chunks`` then the final empty chunk (and the trailer)."""
    out = bytearray()
    previous = signing.seed if signing else ""
    for data in [*chunks, b""]:
        line = f"{len(data):x}"
        if mode.signed_chunks:
            assert signing is not None
            previous = chunk_signature(
                signing.key, signing.amz_date, signing.scope, previous,
                hashlib.sha256(data).hexdigest(),
            )  # fmt: skip
            line += f";chunk-signature={previous}"
        out += line.encode() + b"\r\n"
        if data:
            out += data + b"\r\n"
    if mode.has_trailer:
        for name, value in trailers or []:
            out += f"{name}:{value}\r\n".encode()
        if mode.signed_chunks:
            assert signing is not None
            signature = trailer_signature(
                signing.key, signing.amz_date, signing.scope, previous, trailers or []
            )
            out += f"x-amz-trailer-signature:{signature}\r\n".encode()
    return bytes(out + b"\r\n")
