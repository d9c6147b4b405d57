"""Where a server's time goes: py-spy samples of a running process, summarised.

When a target is missed, bench_s3 runs the workload again while py-spy samples the
node process (every thread, only while on CPU, ``--nonblocking`` so the node is not
paused) and keeps a few lines: the share of samples of the event-loop thread and of the
worker threads, the share of each *area* of the code (a sample counts for the deepest
frame of its stack that belongs to a known area: the HTTP server, our ASGI adapter,
SigV4, the tables, sqlite...; the runtime's socket and thread work is charged to the area
that asked for it, and its total is given apart; a worker thread busy in the runtime's
code alone is handing a result back: that is charged to our thread hops, which the
ceiling never makes), the hottest functions by self time and
the hottest Garage functions with what they call. :func:`summarise` is pure (collapsed
stacks in, lines out).

:func:`explain` turns a summary into a next step from the data rather than from a fixed
hint per area: the node's CPU per operation against the ceiling's for the same workload
(the ceiling is hypercorn and the runtime alone, so the difference is our code's), our
areas in the same unit with the framework's share (which the ceiling pays as well) left
out, and the biggest of them, with its hottest functions and the usual lever.

py-spy is in the project's dev dependency group (``uv sync`` installs it beside the
interpreter); without it, there is no profile and the report says why.
"""

from __future__ import annotations

import dataclasses
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

__all__ = [
    "ADAPTER",
    "AREAS",
    "FRAMEWORK",
    "HINTS",
    "HTTP_SERVER",
    "RUNTIME",
    "THREADS",
    "Summary",
    "explain",
    "number",
    "py_spy",
    "record",
    "summarise",
]

#: Sampling rate: enough samples in ~10 s, and a modest cost to the sampled process.
RATE_HZ: Final = 100
HTTP_SERVER: Final = "HTTP server (hypercorn, h11)"
#: garage_api/http.py: turning ASGI messages into our Request and Response and back. It is
#: ours (the ceiling has no such layer), so it is not counted as the framework.
ADAPTER: Final = "our ASGI adapter (garage_api/http.py)"
RUNTIME: Final = "runtime (trio, asyncio, anyio)"
#: Worker threads doing nothing of ours (handing a result back to the loop, thread-pool
#: bookkeeping): the cost of our to_thread hops, which the ceiling never makes.
THREADS: Final = "threads (hand-offs to and from worker threads)"
#: (area, path prefixes of a frame's file); the first area that matches a frame wins.
AREAS: Final = (
    (
        "hashing (blake2, MD5, checksums)",
        ("garage_util/data.py", "garage_api/signature/_checksum", "hashlib"),
    ),
    ("SigV4 auth", ("garage_api/signature/",)),
    (ADAPTER, ("garage_api/http.py",)),
    (HTTP_SERVER, ("hypercorn/", "h11/")),
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
    (RUNTIME, ("trio/", "asyncio/", "anyio/", "selectors.py", "sniffio/")),
    (THREADS, ("threading.py", "concurrent/", "queue.py")),
)
#: Functions of garage_api/http.py that are hypercorn's own loop (its TCPServer, subclassed
#: there to free closed connections): the framework's work, not the adapter's.
_FRAMEWORK_FUNCTIONS: Final = ("TCPServer.",)
_PLUMBING: Final = (RUNTIME, THREADS)
#: What the ceiling (hypercorn and the runtime, no application) pays as well.
FRAMEWORK: Final = (HTTP_SERVER, RUNTIME)
#: A node within this factor of the ceiling's CPU per operation is bound by the framework.
FRAMEWORK_BOUND: Final = 1.25
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
    HTTP_SERVER: "the framework itself: fewer ASGI send() calls per response (one body "
    "message) and a leaner HTTP/1.1 loop are the levers",
    ADAPTER: "build less per request: decode only the headers the handler reads, encode the "
    "response headers once, send a small body in one message, and skip draining a request "
    "body that was read or is empty",
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
    RUNTIME: "fewer task switches and thread hops per request "
    "(each to_thread.run_sync is a round trip through the scheduler)",
    THREADS: "fewer thread hops per request (the worker threads' own overhead shows)",
}


@dataclass(frozen=True, slots=True)
class Summary:
    """A profile, as lines for the report.

    Attributes:
        title: what was profiled.
        lines: the summary, for the report.
        top_area: the biggest area of our code: the framework and runtime (which the ceiling
            pays as well), the worker threads' plumbing and unknown code left out.
        samples: samples on CPU (waits left out).
        areas: samples by area, most first (they add up to ``samples``).
        next_step: the next optimisation, when known better than the top area's hint.
        charged: samples by (area, the deepest frame of that area in the stack), most first:
            where inside an area its samples were taken.
        functions: samples by Garage function with its callees (inclusive), most first.
    """

    title: str
    lines: tuple[str, ...]
    top_area: str | None
    samples: int = 0
    areas: tuple[tuple[str, int], ...] = ()
    next_step: str | None = None
    charged: tuple[tuple[tuple[str, str], int], ...] = ()
    functions: tuple[tuple[str, int], ...] = ()

    @property
    def hint(self) -> str | None:
        """The obvious next optimisation."""
        if self.next_step is not None:
            return self.next_step
        return HINTS.get(self.top_area) if self.top_area is not None else None


def _file(frame: str) -> str:
    """``func (path/file.py:12)`` or ``func (path/file.py)`` -> ``path/file.py``."""
    start = frame.rfind(" (")
    if start < 0:
        return ""
    inner = frame[start + 2 :].removesuffix(")")
    path, colon, line = inner.rpartition(":")
    return path if colon and line.isdigit() else inner


