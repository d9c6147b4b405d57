"""Benchmark: the S3 API of our node, one node and a 3-node cluster, against a ceiling and a peer.

Every server runs as its own process(es) on 127.0.0.1 (see bench/_servers.py), one at a
time so that each has the machine to itself (two cores, shared with the client):

- ``ceiling trio`` / ``ceiling asyncio``: a trivial ASGI app on hypercorn, on the same
  runtime and settings as the node's S3 API: what a request costs the framework alone;
- ``garage trio`` / ``garage asyncio``: ``garage server --single-node`` on each runtime
  (``GARAGE_RUNTIME``);
- ``cluster trio`` / ``cluster asyncio``: three nodes in three zones (replication 3, write
  and read quorums of 2) on this same machine: three processes on two cores, so a
  cluster's figures say what coordination costs, not what three machines would do; the
  load is spread over the three nodes' S3 endpoints;
- ``moto``: moto's S3 server (Flask and werkzeug, threaded, objects in memory): a Python
  S3 server, the peer.

The client is bench/_loadgen.c, fed with requests built and signed up front (see
bench/_load.py): its own CPU share is in every table. Server CPU is read from
``/proc/<pid>/stat`` (all the server's processes). Workloads (bench/_workloads.py): 4 KiB
objects PUT/GET/HEAD/DELETE with 1 and 16 in flight on every server; ListObjectsV2 over
10,000 keys on one node and moto; 256 MiB objects (single request, and multipart with
8 MiB parts 4 in flight, ranged GETs) on one node, moto and the ceiling; peak RSS of each
node during 16 concurrent 256 MiB uploads on one node and on the cluster (default
runtime). The cluster gets no big-object or listing runs: three copies of every byte on
two cores would take most of the run and say little more than the one-node figures.

Targets (reported, not asserted): 4 KiB GET on one node >= 0.7 x the ceiling of the same
runtime and >= 3 x moto, 4 KiB PUT >= 0.5 x the ceiling (16 in flight, ops/s); the cluster
>= 2 x moto on PUT and GET; a 256 MiB object on one node at >= 250 MB/s PUT and >= 500
MB/s GET (single request). For each target missed, the workload runs again under py-spy
and the report says where the node's time goes (bench/_profile.py).

``BENCH_RUNTIMES`` (default ``trio,asyncio``) selects the runtimes; ``BENCH_PROFILE=0``
skips the profiles. Run it with ``uv run python -m bench bench_s3 [--quick]``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bench._cluster import start_cluster
from bench._load import Load, fire
from bench._profile import Summary, record
from bench._report import Outcome, Table, Target, ratio
from bench._servers import RUNTIMES, Server, start_ceiling, start_garage, start_moto, stop
from bench._workloads import (
    MIB,
    OPS,
    SMALL,
    BigResult,
    ListResult,
    RssResult,
    big,
    listing,
    rss,
    small_ops,
    small_requests,
    warm_up,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Sizes", "run"]


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each workload does in one run."""

    small: dict[int, int]  # requests per run, by concurrency
    list_keys: int
    list_repeat: int
    big: int
    rss: int
    profile_s: float
    profiles_per_server: int


FULL: Final = Sizes({1: 200, 16: 1000}, 10_000, 3, 256 * MIB, 256 * MIB, 12.0, 8)
QUICK: Final = Sizes({1: 24, 16: 96}, 300, 1, 16 * MIB, 8 * MIB, 3.0, 1)
#: A cluster or moto request costs several times a node's: fewer of them (the ceiling's
#: cost little: more of them, for steadier figures).
SCALE: Final = {"ceiling": 4.0, "garage": 1.0, "cluster": 0.3, "moto": 0.5}
TARGET_CONCURRENCY: Final = 16


@dataclass
class Measured:
    """Everything measured on one server."""

    server: str
    kind: str
    runtime: str | None
    small: dict[tuple[str, int], Load]
    listing: ListResult | None = None
    big: BigResult | None = None
    rss: RssResult | None = None


