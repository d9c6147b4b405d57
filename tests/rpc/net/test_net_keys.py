"""Node keys: generation, persistence, refusal of unsafe or damaged key files."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest

from garage_rpc.net import NodeKey, NodeKeyError
from garage_rpc.net._keys import NODE_KEY_FILE, NODE_PUB_FILE, verify_signature

if TYPE_CHECKING:
    from pathlib import Path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_the_key_files(tmp_path: Path) -> None:
    meta = tmp_path / "meta" / "sub"  # created if missing, as Garage does
    key = NodeKey.load_or_create(meta)
    secret = (meta / NODE_KEY_FILE).read_bytes()
    assert len(secret) == 64
    assert mode(meta / NODE_KEY_FILE) == 0o600
    assert (meta / NODE_PUB_FILE).read_bytes() == key.node_id
    assert secret[32:] == key.node_id  # libsodium layout: seed ‖ public key
    assert not [p.name for p in meta.iterdir() if p.name.endswith(".tmp")]


def test_key_is_reloaded_identical(tmp_path: Path) -> None:
    first = NodeKey.load_or_create(tmp_path)
    (tmp_path / NODE_PUB_FILE).unlink()  # derived: rewritten if missing
    second = NodeKey.load_or_create(tmp_path)
    assert second == first
    assert second.node_id == first.node_id
    assert (tmp_path / NODE_PUB_FILE).read_bytes() == first.node_id


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    NodeKey.load_or_create(tmp_path)
    os.chmod(tmp_path / NODE_KEY_FILE, 0o644)
    with pytest.raises(NodeKeyError, match="chmod 600"):
        NodeKey.load_or_create(tmp_path)


@pytest.mark.parametrize("size", [0, 32, 63, 65])
def test_damaged_key_is_refused(tmp_path: Path, size: int) -> None:
    NodeKey.load_or_create(tmp_path)
    path = tmp_path / NODE_KEY_FILE
    path.write_bytes(path.read_bytes()[:size].ljust(size, b"\0"))
    with pytest.raises(NodeKeyError, match=f"{size} bytes long"):
        NodeKey.load_or_create(tmp_path)


def test_key_whose_halves_disagree_is_refused(tmp_path: Path) -> None:
    NodeKey.load_or_create(tmp_path)
    path = tmp_path / NODE_KEY_FILE
    data = bytearray(path.read_bytes())
    data[40] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(NodeKeyError, match="not a valid node key"):
        NodeKey.load_or_create(tmp_path)


def test_mismatched_public_key_file_is_refused(tmp_path: Path) -> None:
    NodeKey.load_or_create(tmp_path)
    (tmp_path / NODE_PUB_FILE).write_bytes(NodeKey.generate().node_id)
    with pytest.raises(NodeKeyError, match="public key"):
        NodeKey.load_or_create(tmp_path)


def test_identity_signatures_and_repr() -> None:
    key = NodeKey(bytes(range(32)))
    assert key == NodeKey(bytes(range(32)))
    assert key != NodeKey.generate()
    assert len(key.node_id.hex()) == 64
    assert len(key.node_id.short_hex()) == 16
    assert key.node_id.short_hex() in repr(key)
    assert key.secret_bytes().hex() not in repr(key)
    assert bytes(range(32)).hex() not in repr(key)
    signature = key.sign(b"message")
    assert verify_signature(key.node_id, b"message", signature)
    assert not verify_signature(key.node_id, b"messagf", signature)
    assert not verify_signature(key.node_id, b"message", signature[:10])
    assert NodeKey.from_secret_bytes(key.secret_bytes()) == key
    with pytest.raises(ValueError, match="32 bytes"):
        NodeKey(b"short")
