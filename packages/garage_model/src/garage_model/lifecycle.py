"""The lifecycle worker: applies the buckets' lifecycle rules once a day (design §8.7).

Garage: src/model/s3/lifecycle_worker.rs. Theory of operation
-------------------------------------------------------------
Every node runs one :class:`LifecycleWorker`. Once a day, at midnight (UTC, or local time
with ``use_local_tz``), it starts a *pass*: a walk of **its local object table** in key
order, that is bucket by bucket (an object's store key starts with its bucket id). For
each object it decides, with the pure :func:`lifecycle_actions`, what the bucket's enabled
rules ask for:

- ``Expiration`` (``Days`` after the object's creation, or at a ``Date``), for an object
  passing the rule's prefix and size filters: a delete marker, timestamped
  ``max(now, version timestamp + 1)`` so that it is newer than the version it hides;
- ``AbortIncompleteMultipartUpload`` (``DaysAfterInitiation``), for an object passing the
  prefix filter: its uploads in progress that old become ``Aborted`` (as in Garage, any
  upload still in progress that long is dead, multipart or not).

The resulting object entries are queued on the object table's insert queue, in the same
db transaction for a batch (as Garage's ``queue_insert``): the insert queue worker sends
them to the object's replicas, and the normal deletion cascade (design §8.3) removes the
versions, uploads and blocks. Several replicas of an object apply the same rule in the
same night: the duplicates are harmless CRDT inserts (two delete markers; the object reads
as deleted either way).

Days are counted as S3 does: an object created on day D is "0 days old" until the
midnight after D (Garage's ``next_date``), so ``Days: 1`` expires it at the second
midnight after its creation. Version dates are UTC dates; "today" follows the node's
``use_local_tz``.

Invariants and why:

- A pass skips a whole bucket without enabled rules (or deleted) by jumping past its key
  prefix, so a pass over a node with one lifecycle bucket reads little else. The bucket's
  rules are read once per bucket per pass, with a quorum read (Garage's).
- Progress is persisted as the date of the last completed pass (``lifecycle_worker_state``
  in ``metadata_dir``, Garage's format): a node restarted after the day's pass does not
  run it again; one restarted during a pass redoes it from the start (expired objects are
  delete markers by then, so nothing is expired twice).
- The worker's clock is injected (``clock_ms``): tests move it forward, and
  :meth:`LifecycleWorker.run_now` starts a pass at once.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final, final

import anyio
import anyio.to_thread

from garage_table import Notifier
from garage_table.schema import EmptyKey
from garage_util.background import Worker, WorkerState, WorkerStatus
from garage_util.clock import now_msec
from garage_util.data import FixedBytes32, Uuid, gen_uuid
from garage_util.db import Bound, Excluded
from garage_util.encode import Versioned, decode_versioned, encode_versioned
from garage_util.persist import write_atomically

from .bucket_table import LifecycleExpiration, LifecycleRule, UuidKey
from .s3 import Aborted, Complete, DeleteMarker, Object, ObjectVersion

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from garage_table import Table, TableData
    from garage_util.background import BgVars
    from garage_util.db import Transaction

    from .bucket_table import Bucket

__all__ = [
    "CLOCK_OFFSET_ENV",
    "LIFECYCLE_BATCH",
    "LIFECYCLE_STATE_FILE",
    "LifecycleActions",
    "LifecycleStatistics",
    "LifecycleWorker",
    "LifecycleWorkerPersisted",
    "expiration_due",
    "has_lifecycle_work",
    "lifecycle_actions",
    "lifecycle_clock",
    "midnight_ms",
    "parse_lifecycle_date",
    "today",
    "version_date",
]

logger = logging.getLogger(__name__)

#: The worker's state file in ``metadata_dir`` (Garage's name).
LIFECYCLE_STATE_FILE: Final = "lifecycle_worker_state"
#: Objects looked at per step (Garage's 100): a few ms of work, then the runner may stop us.
LIFECYCLE_BATCH: Final = 100
#: Test hook: when set (an integer), the worker's clock runs this many milliseconds ahead
#: of the node's, so that a test node process can live "two days later" for lifecycle
#: purposes only (objects keep their real timestamps). Never set in production.
CLOCK_OFFSET_ENV: Final = "GARAGE_TEST_LIFECYCLE_CLOCK_OFFSET_MS"
#: Longest wait of an idle worker before it looks at its clock again: bounds how late
#: midnight is noticed when the clock is not the real one (or jumped).
_MAX_IDLE_S: Final = 60.0
#: The length of a bucket id: the prefix of every object's store key.
_ID_LEN: Final = 32

#: ``YYYY-MM-DD``, optionally followed by a time and a UTC zone (checked to be midnight).
_DATE_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|[+-]00:?00)?)?",
    re.ASCII,
)


# ---------------------------------------------------------------------------- dates


def parse_lifecycle_date(text: str) -> date:
    """The date of an ``Expiration/Date``: ``YYYY-MM-DD``, or ISO 8601 at midnight UTC
    (``2025-01-31T00:00:00Z``, ``2025-01-31T00:00:00.000Z``), as S3 requires.

    Garage: ``parse_lifecycle_date`` (src/model/bucket_table.rs).

    Raises:
        ValueError: not such a date, or not at midnight.
    """
    found = _DATE_RE.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"invalid date {text!r}: expected YYYY-MM-DD (midnight UTC)")
    year, month, day, hour, minute, second, fraction = found.groups()
    try:
        value = date(int(year), int(month), int(day))
    except ValueError:
        raise ValueError(f"invalid date {text!r}") from None
    clock = (hour or "0", minute or "0", second or "0", fraction or "0")
    if any(int(part) != 0 for part in clock):
        raise ValueError(f"the date {text!r} is not at midnight UTC")
    return value


def today(now_ms: int, *, use_local_tz: bool = False) -> date:
    """The date at ``now_ms``, in UTC or in the node's local time zone."""
    if use_local_tz:
        return datetime.fromtimestamp(now_ms / 1000).date()
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).date()


