"""Scrub, repair and rebalance: the workers that walk the block store (Garage:
src/block/repair.rs; design §9.7).

Theory of operation
-------------------
All three walk every block file of every data directory with a
:class:`BlockStoreIterator`: a stack of directories still to list and files still to
visit, each carrying the share of the walk it stands for (a fixed-point fraction of
``PROGRESS_FP``), so that progress is known without counting files first, and the walk
can be saved as plain values (a *checkpoint*) and resumed after a restart.

- :class:`ScrubWorker` reads and verifies every block, at a pace set by its tranquility.
  A corrupt copy is renamed ``.corrupted`` and queued for an immediate resync, which
  fetches a good copy from another node (``BlockManager.read_block_local``); the
  ``corruptions_detected`` counter goes up. It runs every 25 days plus a random 0-10 days
  (so that the nodes of a cluster do not all scrub at once), or on command (start, pause
  for a while, resume, cancel, set-tranquility). Its state (settings, counter, next run,
  and the walk's checkpoint, saved at most every ``checkpoint_interval_ms``) is the file
  ``scrub_info`` in ``metadata_dir``, written atomically.
- :class:`RepairBlocksWorker` (``garage repair blocks``) queues for an immediate resync
  every hash of the rc tree (referenced blocks: fetched if missing), then every block file
  found on disk (unreferenced ones: offloaded and deleted).
- :class:`RebalanceWorker` (``garage repair rebalance``) moves every block found outside
  its partition's primary directory into it; once done, every block is in its primary
  directory, so the data layout's secondary directories are dropped (saved to the
  ``data_layout`` file: in effect at the next start).

The clock and the random jitter are injected; file listing and reading run in worker
threads.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final, final

import anyio
import anyio.to_thread

from garage_table import Notifier
from garage_util.background import Tranquilizer, Worker, WorkerState, WorkerStatus
from garage_util.clock import msec_to_rfc3339
from garage_util.data import FixedBytes32, Hash
from garage_util.db import Excluded
from garage_util.encode import Versioned, decode_versioned, encode_versioned
from garage_util.persist import write_atomically

from ._data import DataBlock, DataBlockHeader
from ._errors import CorruptBlockError, NoSuchBlockError
from ._layout import DATA_LAYOUT_FILE, DRIVE_NPART, DataLayout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from garage_util.background import BgVars

    from ._manager import BlockManager
    from ._store import BlockStore

__all__ = [
    "INITIAL_SCRUB_TRANQUILITY",
    "PROGRESS_FP",
    "SCRUB_CHECKPOINT_INTERVAL_MS",
    "SCRUB_INFO_FILE",
    "SCRUB_INTERVAL_MS",
    "SCRUB_JITTER_MS",
    "SCRUB_PAUSE_MS",
    "BlockStoreIterator",
    "BsiTodo",
    "RebalanceWorker",
    "RepairBlocksWorker",
    "ScrubCommand",
    "ScrubWorker",
    "ScrubWorkerPersisted",
]

logger = logging.getLogger(__name__)

_DAY_MS: Final = 24 * 3600 * 1000
#: A full scrub every 25 days (Garage's SCRUB_INTERVAL): disks are read end to end about
#: monthly, which catches bit rot long before a second copy is likely to rot too...
SCRUB_INTERVAL_MS: Final = 25 * _DAY_MS
#: ... plus a random 0-10 days, so that the nodes of a cluster do not all scrub at once.
SCRUB_JITTER_MS: Final = 10 * _DAY_MS
#: Initial ``scrub-tranquility`` (Garage's): the scrub uses about a fifth of the disk time.
INITIAL_SCRUB_TRANQUILITY: Final = 4
#: How long ``scrub pause`` pauses by default (Garage's CLI default: 24 h), after which the
#: scrub resumes by itself, so that a forgotten pause does not stop scrubbing for good.
SCRUB_PAUSE_MS: Final = _DAY_MS
#: Checkpoints are saved at most this often (Garage's 60 s): a restart redoes at most a
#: minute of scrubbing, and the file is not rewritten for every block.
SCRUB_CHECKPOINT_INTERVAL_MS: Final = 60_000
#: The scrub's state file in ``metadata_dir`` (Garage's name).
SCRUB_INFO_FILE: Final = "scrub_info"
#: Fixed-point unit of the walk's progress (Garage's PROGRESS_FP).
PROGRESS_FP: Final = 1_000_000_000
#: Longest wait of an idle scrub before it looks at the clock again: bounds how late a
#: scheduled run or the end of a pause is noticed when the clock is not the real one.
_SCRUB_MAX_IDLE_S: Final = 60.0
#: Hashes queued per step by the repair worker: a few ms of db work per step.
_REPAIR_BATCH: Final = 1000

_HASH_HEX_LEN: Final = 64


# ---------------------------------------------------------------------------- the walk


@dataclass(frozen=True, slots=True)
class BsiTodo:
    """One item of a block store walk still to do.

    Attributes:
        path: a directory to list, or a block file.
        progress_min: where this item starts, in ``PROGRESS_FP`` units.
        progress_max: where it ends (a file: equal to ``progress_min``'s share end).
        hash: for a file, the block's hash; None for a directory.
    """

    path: str
    progress_min: int
    progress_max: int
    hash: Hash | None = None


def _is_hex(name: str) -> bool:
    try:
        bytes.fromhex(name)
    except ValueError:
        return False
    return True


def _block_file_hash(name: str) -> Hash | None:
    """The hash a block file's name stands for; None for other files (temporary files,
    quarantined ``.corrupted`` copies, markers)."""
    base, _, ext = name.partition(".")
    if ext not in ("", "zst") or len(base) != _HASH_HEX_LEN or not _is_hex(base):
        return None
    return FixedBytes32(bytes.fromhex(base))


@final
class BlockStoreIterator:
    """A resumable walk over every block file of the data directories.

    ``todo`` is a stack (the next item last): listing a directory replaces it by its
    entries, which split its progress range evenly; :meth:`checkpoint` returns the stack
    as values to persist, and :meth:`next` does the listing (blocking).
    """

    __slots__ = ("_todo",)

    def __init__(self, todo: Iterable[BsiTodo]) -> None:
        self._todo = list(todo)

    @classmethod
    def new(cls, layout: DataLayout) -> BlockStoreIterator:
        """A walk of every directory of ``layout``, each weighing its capacity (read-only
        ones the smallest capacity)."""
        caps = [d.capacity_bytes for d in layout.data_dirs]
        min_cap = min((c for c in caps if c is not None), default=1)
        weights = [c if c is not None else min_cap for c in caps]
        total = sum(weights) or 1
        todo: list[BsiTodo] = []
        cum = 0
        for d, w in zip(layout.data_dirs, weights, strict=True):
            lo = cum * PROGRESS_FP // total
            cum += w
            todo.append(BsiTodo(d.path, lo, cum * PROGRESS_FP // total))
        todo.reverse()  # a stack: the first directory is popped first
        return cls(todo)

    def checkpoint(self) -> tuple[BsiTodo, ...]:
        """The walk's state, to persist and resume with ``BlockStoreIterator(todo)``."""
        return tuple(self._todo)

    def progress(self) -> float:
        """The share of the walk done, from 0 to 1."""
        if not self._todo:
            return 1.0
        return self._todo[-1].progress_min / PROGRESS_FP

    def next(self) -> tuple[Path, Hash] | None:
        """The next block file as ``(path, hash)``, or None at the end. Blocking."""
        while self._todo:
            item = self._todo.pop()
            if item.hash is not None:
                return Path(item.path), item.hash
            self._expand(item)
        return None

    def _expand(self, item: BsiTodo) -> None:
        try:
            with os.scandir(item.path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return  # gone meanwhile (never created, or removed): nothing to visit
        children: list[tuple[str, Hash | None]] = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and _is_hex(entry.name):
                children.append((entry.path, None))
            elif entry.is_file(follow_symlinks=False):
                hash = _block_file_hash(entry.name)
                if hash is not None:
                    children.append((entry.path, hash))
        span = item.progress_max - item.progress_min
        count = len(children)
        new = [
            BsiTodo(
                path,
                item.progress_min + span * i // count,
                item.progress_min + span * (i + 1) // count,
                hash,
            )
            for i, (path, hash) in enumerate(children)
        ]
        new.reverse()
        self._todo.extend(new)


# ---------------------------------------------------------------------------- scrub


@dataclass(frozen=True, slots=True)
class ScrubWorkerPersisted(Versioned):
    """The scrub's state kept across restarts (``scrub_info``).

    Attributes:
        tranquility: ``scrub-tranquility``.
        time_last_complete_scrub_ms: when the last full scrub ended (0: never).
        time_next_run_scrub_ms: when the next one starts by itself.
        corruptions_detected: corrupt blocks found so far.
        checkpoint: the walk of the scrub in progress (None: none running).
    """

    VERSION_MARKER: ClassVar[bytes] = b"G09bswp"

    tranquility: int
    time_last_complete_scrub_ms: int
    time_next_run_scrub_ms: int
    corruptions_detected: int
    checkpoint: tuple[BsiTodo, ...] | None = None


class ScrubCommand(enum.Enum):
    """What an operator can tell the scrub worker (``garage repair scrub <cmd>``)."""

    START = "start"
    """Start a full scrub now (if none is running)."""
    PAUSE = "pause"
    """Pause the running scrub (for ``pause_ms``, 24 h by default)."""
    RESUME = "resume"
    """Resume a paused scrub."""
    CANCEL = "cancel"
    """Abandon the running scrub; the next one is scheduled as after a completed one."""
    SET_TRANQUILITY = "set-tranquility"
    """Change the tranquility (``tranquility``)."""


@final
class ScrubWorker(Worker):
    """Verifies every local block now and then (see the module docstring).

    Args:
        manager: the block manager (its store, and ``read_block_local`` to verify).
        clock_ms: the wall clock (default: the manager's).
        jitter_ms: a random extra delay for the next run (default 0-10 days).
        checkpoint_interval_ms: save the walk at most this often.
        metadata_dir: where ``scrub_info`` lives (default: the manager's; None: memory).
        max_idle_s: longest wait of an idle scrub before looking at the clock again.
    """

    __slots__ = (
        "_checkpoint_interval_ms",
        "_clock_ms",
        "_commands",
        "_iter",
        "_jitter_ms",
        "_manager",
        "_max_idle_s",
        "_notifier",
        "_path",
        "_persisted",
        "_resume_at_ms",
        "_t_cp_ms",
        "_tranquilizer",
    )

    def __init__(
        self,
        manager: BlockManager,
        *,
        clock_ms: Callable[[], int] | None = None,
        jitter_ms: Callable[[], int] | None = None,
        checkpoint_interval_ms: int = SCRUB_CHECKPOINT_INTERVAL_MS,
        metadata_dir: Path | None = None,
        max_idle_s: float = _SCRUB_MAX_IDLE_S,
    ) -> None:
        self._manager = manager
        self._clock_ms = clock_ms if clock_ms is not None else manager.clock_ms
        self._jitter_ms = jitter_ms if jitter_ms is not None else _random_jitter_ms
        self._checkpoint_interval_ms = checkpoint_interval_ms
        self._max_idle_s = max_idle_s
        directory = metadata_dir if metadata_dir is not None else manager.metadata_dir
        self._path = None if directory is None else Path(directory) / SCRUB_INFO_FILE
        self._persisted = self._load()
        self._tranquilizer = Tranquilizer()
        self._commands: deque[tuple[ScrubCommand, int | None]] = deque()
        self._notifier = Notifier()
        checkpoint = self._persisted.checkpoint
        self._iter = None if checkpoint is None else BlockStoreIterator(checkpoint)
        self._resume_at_ms: int | None = None
        self._t_cp_ms = self._clock_ms()

    # ------------------------------------------------------------------ state

    def _next_run_ms(self, now_ms: int) -> int:
        return now_ms + SCRUB_INTERVAL_MS + self._jitter_ms()

    def _load(self) -> ScrubWorkerPersisted:
        if self._path is not None and self._path.exists():
            try:
                return decode_versioned(ScrubWorkerPersisted, self._path.read_bytes())
            except (OSError, ValueError) as exc:
                logger.warning("ignoring unreadable %s: %s", self._path, exc)
        return ScrubWorkerPersisted(
            tranquility=INITIAL_SCRUB_TRANQUILITY,
            time_last_complete_scrub_ms=0,
            time_next_run_scrub_ms=self._next_run_ms(self._clock_ms()),
            corruptions_detected=0,
        )

    def _save_now(self) -> None:
        if self._path is not None:
            write_atomically(self._path, encode_versioned(self._persisted), mode=0o644)

    async def _update(self, **changes: object) -> None:
        self._persisted = dataclasses.replace(self._persisted, **changes)  # type: ignore[arg-type]  # field names checked by replace
        await anyio.to_thread.run_sync(self._save_now)

    @property
    def persisted(self) -> ScrubWorkerPersisted:
        """The scrub's current persisted state."""
        return self._persisted

    @property
    def corruptions_detected(self) -> int:
        """Corrupt blocks found so far (over every scrub)."""
        return self._persisted.corruptions_detected

    @property
    def running(self) -> bool:
        """A scrub is in progress (and not paused)."""
        return self._iter is not None and self._resume_at_ms is None

    @property
    def paused(self) -> bool:
        """A scrub is paused."""
        return self._iter is not None and self._resume_at_ms is not None

    # ------------------------------------------------------------------ commands

    def command(
        self, cmd: ScrubCommand, *, pause_ms: int | None = None, tranquility: int | None = None
    ) -> None:
        """Queues a command; the worker applies it at its next step (or at once when idle).

        Args:
            cmd: what to do.
            pause_ms: for ``PAUSE``, how long (default 24 h).
            tranquility: for ``SET_TRANQUILITY``, the new value (>= 0).

        Raises:
            ValueError: ``SET_TRANQUILITY`` without a valid tranquility, or a negative pause.
        """
        arg: int | None = None
        if cmd is ScrubCommand.SET_TRANQUILITY:
            if tranquility is None or tranquility < 0:
                raise ValueError("set-tranquility needs a tranquility >= 0")
            arg = tranquility
        elif cmd is ScrubCommand.PAUSE:
            arg = SCRUB_PAUSE_MS if pause_ms is None else pause_ms
            if arg < 0:
                raise ValueError("the pause must be >= 0 ms")
        self._commands.append((cmd, arg))
        self._notifier.notify()

    async def _apply_commands(self) -> None:
        while self._commands:
            cmd, arg = self._commands.popleft()
            await self._handle(cmd, arg)

    async def _handle(self, cmd: ScrubCommand, arg: int | None) -> None:
        now = self._clock_ms()
        if cmd is ScrubCommand.START:
            if self._iter is not None:
                logger.warning("cannot start the scrub: already running")
                return
            logger.info("starting a scrub of the block store")
            self._iter = BlockStoreIterator.new(self._manager.store.layout)
            self._resume_at_ms = None
            self._t_cp_ms = now
            await self._update(checkpoint=self._iter.checkpoint())
        elif cmd is ScrubCommand.PAUSE:
            if self._iter is None:
                logger.warning("cannot pause the scrub: not running")
                return
            assert arg is not None
            self._resume_at_ms = now + arg
            await self._update(checkpoint=self._iter.checkpoint())
        elif cmd is ScrubCommand.RESUME:
            if self._resume_at_ms is None:
                logger.warning("cannot resume the scrub: not paused")
                return
            self._resume_at_ms = None
            self._t_cp_ms = now
        elif cmd is ScrubCommand.CANCEL:
            if self._iter is None:
                logger.warning("cannot cancel the scrub: not running")
                return
            logger.info("scrub cancelled")
            self._iter = None
            self._resume_at_ms = None
            await self._update(checkpoint=None, time_next_run_scrub_ms=self._next_run_ms(now))
        else:
            assert arg is not None
            await self._update(tranquility=arg)

    def register_bg_vars(self, bg_vars: BgVars) -> None:
        """Registers ``scrub-tranquility`` (read-write; written at once) and the read-only
        ``scrub-last-completed``, ``scrub-next-run`` and ``scrub-corruptions_detected``."""

        def set_tranquility(text: str) -> None:
            try:
                value = int(text.strip(), 10)
            except ValueError:
                raise ValueError("expected an integer >= 0") from None
            if value < 0:
                raise ValueError(f"{value} is out of range: expected an integer >= 0")
            self._persisted = dataclasses.replace(self._persisted, tranquility=value)
            self._save_now()

        bg_vars.register_rw(
            "scrub-tranquility", lambda: str(self._persisted.tranquility), set_tranquility
        )
        bg_vars.register_ro(
            "scrub-last-completed",
            lambda: msec_to_rfc3339(self._persisted.time_last_complete_scrub_ms),
        )
        bg_vars.register_ro(
            "scrub-next-run", lambda: msec_to_rfc3339(self._persisted.time_next_run_scrub_ms)
        )
        bg_vars.register_ro(
            "scrub-corruptions_detected", lambda: str(self._persisted.corruptions_detected)
        )

    # ------------------------------------------------------------------ worker

    @property
    def name(self) -> str:
        return "Block scrub worker"

    def status(self) -> WorkerStatus:
        """Progress, corruptions found, tranquility, and when the next run is."""
        p = self._persisted
        base = WorkerStatus(tranquility=p.tranquility, persistent_errors=p.corruptions_detected)
        if self._iter is not None:
            progress = f"{self._iter.progress() * 100:.2f}%"
            if self._resume_at_ms is not None:
                note = (f"Scrub paused, resumes at {msec_to_rfc3339(self._resume_at_ms)}",)
                return dataclasses.replace(base, progress=progress, freeform=note)
            return dataclasses.replace(base, progress=progress)
        return dataclasses.replace(
            base,
            freeform=(
                f"Last scrub completed at {msec_to_rfc3339(p.time_last_complete_scrub_ms)}",
                f"Next scrub scheduled for {msec_to_rfc3339(p.time_next_run_scrub_ms)}",
            ),
        )

    async def work(self) -> WorkerState:
        await self._apply_commands()
        iterator = self._iter
        if iterator is None or self._resume_at_ms is not None:
            return WorkerState.IDLE
        self._tranquilizer.reset(anyio.current_time())
        item = await anyio.to_thread.run_sync(iterator.next)
        now = self._clock_ms()
        if item is None:
            next_run = self._next_run_ms(now)
            self._iter = None
            self._tranquilizer.clear()
            await self._update(
                time_last_complete_scrub_ms=now, time_next_run_scrub_ms=next_run, checkpoint=None
            )
            logger.info("scrub completed; next one at %s", msec_to_rfc3339(next_run))
            return WorkerState.IDLE
        _path, hash = item
        try:
            await self._manager.read_block_local(hash, resync_missing=False)
        except CorruptBlockError:
            logger.error("scrub found a corrupt block: %s (queued for resync)", hash)
            await self._update(corruptions_detected=self._persisted.corruptions_detected + 1)
        except NoSuchBlockError:
            pass  # deleted since the directory was listed
        if now - self._t_cp_ms >= self._checkpoint_interval_ms:
            self._t_cp_ms = now
            await self._update(checkpoint=iterator.checkpoint())
        return self._tranquilizer.tranquilize_worker(
            self._persisted.tranquility, anyio.current_time()
        )

    async def wait_for_work(self) -> WorkerState:
        while True:
            await self._apply_commands()
            if self.running:
                return WorkerState.BUSY
            if self._resume_at_ms is not None:
                wait_until, cmd = self._resume_at_ms, ScrubCommand.RESUME
            else:
                wait_until, cmd = self._persisted.time_next_run_scrub_ms, ScrubCommand.START
            now = self._clock_ms()
            if now >= wait_until:
                await self._handle(cmd, None)
                continue
            with anyio.move_on_after(min((wait_until - now) / 1000, self._max_idle_s)):
                await self._notifier.wait()


def _random_jitter_ms() -> int:
    return random.randrange(SCRUB_JITTER_MS)  # load spreading, not security


# ---------------------------------------------------------------------------- repair


@final
class RepairBlocksWorker(Worker):
    """``garage repair blocks``: queues every known block for an immediate resync.

    Phase 1 walks the rc tree (referenced blocks: a missing one gets fetched), phase 2
    every block file on disk (unreferenced files get offloaded and deleted). One-shot:
    ``DONE`` at the end.
    """

    __slots__ = ("_cursor", "_iter", "_manager", "_queued")

    def __init__(self, manager: BlockManager) -> None:
        self._manager = manager
        self._cursor: bytes | None = None
        self._iter: BlockStoreIterator | None = None
        self._queued = 0

    @property
    def name(self) -> str:
        return "Block repair worker"

    def status(self) -> WorkerStatus:
        if self._iter is None:
            where = "" if self._cursor is None else self._cursor[:4].hex()
            return WorkerStatus(
                progress="0.00%",
                freeform=(f"Currently in phase 1, iterator position: {where}",),
            )
        return WorkerStatus(
            progress=f"{self._iter.progress() * 100:.2f}%",
            freeform=("Currently in phase 2",),
        )

    @property
    def queued(self) -> int:
        """Hashes queued so far."""
        return self._queued

    async def work(self) -> WorkerState:
        if self._iter is None:
            batch = await anyio.to_thread.run_sync(self._rc_batch)
            if not batch:
                self._iter = BlockStoreIterator.new(self._manager.store.layout)
                return WorkerState.BUSY
            self._cursor = bytes(batch[-1])
        else:
            batch = await anyio.to_thread.run_sync(self._file_batch, self._iter)
            if not batch:
                logger.info("block repair done: %d hashes queued for resync", self._queued)
                return WorkerState.DONE
        self._queued += await anyio.to_thread.run_sync(
            self._manager.resync.put_many_to_resync, batch, 0
        )
        return WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        return WorkerState.DONE  # never idle: work() goes from BUSY to DONE

    def _rc_batch(self) -> list[Hash]:
        tree = self._manager.rc.tree
        start = None if self._cursor is None else Excluded(self._cursor)
        out: list[Hash] = []
        for key, _ in tree.range(start):
            out.append(FixedBytes32(key))
            if len(out) >= _REPAIR_BATCH:
                break
        return out

    @staticmethod
    def _file_batch(iterator: BlockStoreIterator) -> list[Hash]:
        out: list[Hash] = []
        while len(out) < _REPAIR_BATCH and (item := iterator.next()) is not None:
            out.append(item[1])
        return out


# ---------------------------------------------------------------------------- rebalance


@final
class RebalanceWorker(Worker):
    """``garage repair rebalance``: moves blocks into their primary data directory.

    When the walk ends every block is in its primary directory (those moved now, and those
    written meanwhile, since writes always go there), so the data layout's secondary
    directories are dropped and saved; the running store keeps searching them until the
    next start, which is harmless.
    """

    __slots__ = ("_iter", "_manager", "_moved", "_moved_bytes")

    def __init__(self, manager: BlockManager) -> None:
        self._manager = manager
        self._iter = BlockStoreIterator.new(manager.store.layout)
        self._moved = 0
        self._moved_bytes = 0

    @property
    def name(self) -> str:
        return "Block rebalance worker"

    @property
    def moved(self) -> int:
        """Blocks moved so far."""
        return self._moved

    def status(self) -> WorkerStatus:
        return WorkerStatus(
            progress=f"{self._iter.progress() * 100:.2f}%",
            freeform=(f"Blocks moved: {self._moved}", f"Bytes moved: {self._moved_bytes}"),
        )

    async def work(self) -> WorkerState:
        item = await anyio.to_thread.run_sync(self._iter.next)
        if item is None:
            await anyio.to_thread.run_sync(self._drop_secondary_dirs)
            logger.info("rebalance done: %d blocks moved", self._moved)
            return WorkerState.DONE
        path, hash = item
        store = self._manager.store
        primary = store.block_dir(store.layout.primary_dir(hash), hash)
        if path.parent == primary:
            return WorkerState.BUSY
        block = await anyio.to_thread.run_sync(_read_block_file, path, hash)
        if block is None:
            return WorkerState.BUSY
        # Writing moves the copy into the primary directory (BlockStore.write_block); if the
        # primary already had a copy the write keeps it, and this one is left to remove.
        await self._manager.write_block_local(hash, block)
        await anyio.to_thread.run_sync(_remove_if_primary_has_copy, store, path, hash)
        self._moved += 1
        self._moved_bytes += len(block.data)
        return WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        return WorkerState.DONE  # never idle: work() goes from BUSY to DONE

    def _drop_secondary_dirs(self) -> None:
        directory = self._manager.metadata_dir
        layout = self._manager.store.layout
        if directory is None or not any(layout.part_sec):
            return
        flat = DataLayout(layout.data_dirs, layout.part_prim, ((),) * DRIVE_NPART)
        write_atomically(Path(directory) / DATA_LAYOUT_FILE, encode_versioned(flat))
        logger.info("rebalance: secondary data directories dropped (from the next start)")


def _read_block_file(path: Path, hash: Hash) -> DataBlock | None:
    """The verified block in ``path``; None when it vanished or is corrupt (left for the
    scrub, which quarantines and refetches it)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    header = DataBlockHeader.COMPRESSED if path.suffix == ".zst" else DataBlockHeader.PLAIN
    block = DataBlock(header, data)
    try:
        block.verify(hash)
    except CorruptBlockError:
        logger.warning("rebalance: not moving corrupt block file %s", path)
        return None
    return block


def _remove_if_primary_has_copy(store: BlockStore, path: Path, hash: Hash) -> None:
    primary = (store.block_path(hash, compressed=c) for c in (True, False))
    if any(p != path and p.is_file() for p in primary):
        path.unlink(missing_ok=True)
