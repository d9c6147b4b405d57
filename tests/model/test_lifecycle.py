"""The lifecycle worker (garage_model.lifecycle): its pure parts with hypothesis, and the
worker on a real node in this process (sqlite on disk, RPC on 127.0.0.1) with an injected
clock. Objects are written with chosen timestamps straight into the object table, so the
rules see them as old as a test needs."""

from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.polling import wait_until

from garage_model import Garage, GarageTimings
from garage_model.bucket_table import (
    LifecycleExpiration,
    LifecycleFilter,
    LifecycleRule,
    UuidKey,
)
from garage_model.lifecycle import (
    CLOCK_OFFSET_ENV,
    LIFECYCLE_STATE_FILE,
    LifecycleWorker,
    LifecycleWorkerPersisted,
    expiration_due,
    lifecycle_actions,
    lifecycle_clock,
    midnight_ms,
    parse_lifecycle_date,
    today,
    version_date,
)
from garage_model.s3 import (
    Aborted,
    Complete,
    DeleteMarker,
    Inline,
    Object,
    ObjectVersion,
    ObjectVersionMeta,
    ObjectVersionMetaInner,
    Plaintext,
    Uploading,
)
from garage_rpc.layout import NodeRole
from garage_table import TableTimings
from garage_table.schema import StringKey
from garage_util.background import WorkerState
from garage_util.clock import now_msec
from garage_util.config import parse_config
from garage_util.data import FixedBytes32, gen_uuid
from garage_util.encode import decode_versioned

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from garage_util.data import Uuid

DAY_MS = 24 * 3600 * 1000
MARKER = FixedBytes32(b"\x42" * 32)
BUCKET = FixedBytes32(b"\x01" * 32)
META = ObjectVersionMeta(10, "etag", Plaintext(ObjectVersionMetaInner()))
UPLOADING = Uploading(
    multipart=True, checksum_algorithm=None, encryption=Plaintext(ObjectVersionMetaInner())
)


def _ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()) * 1000


def _data(ts_ms: int, size: int = 10, uuid: Uuid | None = None) -> ObjectVersion:
    meta = dataclasses.replace(META, size=size)
    return ObjectVersion(uuid or gen_uuid(), ts_ms, Complete(Inline(meta, b"x" * size)))


def _upload(ts_ms: int) -> ObjectVersion:
    return ObjectVersion(gen_uuid(), ts_ms, UPLOADING)


def _rule(
    *,
    days: int | None = None,
    date: str | None = None,
    abort: int | None = None,
    prefix: str | None = None,
    gt: int | None = None,
    lt: int | None = None,
    enabled: bool = True,
) -> LifecycleRule:
    expiration = None
    if days is not None:
        expiration = LifecycleExpiration.after(days)
    elif date is not None:
        expiration = LifecycleExpiration.at(date)
    return LifecycleRule(
        enabled=enabled,
        filter=LifecycleFilter(prefix, gt, lt),
        abort_incomplete_mpu_days=abort,
        expiration=expiration,
    )


# ---------------------------------------------------------------------------- dates


def test_parse_lifecycle_date() -> None:
    assert parse_lifecycle_date("2025-01-31") == dt.date(2025, 1, 31)
    assert parse_lifecycle_date("2025-01-31T00:00:00Z") == dt.date(2025, 1, 31)
    assert parse_lifecycle_date("2025-01-31T00:00:00.000Z") == dt.date(2025, 1, 31)
    assert parse_lifecycle_date("2025-01-31T00:00:00+00:00") == dt.date(2025, 1, 31)
    for bad in ["2025-01-31T10:00:00Z", "2025-02-30", "31/01/2025", "", "2025-01-31T00:00:00.5Z"]:
        with pytest.raises(ValueError, match="date"):
            parse_lifecycle_date(bad)