def _runtimes() -> tuple[str, ...]:
    chosen = tuple(r for r in os.environ.get("BENCH_RUNTIMES", ",".join(RUNTIMES)).split(",") if r)
    unknown = set(chosen) - set(RUNTIMES)
    if unknown:
        raise ValueError(f"BENCH_RUNTIMES: unknown runtimes {sorted(unknown)}")
    return chosen


def _plan(tmp: Path) -> list[tuple[str, Callable[[], Server]]]:
    """The servers in the order they run: the references first, so that a node's targets
    are known while it still runs (to profile it when one is missed)."""
    plan: list[tuple[str, Callable[[], Server]]] = [("moto", lambda: start_moto(tmp))]
    for runtime in _runtimes():
        plan.append((f"ceiling {runtime}", lambda r=runtime: start_ceiling(r, tmp)))  # type: ignore[misc]  # binds the loop's runtime
        plan.append((f"garage {runtime}", lambda r=runtime: start_garage(r, tmp)))  # type: ignore[misc]  # same
    plan += [
        (f"cluster {runtime}", lambda r=runtime: start_cluster(r, tmp)[0])  # type: ignore[misc]  # same
        for runtime in _runtimes()
    ]
    return plan


def _measure(server: Server, sizes: Sizes) -> Measured:
    scale = SCALE[server.kind]
    counts = {c: max(16, int(n * scale)) for c, n in sizes.small.items()}
    warm_up(server)
    measured = Measured(server.label, server.kind, server.runtime, small_ops(server, counts).loads)
    # The cluster's slow paths (three processes on two cores, three copies of every byte)
    # would take most of the run: it gets the small objects, and on the default runtime
    # the memory test (each node's RSS); big objects and listings are one node's figures.
    if server.kind in ("garage", "moto"):
        measured.listing = listing(server, sizes.list_keys, sizes.list_repeat)
    if server.kind != "cluster":
        measured.big = big(server, sizes.big)
    if server.kind == "garage" or (server.kind == "cluster" and server.runtime == RUNTIMES[0]):
        measured.rss = rss(server, sizes.rss)
    return measured


# ---------------------------------------------------------------- targets


def _ops(
    results: dict[str, Measured], label: str, op: str, concurrency: int = TARGET_CONCURRENCY
) -> float | None:
    found = results.get(label)
    load = found.small.get((op, concurrency)) if found else None
    return load.ops_per_s if load else None


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _targets(results: dict[str, Measured], label: str, sizes: Sizes) -> list[Target]:
    """The targets that concern ``label``, from what is measured so far."""
    m = results[label]
    rt = m.runtime
    x = TARGET_CONCURRENCY
    out: list[Target] = []
    if m.kind == "garage":
        ceiling = f"ceiling {rt}"
        for op, goal in (("GET", 0.7), ("PUT", 0.5)):
            out.append(
                Target(
                    f"4 KiB {op} x{x}: {label} / {ceiling}",
                    _div(_ops(results, label, op), _ops(results, ceiling, op)),
                    goal,
                    profile=f"{label}: 4 KiB {op} x{x}",
                )
            )
        out.append(
            Target(
                f"4 KiB GET x{x}: {label} / moto",
                _div(_ops(results, label, "GET"), _ops(results, "moto", "GET")),
                3.0,
                profile=f"{label}: 4 KiB GET x{x}",
            )
        )
        size = f"{sizes.big // MIB} MiB"
        if m.big is not None:
            for op, goal in (("PUT", 250.0), ("GET", 500.0)):
                out.append(
                    Target(
                        f"{size} {op}, one request: {label}",
                        m.big.mb_per_s(op),
                        goal,
                        unit="MB/s",
                        profile=f"{label}: {size} {op}",
                    )
                )
    if m.kind == "cluster":
        out += [
            Target(
                f"4 KiB {op} x{x}: {label} / moto",
                _div(_ops(results, label, op), _ops(results, "moto", op)),
                2.0,
                profile=f"{label}: 4 KiB {op} x{x}",
            )
            for op in ("PUT", "GET")
        ]
    return out


# ---------------------------------------------------------------- profiles


