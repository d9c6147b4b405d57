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


def test_concurrent_writers_of_one_path_do_not_collide(tmp_path: Path) -> None:
    import threading

    target = tmp_path / "state"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                write_atomically(target, f"{n}-{i}".encode())
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes().decode().endswith("-49")
    assert [p.name for p in tmp_path.iterdir()] == ["state"]