@given(st.dates(dt.date(1971, 1, 1), dt.date(9998, 12, 31)))
def test_dates_round_trip_and_midnight_starts_the_day(day: dt.date) -> None:
    assert parse_lifecycle_date(day.isoformat()) == day
    assert parse_lifecycle_date(f"{day.isoformat()}T00:00:00.000Z") == day
    start = midnight_ms(day)
    assert today(start) == day
    assert today(start - 1) == day - dt.timedelta(days=1)
    # A version is 0 days old from the next midnight UTC on.
    assert version_date(start) == version_date(start + DAY_MS - 1) == day + dt.timedelta(days=1)


@given(st.integers(0, 2**41))
def test_local_midnight_is_within_the_local_day(now_ms: int) -> None:
    day = today(now_ms, use_local_tz=True)
    assert midnight_ms(day, use_local_tz=True) <= now_ms
    assert now_ms < midnight_ms(day + dt.timedelta(days=1), use_local_tz=True)


def test_days_are_counted_from_the_next_midnight_utc() -> None:
    created = _ms(2025, 3, 10, 23, 59)
    one_day = LifecycleExpiration.after(1)
    assert not expiration_due(one_day, created, dt.date(2025, 3, 11))
    assert expiration_due(one_day, created, dt.date(2025, 3, 12))
    at = LifecycleExpiration.at("2025-03-12")
    assert not expiration_due(at, created, dt.date(2025, 3, 11))
    assert expiration_due(at, created, dt.date(2025, 3, 12))
    assert not expiration_due(LifecycleExpiration.at("garbage"), created, dt.date(2030, 1, 1))


def test_lifecycle_clock_reads_the_test_offset() -> None:
    def base() -> int:
        return 1000

    assert lifecycle_clock(base, environ={}) is base
    assert lifecycle_clock(base, environ={CLOCK_OFFSET_ENV: ""}) is base
    assert lifecycle_clock(base, environ={CLOCK_OFFSET_ENV: "2000"})() == 3000
    assert lifecycle_clock(base, environ={CLOCK_OFFSET_ENV: "-500"})() == 500
    with pytest.raises(ValueError, match=CLOCK_OFFSET_ENV):
        lifecycle_clock(base, environ={CLOCK_OFFSET_ENV: "two days"})


# ---------------------------------------------------------------------------- the core

NOW = dt.date(2025, 6, 15)
NOW_MS = midnight_ms(NOW) + 3_600_000


def _actions(obj: Object, *rules: LifecycleRule) -> tuple[bool, list[Uuid]]:
    actions = lifecycle_actions(obj, rules, now=NOW, now_ms=NOW_MS, marker_uuid=MARKER)
    return actions.expire is not None, [v.uuid for v in actions.abort]


def test_expiration_filters() -> None:
    old = _ms(2025, 6, 1)
    obj = Object.new(BUCKET, "logs/a", [_data(old, size=100)])
    assert _actions(obj, _rule(days=7)) == (True, [])
    assert _actions(obj, _rule(days=30)) == (False, [])
    assert _actions(obj, _rule(days=7, prefix="logs/")) == (True, [])
    assert _actions(obj, _rule(days=7, prefix="tmp/")) == (False, [])
    assert _actions(obj, _rule(days=7, gt=99, lt=101)) == (True, [])
    assert _actions(obj, _rule(days=7, gt=100)) == (False, [])
    assert _actions(obj, _rule(days=7, lt=100)) == (False, [])
    assert _actions(obj, _rule(days=7, enabled=False)) == (False, [])
    assert _actions(obj, _rule(date="2025-06-15")) == (True, [])
    assert _actions(obj, _rule(date="2025-06-16")) == (False, [])
    # A rule that does not match does not stop the next one.
    assert _actions(obj, _rule(days=7, prefix="x"), _rule(days=7, lt=1000)) == (True, [])


