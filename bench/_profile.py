"""Where a server's time goes: py-spy samples of a running process, summarised.

When a target is missed, bench_s3 runs the workload again while py-spy samples the
node process (every thread, only while on CPU, ``--nonblocking`` so the node is not
paused) and keeps a few lines: the share of samples of the event-loop thread and of the
worker threads, the share of each *area* of the code (a sample counts for the deepest
frame of its stack that belongs to a known area: the HTTP server, SigV4, the tables,
sqlite...; the runtime's socket and thread work is charged to the area that asked for it,
and its total is given apart), the hottest functions by self time and the hottest Garage
functions with what they call. :func:`summarise` is pure (collapsed stacks in, lines out).

py-spy is not a project dependency: :func:`py_spy` finds it in the environment or
installs it there (``uv pip install`` or ``pip install``); without it, there is no
profile and the report says why.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AREAS", "HINTS", "Summary", "py_spy", "record", "summarise"]

#: Sampling rate: enough samples in ~10 s, and a modest cost to the sampled process.
RATE_HZ: Final = 100
#: (area, path prefixes of a frame's file); the first area that matches a frame wins.
AREAS: Final = (
    (
        "hashing (blake2, MD5, checksums)",
        ("garage_util/data.py", "garage_api/signature/_checksum", "hashlib"),
    ),
    ("SigV4 auth", ("garage_api/signature/",)),
    ("HTTP server (hypercorn, h11)", ("hypercorn/", "h11/", "garage_api/http.py")),
    ("S3 handlers", ("garage_api/",)),
    ("blocks", ("garage_model/block/", "garage_model/_block", "zstandard/")),
    ("model", ("garage_model/",)),
    ("table: Merkle", ("garage_table/_merkle", "garage_table/merkle")),
    ("tables", ("garage_table/",)),
    ("RPC: encryption", ("nacl/", "garage_rpc/net/_handshake", "garage_rpc/net/_box")),
    ("RPC", ("garage_rpc/",)),
    ("encoding (msgpack, typed)", ("garage_util/encode", "msgpack/", "typing.py")),
    ("sqlite", ("garage_util/db/", "sqlite3/")),
    ("background workers", ("garage_util/background/",)),
    ("garage_util", ("garage_util/",)),
    ("logging", ("logging/",)),
    ("runtime (trio, asyncio, anyio)", ("trio/", "asyncio/", "anyio/", "selectors.py", "sniffio/")),
    ("threads", ("threading.py", "concurrent/", "queue.py")),
)
_PLUMBING: Final = ("runtime (trio, asyncio, anyio)", "threads")
#: Leaves that are waiting, not working (py-spy's idle detection misses these waits):
#: thread-pool workers waiting for a job, and the event loop waiting in epoll.
IDLE_LEAVES: Final = (
    "WorkerThread._work (trio/_core/_thread_cache.py)",
    "EpollIOManager.get_events (trio/_core/_io_epoll.py)",
    "EpollSelector.select (selectors.py)",
    "Condition.wait (threading.py)",
    "Queue.get (queue.py)",
    "WorkerThread.run (anyio/_backends/_asyncio.py)",
    "_worker (concurrent/futures/thread.py)",
)
#: Frames that every request passes through: no information in "with callees".
ENTRY_FILES: Final = ("garage", "garage/cli.py", "garage/server.py", "garage/metrics.py")
#: The obvious next step when an area dominates a profile.
HINTS: Final = {
    "hashing (blake2, MD5, checksums)": "each byte is hashed several times (blake2 for the "
    "block's id, MD5 for the ETag, the checksum headers, blake2 again when a block is read "
    "back): hash once per block in one thread hop, and leave read-time verification to scrub",
    "SigV4 auth": "cache the derived signing key per (key, date, region) and canonicalise "
    "headers once per request",
    "HTTP server (hypercorn, h11)": "the framework itself: the ceiling bounds it; fewer ASGI "
    "send() calls per response (one body message) and a leaner HTTP/1.1 loop are the levers",
    "S3 handlers": "trim the per-request work of the handler (routing, header building, XML)",
    "blocks": "hash and compress blocks in fewer, larger thread hops; skip zstd on "
    "incompressible data sooner",
    "model": "fewer table round trips per object operation (merge the version and object "
    "writes, avoid re-reading what was just written)",
    "table: Merkle": "batch Merkle todo processing and keep it off the request path",
    "tables": "batch the rows of one request into one local transaction and one RPC per node",
    "RPC: encryption": "larger frames per encrypt call; one box per message rather than per chunk",
    "RPC": "fewer RPCs per request, and local calls that skip serialisation",
    "encoding (msgpack, typed)": "cache typed decoders and encode rows once (not once per "
    "replica, not again on a local call)",
    "sqlite": "group the statements of one request into one transaction and one thread hop",
    "background workers": "background work (resync, Merkle, GC) competes with requests: "
    "tranquilise it under load",
    "garage_util": "look at the hottest garage_util functions below",
    "logging": "no per-request logging above DEBUG; lazy %-formatting only",
    "runtime (trio, asyncio, anyio)": "fewer task switches and thread hops per request "
    "(each to_thread.run_sync is a round trip through the scheduler)",
    "threads": "fewer thread hops per request (the worker threads' own overhead shows)",
}


@dataclass(frozen=True, slots=True)
class Summary:
    """A profile, as lines for the report.

    Attributes:
        title: what was profiled.
        lines: the summary, for the report.
        top_area: the area of our code (or the server's) with the most samples.
        samples: samples on CPU (waits left out).
        areas: samples by area, most first (they add up to ``samples``).
        next_step: the next optimisation, when known better than the top area's hint.
    """

    title: str
    lines: tuple[str, ...]
    top_area: str | None
    samples: int = 0
    areas: tuple[tuple[str, int], ...] = ()
    next_step: str | None = None

    @property
    def hint(self) -> str | None:
        """The obvious next optimisation."""
        if self.next_step is not None:
            return self.next_step
        return HINTS.get(self.top_area) if self.top_area is not None else None


def _file(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``path/file.py``."""
    start = frame.rfind(" (")
    return frame[start + 2 : frame.rfind(":")] if start >= 0 else ""


def _area(frame: str) -> str | None:
    path = _file(frame)
    for area, prefixes in AREAS:
        if any(path.startswith(p) or f"/{p}" in path for p in prefixes):
            return area
    return None


def _short(frame: str) -> str:
    """Drops the line number: a function is one entry whatever line was running."""
    start = frame.rfind(" (")
    return f"{frame[:start]} ({_file(frame)})" if start >= 0 else frame


def _pct(part: int, total: int) -> str:
    return f"{100 * part / total:.0f}%"


def summarise(title: str, collapsed: str, *, top: int = 8) -> Summary:
    """Summarises py-spy's ``--format raw --threads`` output (``frames count`` lines).

    Args:
        title: what was profiled.
        collapsed: the collapsed stacks, root first, ``;``-separated, then a count.
        top: how many functions each list keeps.
    """
    total = idle = plumbing = 0
    threads: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = ""
        if frames[0].startswith("thread ("):
            thread, frames = frames[0], frames[1:]
        if not frames or _short(frames[-1]) in IDLE_LEAVES:
            idle += count
            continue
        threads["event loop" if "MainThread" in thread else "worker threads"] += count
        total += count
        leaves[_short(frames[-1])] += count
        found = [a for a in map(_area, reversed(frames)) if a is not None]
        if found and found[0] in _PLUMBING:
            plumbing += count
        # The deepest area of our code or the server's: the runtime's socket and thread
        # work is charged to whoever asked for it.
        areas[next((a for a in found if a not in _PLUMBING), found[0] if found else "other")] += (
            count
        )
        garage = {_short(f) for f in frames if _file(f).startswith("garage")}
        for name in {f for f in garage if _file(f) not in ENTRY_FILES}:
            inclusive[name] += count
    if total == 0:
        return Summary(title, ("no samples (py-spy saw the process idle)",), None)
    lines = [
        f"{total} samples on CPU at {RATE_HZ} Hz ({idle} waiting, left out): "
        + ", ".join(f"{name} {_pct(n, total)}" for name, n in threads.most_common()),
        "by area (deepest frame of a known area, runtime work charged to its caller): "
        + ", ".join(f"{name} {_pct(n, total)}" for name, n in areas.most_common(top))
        + f"; in the runtime's own code (scheduler, sockets, thread hand-offs): "
        f"{_pct(plumbing, total)}",
        "hottest functions (self): "
        + ", ".join(f"{name} {_pct(n, total)}" for name, n in leaves.most_common(top)),
        "hottest Garage functions (with callees): "
        + ", ".join(f"{name} {_pct(n, total)}" for name, n in inclusive.most_common(top)),
    ]
    known = [a for a, _ in areas.most_common() if a not in ("other", *_PLUMBING)]
    top_area = known[0] if known else None
    return Summary(title, tuple(lines), top_area, total, tuple(areas.most_common()))


def py_spy() -> tuple[str | None, str]:
    """py-spy's path (installed into this environment when missing), or why there is none."""
    beside = Path(sys.executable).parent / "py-spy"
    found = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if found is not None:
        return found, ""
    uv = shutil.which("uv")
    install = (
        [uv, "pip", "install", "--python", sys.executable, "py-spy"]
        if uv is not None
        else [sys.executable, "-m", "pip", "install", "py-spy"]
    )
    done = subprocess.run(install, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not beside.exists():
        return (
            None,
            f"py-spy is not installed and `{' '.join(install)}` failed: {done.stderr[-300:]}",
        )
    return str(beside), ""


def record(title: str, pid: int, duration_s: float, workload: Callable[[], object]) -> Summary:
    """Samples ``pid`` for ``duration_s`` while calling ``workload()`` over and over."""
    tool, reason = py_spy()
    if tool is None:
        return Summary(title, (f"no profile: {reason}",), None)
    with tempfile.TemporaryDirectory(prefix="garage-bench-profile-") as tmp:
        out = Path(tmp) / "stacks.txt"
        spy = subprocess.Popen(
            [
                tool, "record", "--pid", str(pid), "--rate", str(RATE_HZ),
                "--duration", str(round(duration_s)), "--format", "raw",
                "--output", str(out), "--threads", "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            while spy.poll() is None:
                workload()
        finally:
            if spy.poll() is None:
                spy.kill()
            _, err = spy.communicate()
        if spy.returncode != 0 or not out.exists():
            return Summary(title, (f"no profile: py-spy failed: {err.decode()[-300:]}",), None)
        return summarise(title, out.read_text())
