"""DataLayout: partitions over several data directories, markers, persistence
(Garage: src/block/layout.rs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_model.block import (
    DATA_LAYOUT_FILE,
    DRIVE_NPART,
    MARKER_FILE,
    DataLayout,
    DataLayoutError,
    LayoutDir,
    load_data_layout,
)
from garage_util.config import DataDir
from garage_util.data import Hash

if TYPE_CHECKING:
    from pathlib import Path

CAPS = st.lists(st.integers(1, 10**12), min_size=1, max_size=8)


def _dirs(caps: list[int | None]) -> list[LayoutDir]:
    return [LayoutDir(f"/d{i}", c, f"m{i}") for i, c in enumerate(caps)]


def _check_shares(layout: DataLayout) -> None:
    counts = layout.primary_counts()
    assert sum(counts) == DRIVE_NPART
    total = sum(d.capacity_bytes or 0 for d in layout.data_dirs)
    for d, n in zip(layout.data_dirs, counts, strict=True):
        if d.capacity_bytes is None:
            assert n == 0
        else:
            # Cumulative rounding: within one partition of the exact share.
            assert abs(n - d.capacity_bytes * DRIVE_NPART / total) < 1
    for prim, sec in zip(layout.part_prim, layout.part_sec, strict=True):
        assert prim not in sec
        assert len(set(sec)) == len(sec)


@given(CAPS, st.lists(st.booleans(), min_size=8, max_size=8))
def test_partitions_proportional_to_capacity(caps: list[int], ro: list[bool]) -> None:
    full: list[int | None] = [
        None if r and i > 0 else c for i, (c, r) in enumerate(zip(caps, ro, strict=False))
    ]
    dirs = _dirs(full)
    layout = DataLayout.initialize(dirs)
    _check_shares(layout)
    assert DataLayout.initialize(dirs) == layout  # deterministic
    # Read-only directories are searched for every partition.
    for i, d in enumerate(dirs):
        if d.read_only:
            assert all(i in sec for sec in layout.part_sec)


@given(CAPS, CAPS)
def test_update_keeps_shares_and_old_locations(old_caps: list[int], new_caps: list[int]) -> None:
    old = DataLayout.initialize(_dirs(list(old_caps)))
    new_dirs = _dirs(list(new_caps))
    new = old.updated(new_dirs)
    _check_shares(new)
    assert old.updated(new_dirs) == new  # deterministic
    # Every directory that survives is still searched for the partitions it held.
    for ipart, prim in enumerate(old.part_prim):
        if prim < len(new_dirs):
            assert prim == new.part_prim[ipart] or prim in new.part_sec[ipart]
    # Partitions only move away from directories that have too many.
    moved = sum(1 for a, b in zip(old.part_prim, new.part_prim, strict=True) if a != b)
    assert moved <= DRIVE_NPART


def test_update_unchanged_is_identity() -> None:
    layout = DataLayout.initialize(_dirs([1, 2]))
    assert layout.updated(_dirs([1, 2])) is layout


def test_partition_uses_hash_bytes_2_3() -> None:
    h = Hash(bytes([0xAA, 0xBB, 0x07, 0xFF]) + bytes(28))
    assert DataLayout.partition(h) == 0x07FF % 1024


def test_no_writable_dir_refused() -> None:
    with pytest.raises(DataLayoutError):
        DataLayout.initialize(_dirs([None]))


def _cfg(tmp_path: Path, caps: list[int | None], ro: frozenset[int] = frozenset()) -> list[DataDir]:
    return [DataDir(tmp_path / f"data{i}", c, i in ro) for i, c in enumerate(caps)]


def test_single_dir_without_capacity(tmp_path: Path) -> None:
    layout = load_data_layout(tmp_path, [DataDir(tmp_path / "data", None)])
    assert layout.primary_counts() == [DRIVE_NPART]
    assert (tmp_path / "data" / MARKER_FILE).is_file()


def test_layout_persists_and_reloads(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [100, 300])
    layout = load_data_layout(tmp_path, cfg)
    assert (tmp_path / DATA_LAYOUT_FILE).read_bytes().startswith(DataLayout.VERSION_MARKER)
    assert layout.primary_counts() == [256, 768]
    mtime = (tmp_path / DATA_LAYOUT_FILE).stat().st_mtime_ns
    assert load_data_layout(tmp_path, cfg) == layout
    assert (tmp_path / DATA_LAYOUT_FILE).stat().st_mtime_ns == mtime  # not rewritten
    # A capacity change moves partitions but keeps the old places searched.
    grown = load_data_layout(tmp_path, _cfg(tmp_path, [300, 300]))
    assert grown.primary_counts() == [512, 512]
    for ipart, prim in enumerate(layout.part_prim):
        assert prim == grown.part_prim[ipart] or prim in grown.part_sec[ipart]
    assert load_data_layout(tmp_path, _cfg(tmp_path, [300, 300])) == grown


def test_marker_mismatch_refuses_startup(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [1, 1])
    load_data_layout(tmp_path, cfg)
    (tmp_path / "data1" / MARKER_FILE).write_text("another drive")
    with pytest.raises(DataLayoutError, match="does not match"):
        load_data_layout(tmp_path, cfg)


def test_missing_marker_refuses_startup(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [1, 1])
    load_data_layout(tmp_path, cfg)
    (tmp_path / "data0" / MARKER_FILE).unlink()
    with pytest.raises(DataLayoutError, match="mounted"):
        load_data_layout(tmp_path, cfg)


def test_read_only_dir_gets_no_partitions(tmp_path: Path) -> None:
    (tmp_path / "data1").mkdir()
    layout = load_data_layout(tmp_path, _cfg(tmp_path, [10, None], ro=frozenset({1})))
    assert layout.primary_counts() == [DRIVE_NPART, 0]
    assert all(sec == (1,) for sec in layout.part_sec)
    assert not (tmp_path / "data1" / MARKER_FILE).exists()  # never written


def test_non_empty_new_dir_is_searched(tmp_path: Path) -> None:
    (tmp_path / "data1" / "ab").mkdir(parents=True)
    layout = load_data_layout(tmp_path, _cfg(tmp_path, [1, 1]))
    for prim, sec in zip(layout.part_prim, layout.part_sec, strict=True):
        assert sec == (() if prim == 1 else (1,))


def test_invalid_configurations(tmp_path: Path) -> None:
    with pytest.raises(DataLayoutError, match="capacity"):
        load_data_layout(tmp_path, _cfg(tmp_path, [1, None]))
    with pytest.raises(DataLayoutError, match="writable"):
        load_data_layout(tmp_path, _cfg(tmp_path, [None], ro=frozenset({0})))
    with pytest.raises(DataLayoutError):
        load_data_layout(tmp_path, [])