def test_the_delete_marker_hides_the_current_version() -> None:
    current = _data(NOW_MS + 5000)  # a version from a node whose clock runs ahead
    obj = Object.new(BUCKET, "k", [current])
    actions = lifecycle_actions(
        obj, [_rule(date="2020-01-01")], now=NOW, now_ms=NOW_MS, marker_uuid=MARKER
    )
    assert actions.expire == ObjectVersion(MARKER, NOW_MS + 5001, Complete(DeleteMarker()))
    merged = obj.merge(actions.entry(obj))
    assert not merged.is_data()
    assert merged.is_tombstone()


def test_uploads_are_aborted_by_age_and_prefix() -> None:
    old, young = _upload(_ms(2025, 6, 1)), _upload(_ms(2025, 6, 14, 12))
    obj = Object.new(BUCKET, "up/a", [old, young])
    assert _actions(obj, _rule(abort=7)) == (False, [old.uuid])
    assert _actions(obj, _rule(abort=1)) == (False, [old.uuid])
    assert _actions(obj, _rule(abort=7, prefix="other/")) == (False, [])
    assert _actions(obj, _rule(abort=7, enabled=False)) == (False, [])
    # Several rules abort an upload once.
    assert _actions(obj, _rule(abort=7), _rule(abort=2, prefix="up/")) == (False, [old.uuid])
    actions = lifecycle_actions(obj, [_rule(abort=7)], now=NOW, now_ms=NOW_MS, marker_uuid=MARKER)
    merged = obj.merge(actions.entry(obj))
    assert [v.state for v in merged.versions] == [Aborted(), UPLOADING]


_versions = st.lists(
    st.tuples(
        st.integers(0, 60 * DAY_MS), st.sampled_from(["data", "upload", "marker", "aborted"])
    ),
    max_size=5,
)
_rules = st.lists(
    st.builds(
        _rule,
        days=st.none() | st.integers(1, 40),
        abort=st.none() | st.integers(1, 40),
        prefix=st.none() | st.sampled_from(["", "a", "b/"]),
        gt=st.none() | st.integers(0, 20),
        lt=st.none() | st.integers(1, 20),
        enabled=st.booleans(),
    ),
    max_size=4,
)


def _version(ts: int, kind: str) -> ObjectVersion:
    base = _ms(2025, 5, 1)
    if kind == "data":
        return _data(base + ts, size=ts % 20)
    if kind == "upload":
        return _upload(base + ts)
    state = Complete(DeleteMarker()) if kind == "marker" else Aborted()
    return ObjectVersion(gen_uuid(), base + ts, state)


@given(_versions, _rules, st.sampled_from(["a", "b/c", ""]))
def test_actions_only_hide_data_and_abort_uploads(
    versions: list[tuple[int, str]], rules: list[LifecycleRule], key: str
) -> None:
    obj = Object.new(BUCKET, key, [_version(ts, kind) for ts, kind in versions])
    actions = lifecycle_actions(obj, rules, now=NOW, now_ms=NOW_MS, marker_uuid=MARKER)
    enabled = [r for r in rules if r.enabled]
    if not enabled:
        assert not actions
    if actions.expire is not None:
        assert obj.is_data()
        current = obj.last_complete_version()
        assert current is not None
        assert actions.expire.timestamp > current.timestamp
        assert actions.expire.timestamp >= NOW_MS
        assert not obj.merge(actions.entry(obj)).is_data()
    uploading = {v.uuid for v in obj.versions if v.is_uploading()}
    assert {v.uuid for v in actions.abort} <= uploading
    assert all(v.state == Aborted() for v in actions.abort)
    # Applying the actions, then deciding again, asks for nothing more (idempotent).
    after = obj.merge(actions.entry(obj)) if actions else obj
    again = lifecycle_actions(after, rules, now=NOW, now_ms=NOW_MS, marker_uuid=MARKER)
    assert not again


# ---------------------------------------------------------------------------- the worker

SECRET = bytes(range(32))