def midnight_ms(day: date, *, use_local_tz: bool = False) -> int:
    """When ``day`` starts, in ms since the epoch (UTC, or local time)."""
    start = datetime.combine(day, time(), tzinfo=None if use_local_tz else UTC)
    return int(start.timestamp()) * 1000


def version_date(ts_ms: int) -> date:
    """The day from which a version created at ``ts_ms`` counts as 0 days old: the UTC
    day after its creation (S3 rounds creation up to the next midnight UTC)."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).date() + timedelta(days=1)


def _days_old(ts_ms: int, now: date) -> int:
    return (now - version_date(ts_ms)).days


def expiration_due(expiration: LifecycleExpiration, version_ts_ms: int, now: date) -> bool:
    """Whether a version created at ``version_ts_ms`` has expired on day ``now``.

    A stored date that does not parse never expires anything (logged).
    """
    if expiration.after_days is not None:
        return _days_old(version_ts_ms, now) >= expiration.after_days
    assert expiration.at_date is not None
    try:
        return now >= parse_lifecycle_date(expiration.at_date)
    except ValueError:
        logger.warning("ignoring an invalid lifecycle expiration date %r", expiration.at_date)
        return False


# ---------------------------------------------------------------------------- the core


@dataclass(frozen=True, slots=True)
class LifecycleActions:
    """What the rules ask for one object.

    Attributes:
        expire: the delete marker to insert, or None.
        abort: the object's uploads in progress to abort, as ``Aborted`` versions.
    """

    expire: ObjectVersion | None = None
    abort: tuple[ObjectVersion, ...] = ()

    def __bool__(self) -> bool:
        return self.expire is not None or bool(self.abort)

    def entry(self, obj: Object) -> Object:
        """The object entry to insert: ``obj``'s key with these versions."""
        versions = [*self.abort, *([] if self.expire is None else [self.expire])]
        return Object.new(obj.bucket_id, obj.key, versions)


def has_lifecycle_work(obj: Object) -> bool:
    """Whether any rule could apply to ``obj``: it has data or an upload in progress (a
    tombstone or a fully aborted object needs no bucket lookup)."""
    return any(v.is_data() or v.is_uploading() for v in obj.versions)