def _profile(server: Server, what: str, sizes: Sizes) -> Summary:
    """Runs the workload ``what`` (``4 KiB GET x16``, ``256 MiB PUT``...) under py-spy
    (on the first process: node 1 of a cluster)."""
    title = f"{server.label}: {what}"
    pid = server.pids[0]
    target = server.target
    batch = 200
    counter = itertools.count()
    if what.startswith("4 KiB"):
        op = what.split()[2]
        keys = [f"profile/{i:05d}" for i in range(batch)]
        bodies = [os.urandom(SMALL) for _ in keys]
        fire(target, small_requests(server, "PUT", keys, bodies), connections=16)

        def workload() -> None:
            names = keys
            if op == "PUT":
                names = [f"profile/{next(counter)}/{i:05d}" for i in range(batch)]
            fire(target, small_requests(server, op, names, bodies), connections=16)

    else:
        op = what.split()[-1]
        size = min(sizes.big, 64 * MIB)
        fire(target, [target.request("PUT", "profile/big", generated=size, seed=7)], connections=1)

        def workload() -> None:
            if op == "PUT":
                request = target.request("PUT", "profile/big", generated=size, seed=next(counter))
            else:
                request = target.request("GET", "profile/big")
            fire(target, [request], connections=1)

    summary = record(title, pid, sizes.profile_s, workload)
    if server.kind == "cluster":
        return dataclasses.replace(summary, title=f"{title} (node 1)")
    return summary


# ---------------------------------------------------------------- tables


def _small_table(results: dict[str, Measured]) -> Table:
    rows = []
    for op in OPS:
        for concurrency in sorted({c for m in results.values() for _, c in m.small}):
            for m in results.values():
                load = m.small.get((op, concurrency))
                if load is None:
                    continue
                ceiling = (
                    _ops(results, f"ceiling {m.runtime}", op, concurrency) if m.runtime else None
                )
                moto = _ops(results, "moto", op, concurrency)
                rows.append(
                    (
                        f"{op} x{concurrency}",
                        m.server,
                        load.ops_per_s,
                        load.latency_ms(0.5),
                        load.latency_ms(0.99),
                        load.server_cpu_per_op_ms,
                        load.client_share_pct,
                        ratio(load.ops_per_s, ceiling),
                        ratio(load.ops_per_s, moto),
                    )
                )
    return Table(
        "4 KiB objects: PUT, GET, HEAD, DELETE (N in flight)",
        (
            "op", "server", "ops/s", "p50 ms", "p99 ms", "server CPU ms/op",
            "client CPU %", "vs ceiling (same runtime)", "vs moto",
        ),
        tuple(rows),
        (
            "vs ceiling: our ops/s over the ceiling's for the same op and concurrency "
            "(the ceiling answers every method with an empty 200, GET with 4 KiB)",
            "server CPU: every process of the server (3 for a cluster), user + system",
            "client CPU: the load generator's share of one core over the run",
        ),
    )  # fmt: skip


def _list_table(results: dict[str, Measured], sizes: Sizes) -> Table:
    moto = results.get("moto")
    moto_list = moto.listing if moto else None
    rows = tuple(
        (
            m.server,
            m.listing.page_ms,
            m.listing.keys_per_s,
            m.listing.server_cpu_per_page_ms,
            100 * m.listing.client_cpu_s / sum(m.listing.listing_s),
            m.listing.fill_per_s,
            ratio(m.listing.keys_per_s, moto_list.keys_per_s if moto_list else None),
        )
        for m in results.values()
        if m.listing is not None
    )
    return Table(
        f"ListObjectsV2 over {sizes.list_keys:,} keys, 1,000 per page",
        (
            "server", "ms/page", "keys/s", "server CPU ms/page", "client CPU %",
            "fill: empty PUT/s x16", "vs moto",
        ),
        rows,
        (
            f"best of {sizes.list_repeat} full listings, page after page (each page needs "
            "the previous one's continuation token); client: Python's http.client",
        ),
    )  # fmt: skip