@dataclass
class Clock:
    """The lifecycle worker's clock, moved by the test."""

    now_ms: int

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class Node:
    garage: Garage
    clock: Clock

    async def bucket(self, rules: list[LifecycleRule] | None) -> Uuid:
        helper = self.garage.locked_helper
        bucket_id = await helper.create_bucket(f"b-{gen_uuid().hex()[:12]}")
        if rules is not None:
            await helper.update_bucket_lifecycle(bucket_id, rules)
        return bucket_id

    async def put(self, bucket_id: Uuid, key: str, *versions: ObjectVersion) -> None:
        await self.garage.object_table.table.insert(Object.new(bucket_id, key, versions))

    def local(self, bucket_id: Uuid, key: str) -> Object:
        data = self.garage.object_table.data
        raw = data.read_entry(UuidKey(bucket_id), StringKey(key))
        assert raw is not None
        return data.decode_entry(raw)

    def worker(self, **options: object) -> LifecycleWorker:
        """A second worker on the node's tables, driven step by step by the test."""
        return LifecycleWorker(
            self.garage.object_table.data,
            self.garage.bucket_table.table,
            clock_ms=self.clock,
            **options,  # type: ignore[arg-type]  # the keyword options of LifecycleWorker
        )


@asynccontextmanager
async def running_node(tmp_path: Path) -> AsyncIterator[Node]:
    config = parse_config(
        {
            "metadata_dir": str(tmp_path / "meta"),
            "data_dir": str(tmp_path / "data"),
            "replication_factor": 1,
            "rpc_secret": SECRET.hex(),
            "rpc_bind_addr": "127.0.0.1:0",
            "s3_api": {"s3_region": "garage"},
        }
    )
    clock = Clock(now_msec())
    timings = GarageTimings(
        tables=TableTimings(sync_first_delay_s=60.0, gc_delay_s=60.0, gc_retry_delay_s=0.5),
        lifecycle_clock_ms=clock,
    )
    garage = await anyio.to_thread.run_sync(lambda: Garage(config, timings=timings))
    async with anyio.create_task_group() as tg:
        await tg.start(garage.run)
        history = garage.layout.history.stage_role(
            garage.node_id, NodeRole("dc1", 10**10), now_msec()
        )
        applied, _ = history.apply_staged_changes(1, now_msec())
        await garage.layout.update(applied)
        yield Node(garage, clock)
        tg.cancel_scope.cancel()


async def _drive(worker: LifecycleWorker) -> int:
    """Calls ``work()`` until the pass is done; the number of steps."""
    steps = 0
    with anyio.fail_after(30):
        while await worker.work() is WorkerState.BUSY:
            steps += 1
    return steps


