"""garage_util cores: hashing throughput, CRDT merges, canonical encoding."""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

import msgpack

from garage_util import blake2sum, fasthash, md5sum, pack, sha256sum, unpack
from garage_util.crdt import Lww, LwwMap

if TYPE_CHECKING:
    from collections.abc import Callable

Row = tuple[str, str, float, str]


def _rate(fn: Callable[[], object], *, min_time_s: float) -> float:
    """Calls per second of ``fn``, measured over at least ``min_time_s``."""
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time_s:
            return n / elapsed


def run(quick: bool) -> list[Row]:
    t = 0.05 if quick else 0.5
    rows: list[Row] = []
    block = bytes(range(256)) * 4096  # 1 MiB, Garage's default block size
    mib = len(block) / 2**20
    hashes: list[tuple[str, Callable[[bytes], object]]] = [
        ("blake2sum", blake2sum),
        ("sha256sum", sha256sum),
        ("md5sum", md5sum),
        ("fasthash", fasthash),
    ]
    for name, fn in hashes:
        rows.append(
            (
                "hash 1 MiB block",
                name,
                _rate(functools.partial(fn, block), min_time_s=t) * mib,
                "MiB/s",
            )
        )

    a: LwwMap[str, int] = LwwMap.from_items({f"k{i:03d}": (i % 7, i) for i in range(100)})
    b: LwwMap[str, int] = LwwMap.from_items({f"k{i:03d}": (i % 5, -i) for i in range(50, 150)})
    rows.append(
        ("merge LwwMap (100 + 100 keys)", "merge", _rate(lambda: a.merge(b), min_time_s=t), "ops/s")
    )
    r1, r2 = Lww(5, "a"), Lww(5, "b")
    rows.append(
        ("merge Lww (equal ts)", "merge", _rate(lambda: r1.merge(r2), min_time_s=t), "ops/s")
    )

    wire = {"vals": [[k, ts, v] for k, ts, v in a.vals]}
    raw = pack(a)
    rows.append(
        (
            "encode LwwMap 100 keys",
            "raw msgpack",
            _rate(lambda: msgpack.packb(wire), min_time_s=t),
            "ops/s",
        )
    )
    rows.append(("encode LwwMap 100 keys", "pack", _rate(lambda: pack(a), min_time_s=t), "ops/s"))
    rows.append(
        (
            "decode LwwMap 100 keys",
            "raw msgpack",
            _rate(lambda: msgpack.unpackb(raw), min_time_s=t),
            "ops/s",
        )
    )
    rows.append(
        (
            "decode LwwMap 100 keys",
            "typed unpack",
            _rate(lambda: unpack(LwwMap[str, int], raw), min_time_s=t),
            "ops/s",
        )
    )
    return rows


if __name__ == "__main__":
    for row in run(quick=False):
        print(*row)
