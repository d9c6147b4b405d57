"""BlockStore: block files, atomic writes, multi-directory lookups, corruption
(Garage: src/block/manager.rs)."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import pytest

from garage_model.block import (
    BlockStore,
    CorruptBlockError,
    DataBlock,
    NoSuchBlockError,
    load_data_layout,
)
from garage_util.config import DataDir
from garage_util.data import Hash, blake2sum

if TYPE_CHECKING:
    from pathlib import Path

TEXT = b"a very compressible block " * 2000


def _block(data: bytes, level: int | None = 1) -> tuple[Hash, DataBlock]:
    return Hash(blake2sum(data)), DataBlock.from_buffer(data, compression_level=level)


def _store(tmp_path: Path, caps: list[int | None] | None = None) -> BlockStore:
    caps = caps or [None]
    dirs = [
        DataDir(tmp_path / f"data{i}", c, c is None and len(caps) > 1) for i, c in enumerate(caps)
    ]
    return BlockStore.open(tmp_path, dirs, compression_level=1)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name != root.name)


def test_write_read_round_trip_and_path(tmp_path: Path) -> None:
    store = _store(tmp_path)
    h, block = _block(TEXT)
    assert block.is_compressed
    assert not store.has_block(h)
    store.write_block(h, block, fsync=True)
    expected = tmp_path / "data0" / h[0:1].hex() / h[1:2].hex() / (h.hex() + ".zst")
    assert expected.is_file()
    assert store.has_block(h)
    got = store.read_block(h)
    assert got == block
    assert got.content() == TEXT


def test_write_is_idempotent_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = _store(tmp_path)
    h, block = _block(os.urandom(5000))
    assert not block.is_compressed
    for fsync in (False, True, False):
        store.write_block(h, block, fsync=fsync)
    files = _files(tmp_path / "data0")
    assert [p.name for p in files] == [h.hex()]


def test_existing_compressed_copy_is_kept(tmp_path: Path) -> None:
    store = _store(tmp_path)
    h, comp = _block(TEXT)
    store.write_block(h, comp, fsync=False)
    store.write_block(h, DataBlock.plain(TEXT), fsync=False)
    assert [p.name for p in _files(tmp_path / "data0")] == [h.hex() + ".zst"]


def test_plain_copy_replaced_by_compressed(tmp_path: Path) -> None:
    store = _store(tmp_path)
    h, comp = _block(TEXT)
    store.write_block(h, DataBlock.plain(TEXT), fsync=False)
    assert [p.name for p in _files(tmp_path / "data0")] == [h.hex()]
    store.write_block(h, comp, fsync=True)
    assert [p.name for p in _files(tmp_path / "data0")] == [h.hex() + ".zst"]
    assert store.read_block(h).content() == TEXT


def test_missing_block(tmp_path: Path) -> None:
    store = _store(tmp_path)
    h, _ = _block(b"nothing")
    with pytest.raises(NoSuchBlockError) as info:
        store.read_block(h)
    assert info.value.hash == h
    assert not store.delete_block(h)


@pytest.mark.parametrize("level", [None, 1])
def test_corrupted_file_is_renamed(tmp_path: Path, level: int | None) -> None:
    store = _store(tmp_path)
    h, block = _block(TEXT, level)
    store.write_block(h, block, fsync=False)
    found = store.find_block(h)
    assert found is not None
    raw = bytearray(found.path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    found.path.write_bytes(bytes(raw))
    with pytest.raises(CorruptBlockError) as info:
        store.read_block(h)
    assert info.value.hash == h
    assert not found.path.exists()
    assert found.path.with_name(found.path.name + ".corrupted").is_file()
    assert not store.has_block(h)
    with pytest.raises(NoSuchBlockError):
        store.read_block(h)
    # A good copy can be written again (resync).
    store.write_block(h, block, fsync=False)
    assert store.read_block(h) == block


def test_delete_removes_every_copy(tmp_path: Path) -> None:
    store = _store(tmp_path)
    h, comp = _block(TEXT)
    store.write_block(h, comp, fsync=False)
    plain = store.block_path(h, compressed=False)
    plain.write_bytes(TEXT)
    assert store.delete_block(h)
    assert not store.has_block(h)
    assert not plain.exists()


def _hash_with_primary(store: BlockStore, idir: int) -> tuple[Hash, bytes]:
    for i in range(10_000):
        data = b"block %d " % i * 100
        h = Hash(blake2sum(data))
        if store.layout.part_prim[store.layout.partition(h)] == idir:
            return h, data
    raise AssertionError("no hash found")


def test_block_in_secondary_dir_found_and_moved_to_primary(tmp_path: Path) -> None:
    # Start with one directory, then add a second and shift all capacity to it.
    first = BlockStore.open(tmp_path, [DataDir(tmp_path / "data0", 10)], compression_level=1)
    blocks = [_block(b"old block %d " % i * 50) for i in range(20)]
    for h, b in blocks:
        first.write_block(h, b, fsync=False)
    store = BlockStore.open(
        tmp_path,
        [DataDir(tmp_path / "data0", 1), DataDir(tmp_path / "data1", 1000)],
        compression_level=1,
    )
    moved = [(h, b) for h, b in blocks if store.layout.primary_dir(h) == tmp_path / "data1"]
    assert moved  # ~99.9 % of partitions moved to data1
    for h, b in moved:
        assert store.read_block(h) == b  # found in the secondary directory
        found = store.find_block(h)
        assert found is not None
        assert found.path.is_relative_to(tmp_path / "data0")
        store.write_block(h, b, fsync=True)
        found = store.find_block(h)
        assert found is not None
        assert found.path.is_relative_to(tmp_path / "data1")
        old = first.block_path(h, compressed=b.is_compressed)
        assert not old.exists()


def test_read_only_dir_is_searched_never_written(tmp_path: Path) -> None:
    ro_dir = tmp_path / "data1"
    (tmp_path / "m0").mkdir()
    legacy = BlockStore.open(tmp_path / "m0", [DataDir(ro_dir, None)], compression_level=1)
    h, block = _block(TEXT)
    legacy.write_block(h, block, fsync=False)
    (tmp_path / "m1").mkdir()
    store = BlockStore.open(
        tmp_path / "m1",
        [DataDir(tmp_path / "data0", 10), DataDir(ro_dir, None, read_only=True)],
        compression_level=1,
    )
    assert store.read_block(h) == block
    h2, b2 = _block(b"new " * 1000)
    store.write_block(h2, b2, fsync=False)
    found = store.find_block(h2)
    assert found is not None
    assert found.path.is_relative_to(tmp_path / "data0")


def test_concurrent_writes_and_deletes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    h, comp = _block(TEXT)
    plain = DataBlock.plain(TEXT)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(30):
                if (i + j) % 5 == 0:
                    store.delete_block(h)
                else:
                    store.write_block(h, comp if j % 2 else plain, fsync=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store.write_block(h, comp, fsync=False)
    assert store.read_block(h).content() == TEXT
    assert not [p for p in _files(tmp_path / "data0") if ".tmp" in p.name]


def test_layout_dir_is_created(tmp_path: Path) -> None:
    load_data_layout(tmp_path, [DataDir(tmp_path / "deep" / "data", None)])
    assert (tmp_path / "deep" / "data").is_dir()
