from __future__ import annotations

import stat
from typing import TYPE_CHECKING

import pytest

from garage_util.persist import write_atomically

if TYPE_CHECKING:
    from pathlib import Path


def test_replaces_the_whole_file_with_the_given_mode(tmp_path: Path) -> None:
    target = tmp_path / "state"
    target.write_bytes(b"old content that is longer")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomically(target, b"public", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["state"]  # no temporary file left


def test_a_failed_write_leaves_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "state"
    with pytest.raises(FileNotFoundError):
        write_atomically(target, b"x")
    assert not target.exists()
