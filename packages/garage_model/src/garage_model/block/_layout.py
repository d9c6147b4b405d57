"""Which data directory holds which block (Garage: src/block/layout.rs).

Theory of operation: blocks are spread over one or several data directories. The hash space
is cut into :data:`DRIVE_NPART` drive partitions, ``u16 BE(hash[2:4]) % 1024`` (bytes 0-1
already name the two levels of sub-directories, so 2-3 are independent of them). Each
partition has one *primary* directory, where its blocks are written, and a list of
*secondary* directories, which are also searched when reading: read-only directories, a
directory that already held blocks when it was added, and a directory that lost the
partition when capacities changed. Resync and rebalance move blocks found in a secondary
directory to the primary one.

Invariants:

- Every partition has exactly one primary, a writable directory; a directory's number of
  primary partitions is its capacity share of 1024, cut by cumulative capacity
  (``floor(cum * 1024 / total)``), so the counts sum to 1024 exactly.
- The assignment is deterministic: the same configuration (and the same previous layout)
  always gives the same layout, on every restart.
- On a configuration change, a partition keeps its primary unless its directory now has too
  many; the directory it leaves becomes a secondary, so no block is lost from sight.
- Each directory holds a ``garage-marker`` file with random content, recorded in the layout.
  At startup a recorded directory whose marker is missing or different means the wrong drive
  (or none) is mounted there, and startup stops with :class:`DataLayoutError`.

:class:`DataLayout` is a pure value; :func:`load_data_layout` does the I/O (markers, the
``data_layout`` file in ``metadata_dir``) and is blocking: async callers run it with
``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final

from garage_util.encode import Versioned, decode_versioned, encode_versioned
from garage_util.persist import write_atomically

from ._errors import DataLayoutError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from garage_util.config import DataDir
    from garage_util.data import Hash

__all__ = [
    "DATA_LAYOUT_FILE",
    "DRIVE_NPART",
    "MARKER_FILE",
    "DataLayout",
    "LayoutDir",
    "load_data_layout",
]

logger = logging.getLogger(__name__)

#: Number of drive partitions: fine enough that capacity shares are within 0.1 %, small
#: enough that the layout file stays a few KiB (Garage: DRIVE_NPART).
DRIVE_NPART: Final = 1024

#: Hash bytes that pick the drive partition (Garage: HASH_DRIVE_BYTES). Bytes 0 and 1 name
#: the sub-directories, so using them would put whole sub-directories on one drive.
_HASH_DRIVE_BYTES: Final = slice(2, 4)

#: The layout's file name in ``metadata_dir`` (Garage's name).
DATA_LAYOUT_FILE: Final = "data_layout"

#: The marker file's name in each data directory.
MARKER_FILE: Final = "garage-marker"

#: Capacity given to the lone directory of ``data_dir = "<path>"``: any positive value
#: works, since it gets all partitions (Garage uses the same placeholder).
_SINGLE_DIR_CAPACITY: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LayoutDir:
    """One data directory as recorded in the layout.

    Attributes:
        path: the directory (as a string: stored in the ``data_layout`` file).
        capacity_bytes: its capacity, which sets its share of partitions; ``None`` for a
            read-only directory (searched, never written).
        marker: the content of its ``garage-marker`` file; ``None`` for a read-only
            directory that had none (it cannot be given one).
    """

    path: str
    capacity_bytes: int | None
    marker: str | None = None

    @property
    def read_only(self) -> bool:
        """True when the directory gets no primary partitions."""
        return self.capacity_bytes is None


def _shares(dirs: Sequence[LayoutDir]) -> list[int]:
    """Each directory's number of primary partitions, proportional to capacity."""
    total = sum(d.capacity_bytes or 0 for d in dirs)
    if total <= 0:
        raise DataLayoutError("no writable data directory with a positive capacity")
    shares: list[int] = []
    cum = 0
    for d in dirs:
        begin = cum * DRIVE_NPART // total
        cum += d.capacity_bytes or 0
        shares.append(cum * DRIVE_NPART // total - begin)
    return shares


def _add_secondary(part_sec: list[list[int]], part_prim: Sequence[int], idir: int) -> None:
    for sec, prim in zip(part_sec, part_prim, strict=True):
        if prim != idir and idir not in sec:
            sec.append(idir)


@dataclass(frozen=True, slots=True)
class DataLayout(Versioned):
    """The assignment of drive partitions to data directories.

    Build one with :meth:`initialize` (first start) or :meth:`updated` (configuration
    changed); both are pure and deterministic.

    Attributes:
        data_dirs: the directories, in configuration order.
        part_prim: for each partition, the index in ``data_dirs`` of its primary directory.
        part_sec: for each partition, the indices of directories also searched.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G09bmdl"

    data_dirs: tuple[LayoutDir, ...]
    part_prim: tuple[int, ...]
    part_sec: tuple[tuple[int, ...], ...]

    @classmethod
    def initialize(
        cls, dirs: Sequence[LayoutDir], *, non_empty: Collection[str] = ()
    ) -> DataLayout:
        """The layout for a first start.

        Args:
            dirs: the configured directories.
            non_empty: paths of directories that already hold block sub-directories; they
                become secondaries of every partition, so that existing blocks stay visible.

        Raises:
            DataLayoutError: no writable directory.
        """
        part_prim: list[int] = []
        for idir, n in enumerate(_shares(dirs)):
            part_prim.extend([idir] * n)
        part_sec: list[list[int]] = [[] for _ in range(DRIVE_NPART)]
        for idir, d in enumerate(dirs):
            if d.read_only or d.path in non_empty:
                _add_secondary(part_sec, part_prim, idir)
        return cls(tuple(dirs), tuple(part_prim), tuple(tuple(s) for s in part_sec))

    def updated(self, dirs: Sequence[LayoutDir], *, non_empty: Collection[str] = ()) -> DataLayout:
        """The layout after the configured directories changed to ``dirs``.

        Partitions keep their primary directory where its share allows; those that move
        keep their old directory as a secondary. Directories are matched by path.

        Args:
            dirs: the new configured directories.
            non_empty: paths of directories that hold block sub-directories; those among the
                newly added ones become secondaries of every partition.

        Raises:
            DataLayoutError: no writable directory.
        """
        dirs = tuple(dirs)
        if dirs == self.data_dirs:
            return self
        new_index = {d.path: i for i, d in enumerate(dirs)}
        old2new = [new_index.get(d.path) for d in self.data_dirs]
        part_sec = [[n for o in sec if (n := old2new[o]) is not None] for sec in self.part_sec]
        shares = _shares(dirs)
        # Partitions each directory keeps as primary, up to its new share.
        dir_prim: list[list[int]] = [[] for _ in dirs]
        for ipart, old in enumerate(self.part_prim):
            new = old2new[old]
            if new is not None:
                dir_prim[new].append(ipart)
        part_prim: list[int | None] = [None] * DRIVE_NPART
        for idir, parts in enumerate(dir_prim):
            while len(parts) > shares[idir]:
                ipart = parts.pop()
                if idir not in part_sec[ipart]:
                    part_sec[ipart].append(idir)
            for ipart in parts:
                part_prim[ipart] = idir
        # Give the unassigned partitions to directories below their share.
        unassigned = [i for i, p in enumerate(part_prim) if p is None]
        for idir, parts in enumerate(dir_prim):
            for _ in range(shares[idir] - len(parts)):
                ipart = unassigned.pop()
                part_prim[ipart] = idir
                part_sec[ipart] = [s for s in part_sec[ipart] if s != idir]
        assert not unassigned
        final_prim = [p for p in part_prim if p is not None]
        assert len(final_prim) == DRIVE_NPART
        known = {d.path for d in self.data_dirs}
        for idir, d in enumerate(dirs):
            if d.path not in known and (d.read_only or d.path in non_empty):
                _add_secondary(part_sec, final_prim, idir)
        return DataLayout(dirs, tuple(final_prim), tuple(tuple(s) for s in part_sec))

    @staticmethod
    def partition(hash: Hash) -> int:
        """The drive partition of a block."""
        return int.from_bytes(hash[_HASH_DRIVE_BYTES], "big") % DRIVE_NPART

    def primary_dir(self, hash: Hash) -> Path:
        """The data directory where ``hash`` is written."""
        return Path(self.data_dirs[self.part_prim[self.partition(hash)]].path)

    def secondary_dirs(self, hash: Hash) -> list[Path]:
        """The other data directories where a copy of ``hash`` may be, in search order."""
        return [Path(self.data_dirs[i].path) for i in self.part_sec[self.partition(hash)]]

    def primary_counts(self) -> list[int]:
        """How many partitions each directory is primary for (for tests and status)."""
        counts = [0] * len(self.data_dirs)
        for p in self.part_prim:
            counts[p] += 1
        return counts


# ------------------------------------------------------------------------------ I/O


def _config_dirs(data_dirs: Sequence[DataDir]) -> list[tuple[str, int | None]]:
    if not data_dirs:
        raise DataLayoutError("no data directory configured")
    out: list[tuple[str, int | None]] = []
    for d in data_dirs:
        path = str(Path(d.path).absolute())
        if d.read_only:
            out.append((path, None))
        elif d.capacity_bytes is not None:
            if d.capacity_bytes <= 0:
                raise DataLayoutError(f"data directory {path} must have a positive capacity")
            out.append((path, d.capacity_bytes))
        elif len(data_dirs) == 1:
            out.append((path, _SINGLE_DIR_CAPACITY))
        else:
            raise DataLayoutError(
                f"data directory {path} needs a capacity or read_only = true "
                "when several data directories are configured"
            )
    if len({p for p, _ in out}) != len(out):
        raise DataLayoutError("a data directory is listed twice")
    if all(c is None for _, c in out):
        raise DataLayoutError("no writable data directory configured")
    return out


def _read_marker(path: Path) -> str | None:
    try:
        return (path / MARKER_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataLayoutError(f"cannot read {path / MARKER_FILE}: {exc}") from exc


def _has_block_subdirs(path: Path) -> bool:
    """True when ``path`` holds a two-hex-digit sub-directory (existing blocks)."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return False
    for entry in entries:
        name = entry.name
        if len(name) == 2 and entry.is_dir():
            try:
                bytes.fromhex(name)
            except ValueError:
                continue
            return True
    return False


def _new_marker() -> str:
    return secrets.token_hex(16)


def load_data_layout(
    metadata_dir: Path,
    data_dirs: Sequence[DataDir],
    *,
    new_marker: Callable[[], str] = _new_marker,
) -> DataLayout:
    """Loads (or creates) the data layout and checks every directory's marker.

    The layout stored in ``metadata_dir/data_layout`` is updated to the configured
    directories and written back if it changed. A directory new to the layout gets a
    ``garage-marker`` (an existing one is adopted; a read-only one is left as it is).

    Blocking file I/O: async callers use ``anyio.to_thread.run_sync``.

    Args:
        metadata_dir: where ``data_layout`` is kept; must exist.
        data_dirs: the ``data_dir`` configuration.
        new_marker: makes the random content of a new marker (injected for tests).

    Returns:
        The layout to use.

    Raises:
        DataLayoutError: invalid configuration; or a recorded directory's marker is missing
            or different (the wrong drive is mounted); or the layout file is unreadable.
    """
    configured = _config_dirs(data_dirs)
    layout_path = Path(metadata_dir) / DATA_LAYOUT_FILE
    old: DataLayout | None = None
    if layout_path.exists():
        try:
            old = decode_versioned(DataLayout, layout_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise DataLayoutError(f"cannot read the data layout {layout_path}: {exc}") from exc
    recorded = {d.path: d for d in old.data_dirs} if old is not None else {}

    dirs: list[LayoutDir] = []
    for path_str, capacity in configured:
        path = Path(path_str)
        found = _read_marker(path)
        prev = recorded.get(path_str)
        if prev is not None and prev.marker is not None:
            if found is None:
                raise DataLayoutError(
                    f"data directory {path} has no {MARKER_FILE} file although it was used "
                    "before: is its drive mounted? Refusing to start"
                )
            if found != prev.marker:
                raise DataLayoutError(
                    f"data directory {path}: {MARKER_FILE} does not match the recorded one: "
                    "a different drive is mounted there. Refusing to start"
                )
            marker: str | None = found
        elif found is not None:
            marker = found
        elif capacity is None:
            marker = None  # read-only: never written, not even a marker
        else:
            path.mkdir(parents=True, exist_ok=True)
            marker = new_marker()
            write_atomically(path / MARKER_FILE, marker.encode("ascii"), mode=0o644)
            logger.info("data directory %s: created %s", path, MARKER_FILE)
        dirs.append(LayoutDir(path_str, capacity, marker))

    non_empty = {d.path for d in dirs if _has_block_subdirs(Path(d.path))}
    if old is None:
        layout = DataLayout.initialize(dirs, non_empty=non_empty)
    else:
        layout = old.updated(dirs, non_empty=non_empty)
    if layout != old:
        write_atomically(layout_path, encode_versioned(layout))
        logger.info("data layout written to %s (%d directories)", layout_path, len(dirs))
    return layout