def _big_table(results: dict[str, Measured], sizes: Sizes) -> Table:
    rows = []
    for way in ("PUT", "GET", "multipart PUT", "ranged GET"):
        for m in results.values():
            if m.big is None:
                continue
            ceiling = results.get(f"ceiling {m.runtime}") if m.runtime else None
            ceiling_big = ceiling.big if ceiling else None
            load = m.big.loads[way]
            rows.append(
                (
                    way,
                    m.server,
                    m.big.mb_per_s(way),
                    load.server_cpu_s / (m.big.size / 1e9),
                    load.client_share_pct,
                    ratio(m.big.mb_per_s(way), ceiling_big.mb_per_s(way) if ceiling_big else None),
                )
            )
    size = f"{sizes.big // MIB} MiB"
    return Table(
        f"Big objects: {size}",
        ("way", "server", "MB/s", "server CPU s/GB", "client CPU %", "vs ceiling"),
        tuple(rows),
        (
            "PUT/GET: one request; multipart PUT: create, 8 MiB parts 4 in flight, complete "
            "(the ceiling: the parts' PUTs only); ranged GET: 8 MiB ranges, 4 in flight",
            "MB/s is 10^6 bytes per second; bodies are distinct, incompressible 1 MiB chunks",
        ),
    )


def _rss_table(results: dict[str, Measured], sizes: Sizes) -> Table:
    rows = []
    for m in results.values():
        if m.rss is None:
            continue
        for i, (before, peak) in enumerate(zip(m.rss.before_bytes, m.rss.peak_bytes, strict=True)):
            name = m.server if len(m.rss.peak_bytes) == 1 else f"{m.server} node {i + 1}"
            rows.append((name, before / MIB, peak / MIB, (peak - before) / MIB, m.rss.mb_per_s))
    return Table(
        f"Peak RSS during 16 concurrent uploads of {sizes.rss // MIB} MiB",
        ("server", "RSS before MiB", "peak RSS MiB", "growth MiB", "upload MB/s (all 16)"),
        tuple(rows),
        (
            f"{16 * sizes.rss // MIB} MiB in flight in total: a bounded peak shows the "
            "bodies stream through (the kernel's VmHWM, reset before the uploads)",
        ),
    )


# ---------------------------------------------------------------- run


def _one(
    label: str,
    start: Callable[[], Server],
    sizes: Sizes,
    results: dict[str, Measured],
    outcome: Outcome,
) -> None:
    """Starts one server, measures it (and profiles it where it misses a target), stops
    it. A failure is reported (with the server's logs on stderr) and the run goes on."""
    print(f"  {label} ...", file=sys.stderr, flush=True)
    try:
        server = start()
    except Exception as exc:
        outcome.failures.append(f"{label} did not start: {str(exc)[:500]}")
        traceback.print_exc()
        return
    try:
        results[label] = _measure(server, sizes)
        targets = _targets(results, label, sizes)
        outcome.targets += targets
        if os.environ.get("BENCH_PROFILE", "1") != "0":
            missed = [t.profile for t in targets if t.met is False and t.profile is not None]
            for wanted in list(dict.fromkeys(missed))[: sizes.profiles_per_server]:
                what = wanted.split(": ", 1)[1]
                outcome.profiles.append(_profile(server, what, sizes))
    except Exception as exc:
        outcome.failures.append(f"{label}: {str(exc)[:500]}")
        traceback.print_exc()
        print(server.log_tail(), file=sys.stderr)
    finally:
        stop(server)


def run(quick: bool) -> Outcome:
    """Measures every server (see the module's docstring); returns tables and targets."""
    sizes = QUICK if quick else FULL
    outcome = Outcome()
    results: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory(prefix="garage-bench-s3-") as tmp:
        for label, start in _plan(Path(tmp)):
            _one(label, start, sizes, results, outcome)
    outcome.tables = [
        _small_table(results),
        _list_table(results, sizes),
        _big_table(results, sizes),
        _rss_table(results, sizes),
    ]
    return outcome


if __name__ == "__main__":
    from bench._report import render_text

    result = run(quick="--quick" in sys.argv[1:])
    for table in result.tables:
        print(render_text(table), end="\n\n")