def _area(frame: str) -> str | None:
    path = _file(frame)
    if path.endswith("garage_api/http.py"):
        function = frame[: frame.rfind(" (")]
        if any(name in function for name in _FRAMEWORK_FUNCTIONS):
            return HTTP_SERVER
    for area, prefixes in AREAS:
        if any(path.startswith(p) or f"/{p}" in path for p in prefixes):
            return area
    return None


def _short(frame: str) -> str:
    """Drops the line number: a function is one entry whatever line was running."""
    start = frame.rfind(" (")
    return f"{frame[:start]} ({_file(frame)})" if start >= 0 else frame


def _pct(part: float, total: float) -> str:
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
    charged: Counter[tuple[str, str]] = Counter()
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
        loop = "MainThread" in thread
        threads["event loop" if loop else "worker threads"] += count
        total += count
        leaves[_short(frames[-1])] += count
        found = [(a, f) for f, a in ((f, _area(f)) for f in reversed(frames)) if a is not None]
        if found and found[0][0] in _PLUMBING:
            plumbing += count
        # The deepest area of our code or the server's: the runtime's socket and thread
        # work is charged to whoever asked for it.
        area, frame = next(
            ((a, f) for a, f in found if a not in _PLUMBING),
            found[0] if found else ("other", frames[-1]),
        )
        if area == RUNTIME and not loop:  # a worker thread in the runtime's code only
            area = THREADS
        areas[area] += count
        charged[area, _short(frame)] += count
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
    ours = [a for a, _ in areas.most_common() if a not in ("other", *_PLUMBING, *FRAMEWORK)]
    return Summary(
        title,
        tuple(lines),
        ours[0] if ours else None,
        total,
        tuple(areas.most_common()),
        charged=tuple(charged.most_common()),
        functions=tuple(inclusive.most_common()),
    )


def number(value: float) -> str:
    """About three significant digits, never in exponent form."""
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def explain(
    summary: Summary,
    *,
    node_cost: float,
    ceiling_cost: float | None,
    unit: str,
    node: str = "the node",
    top: int = 4,
) -> Summary:
    """Adds what the measured costs say to a profile, and the next step they point to.

    The ceiling is the framework and the runtime alone, so ``node_cost - ceiling_cost`` is
    what our code adds. The profile's shares turn the node's cost into a cost per area; the
    framework's areas (hypercorn, h11, the runtime's own loop) are set apart, since the
    ceiling pays them too, and the biggest remaining area is the next step, with the
    functions its samples were taken in and the usual lever for it (:data:`HINTS`).

    Args:
        summary: the profile of the node running the workload.
        node_cost: the node's server CPU per unit of work in the measured run.
        ceiling_cost: the ceiling's for the same workload and runtime (None: not measured).
        unit: the unit of both (``ms/op``, ``s/GB``).
        node: how to name what ``node_cost`` covers ("the cluster's 3 processes").
        top: how many areas and functions to name.
    """
    total = summary.samples
    if total == 0:
        return summary

    def cost(samples: int) -> str:
        return f"{number(node_cost * samples / total)} {unit}"

    lines = []
    framework = sum(n for a, n in summary.areas if a in FRAMEWORK)
    if ceiling_cost:
        excess = node_cost - ceiling_cost
        above = node_cost * framework / total - ceiling_cost
        lines.append(
            f"server CPU: {node} {number(node_cost)} {unit}, the ceiling {number(ceiling_cost)} "
            f"{unit} (same runtime and workload: the framework's floor), so "
            f"{number(excess)} {unit} ({_pct(max(excess, 0.0), node_cost)}) is our code's; "
            f"the framework and runtime take {cost(framework)} here "
            f"({_pct(framework, total)} of the samples)"
            + (
                f", {number(above)} {unit} more than the whole ceiling (the task switches and "
                "socket calls our code adds)"
                if above > 0.1 * ceiling_cost
                else ""
            )
        )
    else:
        lines.append(f"server CPU: {node} {number(node_cost)} {unit} (no ceiling measured)")
    ours = [(a, n) for a, n in summary.areas if a not in FRAMEWORK]
    lines.append(
        "our areas (framework and runtime left out): "
        + ", ".join(f"{a} {cost(n)} ({_pct(n, total)})" for a, n in ours[: top + 2])
    )
    area = summary.top_area
    if ceiling_cost and node_cost <= FRAMEWORK_BOUND * ceiling_cost:
        step = (
            f"{node} costs {node_cost / ceiling_cost:.2f}x the ceiling: the framework bounds "
            f"it; {HINTS[HTTP_SERVER]}"
        )
    elif area is None:
        step = "no area of our code stands out: see the hottest functions above"
    else:
        samples = dict(summary.areas)[area]
        where = [
            f"{f} {_pct(n, total)}"
            for (a, f), n in summary.charged
            if a == area and 200 * n >= total  # 1% or more, rounded
        ][:top]
        share = ""
        if ceiling_cost and node_cost > ceiling_cost:
            excess = node_cost - ceiling_cost
            share = f", {_pct(node_cost * samples / total, excess)} of our excess"
        sampled = f", sampled in {', '.join(where)}" if where else ""
        step = (
            f"{area}, the biggest of our areas ({cost(samples)}{share}){sampled}: "
            f"{HINTS.get(area, 'look at its hottest functions above')}"
        )
    return dataclasses.replace(summary, lines=summary.lines + tuple(lines), next_step=step)


def py_spy() -> tuple[str | None, str]:
    """py-spy's path (a dev dependency: beside the interpreter), or why there is none."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is not None:
        return found, ""
    return None, (
        "py-spy is not installed: it is in the dev dependency group (`uv sync` installs it "
        f"beside {sys.executable})"
    )


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
