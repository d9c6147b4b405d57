"""Benchmark: the cost of an UploadPart as a multipart upload grows.

Every UploadPart reads the upload's ``multipart_upload`` row and inserts it twice (the
part attempt unfinished, then finished: design §10.6); each replica merges the insert into
its stored row, re-encodes it and counts it for ``bucket_mpu_counter``. The row lists every
part attempt, so these steps are O(parts): this benchmark shows what they cost.

Measured on a node built in this process (``garage_model.Garage`` from ``parse_config``:
sqlite metadata and block files in a temporary directory, RPC on 127.0.0.1, replication
factor 1, a one-node layout), with an upload that already holds N finished parts (10, 100,
1,000 and 5,000; the first three with ``--quick``). The N parts are written at once (one
insert of the row with N fake part attempts), so that reaching 5,000 parts does not take
5,000 UploadParts; their versions do not exist, which nothing measured here looks at.

- ``UploadPart``: µs per part for what the S3 handler does on the model (``get_upload``,
  then ``upload_part`` of a 64-byte part: the row read, the unfinished insert, the version
  row and its one block, the finished insert), the median of a few parts added one after
  the other to the N-part upload;
- ``mpu row decode``: µs to decode the row of N parts as every replica does at every
  insert (``MultipartUpload.decode`` of the stored bytes, which it encoded at the previous
  insert: then a lookup in the cache of recent big rows of ``garage_model.s3.mpu_table``);
  ``mpu row decode cold``: of bytes this process never saw (after a restart, on a gateway);
- ``mpu row encode``: µs to encode the row (a row found again, whose parts keep their
  encodings: the stored row after an insert); ``mpu row encode cold``: an equal row
  without them;
- ``mpu row merge``: µs to merge one part attempt into the row (the replica's merge).

Run it with ``uv run python -m bench bench_mpu`` or
``uv run python bench/bench_mpu.py [--quick]``.
"""

from __future__ import annotations

import hashlib
import itertools
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio
import anyio.to_thread

from garage_model import Garage, GarageTimings
from garage_model.s3 import MpuPart, MultipartUpload
from garage_model.s3.multipart import PartDigest, create_upload, get_upload, upload_part
from garage_rpc import LayoutHistory, NodeRole, RequestStrategy
from garage_rpc.peering import PeeringConfig
from garage_table import TableTimings
from garage_util.config import parse_config
from garage_util.crdt import Bool, Map
from garage_util.data import gen_uuid

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

Row = tuple[str, str, float, str]

RPC_SECRET: Final = bytes(range(32)).hex()
#: The part sizes of the table: S3 allows up to 10,000 parts.
SIZES: Final = (10, 100, 1_000, 5_000)
QUICK_SIZES: Final = (10, 100, 1_000)
#: Parts uploaded (and timed) at each size: the median of these is reported.
PARTS_TIMED: Final = 15
QUICK_PARTS_TIMED: Final = 5
#: A tiny part: the data path is not what is measured here.
PART_DATA: Final = bytes(range(64))
#: Everything is local: a measurement that takes this long means something hangs.
MEASURE_TIMEOUT_S: Final = 600.0
TIMINGS: Final = GarageTimings(
    tables=TableTimings(strategy=RequestStrategy(timeout_s=60.0)),
    peering=PeeringConfig(retry_interval_s=0.2, loop_interval_s=0.05),
)


def _config(tmp: Path) -> dict[str, object]:
    return {
        "metadata_dir": str(tmp / "meta"),
        "data_dir": str(tmp / "data"),
        "rpc_bind_addr": "127.0.0.1:0",
        "rpc_secret": RPC_SECRET,
        "replication_factor": 1,
        "s3_api": {"s3_region": "garage"},
    }


def _row(mpu: MultipartUpload, n_parts: int) -> MultipartUpload:
    """``mpu`` with ``n_parts`` finished part attempts (fake versions), numbers 1..n."""
    parts = tuple(
        ((number, 1_000 + number), MpuPart(gen_uuid(), "0" * 32, None, len(PART_DATA)))
        for number in range(1, n_parts + 1)
    )
    return MultipartUpload(
        mpu.upload_id, mpu.timestamp, Bool(False), Map(parts), mpu.bucket_id, mpu.key
    )


def _us_per_op(fn: Callable[[], object], min_s: float = 0.2) -> float:
    """µs per call of ``fn``, called until ``min_s`` seconds have passed (at least 3 times)."""
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < min_s:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls * 1e6


