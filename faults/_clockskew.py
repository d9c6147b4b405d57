"""Wall-clock skew inside a node process, driven by a file (the libfaketime alternative).

The clock nemesis shifts a node's wall clock by rewriting a per-node file holding an offset
in libfaketime's syntax (``+12.345s``, ``-3s``). A node reads it one of two ways:

- under libfaketime (``LD_PRELOAD``, ``FAKETIME_TIMESTAMP_FILE``,
  ``FAKETIME_DONT_FAKE_MONOTONIC=1``), as fault-testing.md §3.1 verified; or
- with :func:`install`, which the node launcher calls before importing Garage: it wraps
  ``time.time`` and ``time.time_ns`` to add the file's offset (re-read when the file
  changes, checked at most every 5 ms). Garage in Python reads the wall clock only through
  ``time.time_ns`` (``garage_util.clock.now_msec`` and the background runner), so the
  node sees exactly the skew libfaketime would give it, and ``time.monotonic`` (trio's
  timeouts) is untouched.

Why two: libfaketime intercepts ``pthread_cond_timedwait``, which CPython's GIL hand-offs
go through, and on this machine that made an idle 3-node cluster burn ~35% of a core per
node (10x the CPU without it), leaving the 2 shared cores no room for the workload.
:func:`install` is the default; ``python -m faults --clock faketime`` uses libfaketime.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["install", "parse_offset_ns"]

#: How often the file's identity (inode, mtime) is checked; rewrites are atomic renames.
_CHECK_NS: Final = 5_000_000
_OFFSET: Final = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)s?\s*$")


def parse_offset_ns(text: str) -> int:
    """The offset of a libfaketime relative spec (``+1.5s``) in ns; 0 if it is not one."""
    m = _OFFSET.match(text)
    return 0 if m is None else round(float(m.group(1)) * 1e9)


@final
class _Offset:
    """The file's offset, re-read when the file changed (checked every 5 ms at most)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._offset_ns = 0
        self._checked_ns = -_CHECK_NS
        self._ident = (0, 0)

    def ns(self) -> int:
        now = time.monotonic_ns()
        if now - self._checked_ns < _CHECK_NS:
            return self._offset_ns
        with self._lock:
            self._checked_ns = now
            try:
                st = os.stat(self._path)
                ident = (st.st_ino, st.st_mtime_ns)
                if ident != self._ident:
                    self._offset_ns = parse_offset_ns(self._path.read_text())
                    self._ident = ident
            except OSError:
                pass  # keep the last offset: the file is being replaced
            return self._offset_ns


def install(path: Path) -> None:
    """Makes ``time.time``/``time.time_ns`` of this process follow the offset in ``path``."""
    real_time_ns = time.time_ns
    offset = _Offset(path)

    def time_ns() -> int:
        return real_time_ns() + offset.ns()

    def time_s() -> float:
        return time_ns() / 1e9

    time.time_ns = time_ns
    time.time = time_s