@pytest.mark.anyio
async def test_the_node_worker_expires_and_aborts(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        lifecycle = node.garage.lifecycle_worker
        await wait_until(lambda: not lifecycle.statistics().running, "the start-up pass")
        assert (
            node.garage.bg_vars.get("lifecycle-last-completed") == today(node.clock()).isoformat()
        )
        now = node.clock()
        rules = [
            _rule(days=3, prefix="logs/", lt=1000),
            _rule(abort=2, prefix="up/"),
            _rule(days=1, prefix="off/", enabled=False),
        ]
        bucket = await node.bucket(rules)
        plain = await node.bucket(None)
        old = now - 10 * DAY_MS
        await node.put(bucket, "logs/old", _data(old))
        await node.put(bucket, "logs/big", _data(old, size=5000))
        await node.put(bucket, "logs/new", _data(now))
        await node.put(bucket, "off/old", _data(old))
        upload = _upload(old)
        await node.put(bucket, "up/u", upload)
        await node.put(plain, "logs/old", _data(old))

        lifecycle.run_now()
        await wait_until(lambda: lifecycle.statistics().objects_scanned > 0, "a pass")
        await wait_until(lambda: not lifecycle.statistics().running, "the pass's end")
        stats = lifecycle.statistics()
        assert (stats.objects_expired, stats.mpu_aborted) == (1, 1)
        assert stats.objects_scanned == 6  # the bucket without rules: skipped after one
        await wait_until(lambda: not node.local(bucket, "logs/old").is_data(), "expired")
        await wait_until(lambda: node.local(bucket, "up/u").versions[0].is_aborted(), "aborted")
        for key in ("logs/big", "logs/new", "off/old"):
            assert node.local(bucket, key).is_data(), key
        assert node.local(plain, "logs/old").is_data()
        status = lifecycle.status().freeform
        assert status[0] == f"Last completed: {today(node.clock()).isoformat()}"
        assert "Objects expired: 1" in status


@pytest.mark.anyio
async def test_a_pass_a_day_persisted_across_restarts(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        meta = tmp_path / "meta-worker"
        meta.mkdir()
        bucket = await node.bucket([_rule(days=1)])
        created = node.clock()
        await node.put(bucket, "a", _data(created))

        worker = node.worker(metadata_dir=meta, max_idle_s=0.05)
        assert worker.statistics().running  # nothing persisted: a pass starts at once
        await _drive(worker)
        day0 = today(created)
        assert worker.last_completed == day0
        assert worker.statistics().objects_expired == 0  # too young
        persisted = decode_versioned(
            LifecycleWorkerPersisted, (meta / LIFECYCLE_STATE_FILE).read_bytes()
        )
        assert persisted == LifecycleWorkerPersisted(day0.isoformat())

        # The same day, a new worker (a restart) does not run the pass again...
        restarted = node.worker(metadata_dir=meta, max_idle_s=0.05)
        assert not restarted.statistics().running
        assert await restarted.work() is WorkerState.IDLE
        # ...but run_now does.
        restarted.run_now()
        assert await restarted.wait_for_work() is WorkerState.BUSY
        assert restarted.statistics().day == day0
        await _drive(restarted)

        # Two days later, the next midnight has passed: a new pass, which expires "a".
        node.clock.now_ms = midnight_ms(day0 + dt.timedelta(days=2)) + 1000
        with anyio.fail_after(30):
            assert await restarted.wait_for_work() is WorkerState.BUSY
        assert restarted.statistics().day == day0 + dt.timedelta(days=2)
        await _drive(restarted)
        assert restarted.statistics().objects_expired == 1
        assert restarted.last_completed == day0 + dt.timedelta(days=2)
        await wait_until(lambda: not node.local(bucket, "a").is_data(), "a expired")


@pytest.mark.anyio
async def test_an_idle_worker_wakes_up_at_midnight(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        worker = node.worker(max_idle_s=0.01)
        await _drive(worker)
        day0 = worker.last_completed
        assert day0 is not None
        result: list[WorkerState] = []
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                result.append(await worker.wait_for_work())

            tg.start_soon(wait)
            node.clock.now_ms = midnight_ms(day0 + dt.timedelta(days=1))
            with anyio.fail_after(30):
                await wait_until(lambda: bool(result), "the wake-up at midnight")
        assert result == [WorkerState.BUSY]
        assert worker.statistics().day == day0 + dt.timedelta(days=1)


@pytest.mark.anyio
async def test_buckets_without_rules_are_skipped_across_batches(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        ids = sorted([await node.bucket(None), await node.bucket([_rule(days=1)])], key=bytes)
        missing = FixedBytes32(b"\xff" * 32)  # a bucket that does not exist, sorted last
        old = node.clock() - 10 * DAY_MS
        for bucket_id in (*ids, missing):
            for i in range(5):
                await node.put(bucket_id, f"k{i}", _data(old))
        worker = node.worker(batch_size=2)
        await _drive(worker)
        stats = worker.statistics()
        # Each bucket without rules (or deleted) costs one object; the other one five.
        assert stats.objects_scanned == 1 + 5 + 1
        assert stats.objects_expired == 5