def lifecycle_actions(
    obj: Object,
    rules: Sequence[LifecycleRule],
    *,
    now: date,
    now_ms: int,
    marker_uuid: Uuid,
) -> LifecycleActions:
    """Applies a bucket's lifecycle rules to one of its objects (pure).

    Disabled rules are ignored. An object whose key does not start with a rule's prefix
    is out of that rule. The expiration also needs the rule's size filter to pass on the
    current version's size; the abort of uploads looks at the prefix only (S3 allows no
    size filter with it). Several matching rules expire an object once, and abort each
    upload once.

    Args:
        obj: the object as stored on this node.
        rules: the bucket's rules.
        now: today's date (by the worker's clock and time zone).
        now_ms: the worker's clock, for the delete marker's timestamp.
        marker_uuid: the version id of the delete marker, if one is made.

    Returns:
        The versions to insert (possibly none).
    """
    current = next((v for v in reversed(obj.versions) if v.is_data()), None)
    expire: ObjectVersion | None = None
    abort: dict[Uuid, ObjectVersion] = {}
    for rule in rules:
        if not rule.enabled:
            continue
        prefix = rule.filter.prefix
        if prefix is not None and not obj.key.startswith(prefix):
            continue
        if expire is None and rule.expiration is not None and current is not None:
            meta = current.meta()
            assert meta is not None  # a data version has metadata
            if rule.filter.matches(obj.key, meta.size) and expiration_due(
                rule.expiration, current.timestamp, now
            ):
                timestamp = max(now_ms, current.timestamp + 1)
                expire = ObjectVersion(marker_uuid, timestamp, Complete(DeleteMarker()))
        days = rule.abort_incomplete_mpu_days
        if days is not None:
            for v in obj.versions:
                if v.is_uploading() and _days_old(v.timestamp, now) >= days:
                    abort.setdefault(v.uuid, ObjectVersion(v.uuid, v.timestamp, Aborted()))
    return LifecycleActions(expire, tuple(abort.values()))