def _copy(data: bytes) -> bytes:
    """An equal, new bytes object, as read from sqlite (its hash is not computed yet)."""
    return bytes(bytearray(data))


def _codec_rows(n_parts: int) -> list[Row]:
    """Decode, encode and merge costs of an ``n_parts`` row (blocking: CPU only)."""
    base = MultipartUpload.new(gen_uuid(), 1, gen_uuid(), "bench/object")
    mpu = _row(base, n_parts)
    data = mpu.encode()
    MultipartUpload.decode(data)  # found again: as a stored row is, at the next insert
    mutator = base.with_part(n_parts + 1, 5, MpuPart(gen_uuid()))
    marker = MultipartUpload.VERSION_MARKER
    counter = itertools.count()

    def cold() -> object:
        # The same row under another key (as long): bytes never seen, so never cached.
        key = f"b{next(counter):011d}".encode()
        return MultipartUpload.decode(marker + data[len(marker) :].replace(b"bench/object", key))

    variant = f"{n_parts} parts"
    return [
        ("mpu row decode", variant, _us_per_op(lambda: MultipartUpload.decode(_copy(data))), "µs"),
        ("mpu row decode cold", variant, _us_per_op(cold), "µs"),
        ("mpu row encode", variant, _us_per_op(mpu.encode), "µs"),
        ("mpu row encode cold", variant, _us_per_op(lambda: replace(mpu).encode()), "µs"),
        ("mpu row merge", variant, _us_per_op(lambda: mpu.merge(mutator)), "µs"),
    ]


async def _upload_part_rows(garage: Garage, sizes: tuple[int, ...], timed: int) -> list[Row]:
    bucket_id = await garage.locked_helper.create_bucket("bench-mpu")
    rows: list[Row] = []
    for n_parts in sizes:
        key = f"object-{n_parts}"
        upload = await create_upload(garage, bucket_id, key)
        await garage.mpu_table.table.insert(_row(upload.mpu, n_parts))
        samples = []
        for i in range(timed):
            md5 = hashlib.md5(usedforsecurity=False)

            async def chunks() -> AsyncIterator[bytes]:
                yield PART_DATA

            def finish(md5: hashlib._Hash = md5) -> PartDigest:
                return PartDigest(md5.hexdigest())

            start = time.perf_counter()
            with anyio.fail_after(MEASURE_TIMEOUT_S):
                current = await get_upload(garage, bucket_id, key, upload.upload_id)
                await upload_part(
                    garage, current, n_parts + 1 + i, chunks(), digest=md5.update, finish=finish
                )
            samples.append(time.perf_counter() - start)
        final = await get_upload(garage, bucket_id, key, upload.upload_id)
        if len(final.mpu.parts) != n_parts + timed:
            raise AssertionError(f"the upload has {len(final.mpu.parts)} parts")
        rows.append(("UploadPart", f"{n_parts} parts", statistics.median(samples) * 1e6, "µs"))
    return rows


async def _measure(tmp: Path, sizes: tuple[int, ...], timed: int) -> list[Row]:
    garage = await anyio.to_thread.run_sync(
        lambda: Garage(parse_config(_config(tmp)), timings=TIMINGS)
    )
    async with anyio.create_task_group() as tg:
        await tg.start(garage.run)
        history = LayoutHistory.new(1).stage_role(garage.node_id, NodeRole("z", 10**12), now_ms=1)
        applied, _ = history.apply_staged_changes(1, now_ms=2)
        await garage.layout.update(applied)
        rows = await _upload_part_rows(garage, sizes, timed)
        tg.cancel_scope.cancel()
    for n_parts in sizes:
        rows += await anyio.to_thread.run_sync(_codec_rows, n_parts)
    # Group the rows of each benchmark (smallest upload first, the ratios' base).
    order = list(dict.fromkeys(bench for bench, *_ in rows))
    return sorted(rows, key=lambda row: order.index(row[0]))


def run(quick: bool) -> list[Row]:
    """µs per UploadPart, and per decode, encode and merge of the upload's row, as the
    upload holds 10 to 5,000 parts."""
    sizes = QUICK_SIZES if quick else SIZES
    timed = QUICK_PARTS_TIMED if quick else PARTS_TIMED
    with tempfile.TemporaryDirectory(prefix="garage-bench-mpu-") as tmp:
        rows: list[Row] = anyio.run(_measure, Path(tmp), sizes, timed, backend="trio")
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(*row, sep="\t")
