"""Metadata db micro-benchmarks: the same workload on every engine.

``run(quick)`` returns rows of ``(benchmark, engine, value, unit)``; the bench runner formats
them. Run standalone with ``uv run python bench/bench_db.py [--quick]``.

Workload: 16-byte keys inserted in a shuffled order (a hash-like key distribution, as Garage's
tables have) with 100-byte values, in a fresh db with the default ``fsync=False``:

* ``insert (autocommit)``: one ``Tree.insert`` per key, each its own atomic write.
* ``transaction (100 inserts)``: ``Db.transaction`` calls writing 100 keys each.
* ``get (point)``: ``Tree.get`` of random present keys.
* ``range scan``: iterating the whole tree with ``Tree.iter`` (batched reads).
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from typing import TYPE_CHECKING

from garage_util.db import ENGINES, open_db

if TYPE_CHECKING:
    from garage_util.db import Db, Transaction, Tree

Row = tuple[str, str, float, str]

VALUE = bytes(range(100))


def _keys(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    keys = [i.to_bytes(8, "big") + rng.randbytes(8) for i in range(n)]
    rng.shuffle(keys)
    return keys


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _bench_inserts(tree: Tree, keys: list[bytes]) -> float:
    start = time.perf_counter()
    for k in keys:
        tree.insert(k, VALUE)
    return _rate(len(keys), time.perf_counter() - start)


def _bench_transactions(db: Db, tree: Tree, keys: list[bytes], per_tx: int) -> float:
    chunks = [keys[i : i + per_tx] for i in range(0, len(keys), per_tx)]

    def write(chunk: list[bytes]) -> None:
        def fn(tx: Transaction) -> None:
            for k in chunk:
                tx.insert(tree, k, VALUE)

        db.transaction(fn)

    start = time.perf_counter()
    for chunk in chunks:
        write(chunk)
    return _rate(len(chunks), time.perf_counter() - start)


def _bench_gets(tree: Tree, keys: list[bytes], count: int) -> float:
    rng = random.Random(1)
    probes = [rng.choice(keys) for _ in range(count)]
    start = time.perf_counter()
    for k in probes:
        if tree.get(k) is None:
            raise AssertionError("benchmark key vanished")
    return _rate(count, time.perf_counter() - start)


def _bench_scan(tree: Tree) -> float:
    start = time.perf_counter()
    n = sum(1 for _ in tree.iter())
    return _rate(n, time.perf_counter() - start)


def _bench_engine(engine: str, quick: bool) -> list[Row]:
    n_single, n_tx, n_gets = (2_000, 50, 10_000) if quick else (20_000, 500, 100_000)
    per_tx = 100
    with tempfile.TemporaryDirectory(prefix="garage-bench-db-") as tmp, open_db(tmp, engine) as db:
        single = db.open_tree("bench:single")
        batched = db.open_tree("bench:batched")
        single_keys = _keys(n_single, seed=2)
        tx_keys = _keys(n_tx * per_tx, seed=3)
        inserts = _bench_inserts(single, single_keys)
        txs = _bench_transactions(db, batched, tx_keys, per_tx)
        gets = _bench_gets(batched, tx_keys, n_gets)
        scan = _bench_scan(batched)
    return [
        ("insert (autocommit)", engine, inserts, "inserts/s"),
        (f"transaction ({per_tx} inserts)", engine, txs, "tx/s"),
        ("get (point)", engine, gets, "gets/s"),
        ("range scan", engine, scan, "items/s"),
    ]


def run(quick: bool) -> list[Row]:
    """Run every benchmark on every engine; return ``(benchmark, engine, value, unit)`` rows.

    Args:
        quick: a smaller workload (about a second in all) for smoke runs.
    """
    rows: list[Row] = []
    for engine in ENGINES:
        rows.extend(_bench_engine(engine, quick))
    return rows


def _main(argv: list[str]) -> None:
    rows = run(quick="--quick" in argv)
    print(f"{'benchmark':<28} {'engine':<8} {'value':>14}  unit")
    for name, engine, value, unit in sorted(rows):
        print(f"{name:<28} {engine:<8} {value:>14,.0f}  {unit}")


if __name__ == "__main__":
    _main(sys.argv[1:])