# ---------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class LifecycleWorkerPersisted(Versioned):
    """The worker's state kept across restarts (``lifecycle_worker_state``; Garage's).

    Attributes:
        last_completed: the date (``YYYY-MM-DD``) of the last completed pass, if any.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G09lwp"

    last_completed: str | None = None


@dataclass(frozen=True, slots=True)
class LifecycleStatistics:
    """A snapshot of the worker (:meth:`LifecycleWorker.statistics`).

    Attributes:
        running: a pass is in progress.
        day: the date of the pass in progress, or of the last one this process ran.
        last_completed: the date of the last completed pass (persisted), if any.
        objects_scanned: objects looked at by that pass.
        objects_expired: delete markers it queued.
        mpu_aborted: uploads it aborted.
    """

    running: bool
    day: date | None
    last_completed: date | None
    objects_scanned: int
    objects_expired: int
    mpu_aborted: int


@dataclass(slots=True)
class _Pass:
    """The pass in progress (mutable, private to the worker)."""

    day: date
    start: Bound = None
    exhausted: bool = False
    total: int | None = None
    scanned: int = 0
    expired: int = 0
    aborted: int = 0
    bucket_id: Uuid | None = None
    rules: tuple[LifecycleRule, ...] | None = None


def lifecycle_clock(
    base: Callable[[], int], *, environ: Mapping[str, str] = os.environ
) -> Callable[[], int]:
    """The lifecycle worker's clock: ``base``, shifted by ``$GARAGE_TEST_LIFECYCLE_CLOCK_OFFSET_MS``
    when set (a test hook; see :data:`CLOCK_OFFSET_ENV`).

    Raises:
        ValueError: the variable is set but not an integer.
    """
    text = environ.get(CLOCK_OFFSET_ENV, "").strip()
    if not text:
        return base
    try:
        offset = int(text, 10)
    except ValueError:
        raise ValueError(f"{CLOCK_OFFSET_ENV} must be an integer (ms), not {text!r}") from None
    logger.warning("the lifecycle worker's clock runs %d ms ahead (%s)", offset, CLOCK_OFFSET_ENV)
    return lambda: base() + offset


# ---------------------------------------------------------------------------- the worker


@final
class LifecycleWorker(Worker):
    """Applies the buckets' lifecycle rules to this node's objects once a day.

    A pass starts at construction unless the persisted state says today's pass is done,
    then at every midnight, or at once on :meth:`run_now`.

    Args:
        objects: the object table's local data (walked, and its insert queue used).
        buckets: the bucket table (quorum reads of the rules).
        clock_ms: the worker's wall clock in ms.
        use_local_tz: days start at local midnight instead of UTC midnight.
        metadata_dir: where ``lifecycle_worker_state`` lives (None: kept in memory).
        batch_size: objects looked at per step.
        max_idle_s: longest wait of an idle worker before it looks at the clock again.
    """

    __slots__ = (
        "_batch_size",
        "_buckets",
        "_clock_ms",
        "_last",
        "_last_completed",
        "_local_tz",
        "_max_idle_s",
        "_notifier",
        "_objects",
        "_pass",
        "_path",
        "_requested",
    )

    def __init__(
        self,
        objects: TableData[Object],
        buckets: Table[Bucket],
        *,
        clock_ms: Callable[[], int] = now_msec,
        use_local_tz: bool = False,
        metadata_dir: Path | None = None,
        batch_size: int = LIFECYCLE_BATCH,
        max_idle_s: float = _MAX_IDLE_S,
    ) -> None:
        self._objects = objects
        self._buckets = buckets
        self._clock_ms = clock_ms
        self._local_tz = use_local_tz
        self._batch_size = batch_size
        self._max_idle_s = max_idle_s
        self._path = None if metadata_dir is None else Path(metadata_dir) / LIFECYCLE_STATE_FILE
        self._last_completed = self._load()
        self._notifier = Notifier()
        self._requested = False
        self._last: _Pass | None = None
        self._pass: _Pass | None = None
        now = self._today()
        if self._last_completed is None or self._last_completed < now:
            self._start(now)

    # ------------------------------------------------------------------ state

    def _today(self) -> date:
        return today(self._clock_ms(), use_local_tz=self._local_tz)

    def _load(self) -> date | None:
        if self._path is None or not self._path.exists():
            return None
        try:
            persisted = decode_versioned(LifecycleWorkerPersisted, self._path.read_bytes())
            if persisted.last_completed is None:
                return None
            return date.fromisoformat(persisted.last_completed)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable %s: %s", self._path, exc)
            return None

    def _save(self, last_completed: date) -> None:
        if self._path is not None:
            persisted = LifecycleWorkerPersisted(last_completed.isoformat())
            write_atomically(self._path, encode_versioned(persisted), mode=0o644)

    def _start(self, day: date) -> None:
        logger.info("starting the lifecycle pass of %s", day)
        self._pass = _Pass(day)

    @property
    def last_completed(self) -> date | None:
        """The date of the last completed pass (persisted), if any."""
        return self._last_completed

    def statistics(self) -> LifecycleStatistics:
        """The pass in progress, or the last one this process ran."""
        p = self._pass if self._pass is not None else self._last
        return LifecycleStatistics(
            running=self._pass is not None,
            day=None if p is None else p.day,
            last_completed=self._last_completed,
            objects_scanned=0 if p is None else p.scanned,
            objects_expired=0 if p is None else p.expired,
            mpu_aborted=0 if p is None else p.aborted,
        )

    def run_now(self) -> None:
        """Starts a pass for today at once, even if today's pass is done (tests and
        operators); nothing changes while a pass runs. Does not block."""
        if self._pass is None:
            self._requested = True
            self._notifier.notify()

    def register_bg_vars(self, bg_vars: BgVars) -> None:
        """Registers the read-only ``lifecycle-last-completed`` (a date, or ``never``)."""

        def last() -> str:
            d = self._last_completed
            return "never" if d is None else d.isoformat()

        bg_vars.register_ro("lifecycle-last-completed", last)

    # ------------------------------------------------------------------ worker

    @property
    def name(self) -> str:
        return "Object lifecycle worker"

    def status(self) -> WorkerStatus:
        """The pass in progress (date, progress, counts), or the last completed one."""
        p = self._pass
        if p is not None:
            total = p.total
            progress = "..." if not total else f"~{100 * min(p.scanned, total) / total:.2f}%"
            return WorkerStatus(progress=progress, freeform=(f"Started: {p.day}", *_counts(p)))
        last = "never" if self._last_completed is None else self._last_completed.isoformat()
        done = () if self._last is None else _counts(self._last)
        return WorkerStatus(freeform=(f"Last completed: {last}", *done))

    async def work(self) -> WorkerState:
        p = self._pass
        if p is None:
            return WorkerState.IDLE
        if p.total is None:
            p.total = await anyio.to_thread.run_sync(self._objects.store.len)
        batch = [] if p.exhausted else await anyio.to_thread.run_sync(self._read_batch, p.start)
        if not batch:
            await anyio.to_thread.run_sync(self._save, p.day)
            self._last_completed, self._last, self._pass = p.day, p, None
            logger.info(
                "lifecycle pass of %s done: %d objects scanned, %d expired, %d uploads aborted",
                p.day, p.scanned, p.expired, p.aborted,
            )  # fmt: skip
            return WorkerState.IDLE
        entries: list[Object] = []
        scanned = expired = aborted = 0
        skip: bytes | None = None
        now_ms = self._clock_ms()
        for key, obj in batch:
            if skip is not None and key.startswith(skip):
                continue
            scanned += 1
            if not has_lifecycle_work(obj):
                continue
            rules = await self._rules(p, obj.bucket_id)
            if not rules:
                skip = key[:_ID_LEN]
                continue
            actions = lifecycle_actions(
                obj, rules, now=p.day, now_ms=now_ms, marker_uuid=gen_uuid()
            )
            if actions:
                entries.append(actions.entry(obj))
                expired += actions.expire is not None
                aborted += len(actions.abort)
        if entries:
            await anyio.to_thread.run_sync(self._queue, entries)
            logger.info("lifecycle: %d objects expired, %d uploads aborted", expired, aborted)
        # Only now move on: a failed step (quorum read, db) is redone whole after a back-off.
        last_key = batch[-1][0]
        if skip is not None and last_key.startswith(skip):
            after = FixedBytes32(skip).increment()  # the first key past the skipped bucket
            p.start, p.exhausted = (None, True) if after is None else (bytes(after), False)
        else:
            p.start = Excluded(last_key)
        p.scanned += scanned
        p.expired += expired
        p.aborted += aborted
        return WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        while True:
            if self._pass is not None:
                return WorkerState.BUSY
            now_ms = self._clock_ms()
            if self._requested:
                self._requested = False
                self._start(today(now_ms, use_local_tz=self._local_tz))
                continue
            last = self._last_completed
            assert last is not None  # no pass running: one completed
            next_day = last + timedelta(days=1)
            next_start = midnight_ms(next_day, use_local_tz=self._local_tz)
            if now_ms >= next_start:
                self._start(max(next_day, today(now_ms, use_local_tz=self._local_tz)))
                continue
            with anyio.move_on_after(min((next_start - now_ms) / 1000, self._max_idle_s)):
                await self._notifier.wait()

    # ------------------------------------------------------------------ I/O

    def _read_batch(self, start: Bound) -> list[tuple[bytes, Object]]:
        """The next objects of the local store from ``start`` (blocking: a thread)."""
        out = []
        for key, value in self._objects.store.range(start, None):
            out.append((key, self._objects.decode_entry(value)))
            if len(out) >= self._batch_size:
                break
        return out

    def _queue(self, entries: list[Object]) -> None:
        """Queues the entries for the cluster in one transaction (blocking: a thread)."""

        def txn(tx: Transaction) -> None:
            for entry in entries:
                self._objects.queue_insert(tx, entry)

        self._objects.db.transaction(txn)

    async def _rules(self, p: _Pass, bucket_id: Uuid) -> tuple[LifecycleRule, ...]:
        """The bucket's enabled rules (read once per bucket per pass); none for a deleted
        bucket."""
        if p.bucket_id == bucket_id and p.rules is not None:
            return p.rules
        bucket = await self._buckets.get(EmptyKey(), UuidKey(bucket_id))
        params = None if bucket is None else bucket.params
        if params is None:
            logger.warning("lifecycle: objects of a missing or deleted bucket %s", bucket_id)
            rules: tuple[LifecycleRule, ...] = ()
        else:
            rules = tuple(r for r in params.lifecycle_config.value or () if r.enabled)
        p.bucket_id, p.rules = bucket_id, rules
        return rules


def _counts(p: _Pass) -> tuple[str, ...]:
    return (
        f"Objects scanned: {p.scanned}",
        f"Objects expired: {p.expired}",
        f"Multipart uploads aborted: {p.aborted}",
    )
