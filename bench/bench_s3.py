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

The runtime decision rests on repeated runs: single runs on this shared two-core machine
flip. The one-node small-object workloads run in ``BENCH_RUNTIME_ROUNDS`` rounds (3; 1
with ``--quick``), alternating ``ceiling trio``, ``garage trio``, ``ceiling asyncio``,
``garage asyncio``, then again, each on a fresh server: the 4 KiB table shows each
server's median run, and the "Runtime: asyncio / trio" table the median and the spread
(lowest, highest) of each round's asyncio / trio ratio, for our node and for the ceiling.
The other workloads run once, in the last round.

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
(big objects of at most 64 MiB: the profile's title gives the size used) and the report
says where the node's time goes and what our code costs above the ceiling's CPU per
operation (bench/_profile.py).

``BENCH_RUNTIMES`` (default ``trio,asyncio``) selects the runtimes; ``BENCH_PROFILE=0``
skips the profiles; ``BENCH_RUNTIME_ROUNDS`` sets the rounds (``--runtime-rounds``). Run
it with ``uv run python -m bench bench_s3 [--quick]``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import statistics
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench._cluster import start_cluster
from bench._load import Load, fire
from bench._profile import Summary, explain, record
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

__all__ = ["PROFILE_BIG", "Sizes", "run"]


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
#: cost little: more of them, for steadier figures; the median of the rounds steadies
#: them too, so twice a node's is enough).
SCALE: Final = {"ceiling": 2.0, "garage": 1.0, "cluster": 0.3, "moto": 0.5}
TARGET_CONCURRENCY: Final = 16
#: Rounds of the one-node small-object runs (trio, asyncio, trio, asyncio...): the median
#: of three resists one disturbed run; each round costs about a minute.
ROUNDS: Final = 3
ROUNDS_QUICK: Final = 1
#: The largest big object profiled: long enough for a steady profile, short enough to
#: repeat within it (the title of the profile says the size used).
PROFILE_BIG: Final = 64 * MIB


SmallLoads = dict[tuple[str, int], Load]


@dataclass
class Measured:
    """Everything measured on one server (``small``: the median run of each workload over
    the rounds in ``runs``, by round number)."""

    server: str
    kind: str
    runtime: str | None
    small: SmallLoads = field(default_factory=dict)
    runs: dict[int, SmallLoads] = field(default_factory=dict)
    listing: ListResult | None = None
    big: BigResult | None = None
    rss: RssResult | None = None

    def add_run(self, round_: int, loads: SmallLoads) -> None:
        self.runs[round_] = loads
        self.small = {
            key: _median_run([run[key] for run in self.runs.values() if key in run])
            for key in dict.fromkeys(k for run in self.runs.values() for k in run)
        }


def _median_run(loads: list[Load]) -> Load:
    """The run with the median ops/s (the lower middle one of an even count)."""
    ordered = sorted(loads, key=lambda load: load.ops_per_s)
    return ordered[(len(ordered) - 1) // 2]


@dataclass(frozen=True, slots=True)
class Step:
    """One server to start and measure: ``round_`` of ``rounds`` (its other workloads and
    its profiles run in the last one)."""

    label: str
    start: Callable[[], Server]
    round_: int = 1
    rounds: int = 1

    @property
    def last(self) -> bool:
        return self.round_ == self.rounds


def _runtimes() -> tuple[str, ...]:
    chosen = tuple(r for r in os.environ.get("BENCH_RUNTIMES", ",".join(RUNTIMES)).split(",") if r)
    unknown = set(chosen) - set(RUNTIMES)
    if unknown:
        raise ValueError(f"BENCH_RUNTIMES: unknown runtimes {sorted(unknown)}")
    return chosen


def _rounds(quick: bool) -> int:
    text = os.environ.get("BENCH_RUNTIME_ROUNDS", "")
    if not text:
        return ROUNDS_QUICK if quick else ROUNDS
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"BENCH_RUNTIME_ROUNDS: {text!r} is not a count of rounds")
    return int(text)


def _cluster(runtime: str, tmp: Path) -> Server:
    return start_cluster(runtime, tmp)[0]


def _plan(tmp: Path, rounds: int) -> list[Step]:
    """The servers in the order they run: the references first, so that a node's targets
    are known while it still runs (to profile it when one is missed); the one-node runs
    in alternating rounds, each round on fresh servers (data directories of its own)."""
    plan = [Step("moto", functools.partial(start_moto, tmp))]
    for round_ in range(1, rounds + 1):
        here = tmp / f"round-{round_}"
        here.mkdir()
        for runtime in _runtimes():
            for kind, start in (("ceiling", start_ceiling), ("garage", start_garage)):
                run = functools.partial(start, runtime, here)
                plan.append(Step(f"{kind} {runtime}", run, round_, rounds))
    plan += [
        Step(f"cluster {runtime}", functools.partial(_cluster, runtime, tmp))
        for runtime in _runtimes()
    ]
    return plan


def _measure(server: Server, sizes: Sizes, step: Step, measured: Measured | None) -> Measured:
    """The small-object run of this round; on the last round, the other workloads too."""
    scale = SCALE[server.kind]
    counts = {c: max(16, int(n * scale)) for c, n in sizes.small.items()}
    warm_up(server)
    if measured is None:
        measured = Measured(server.label, server.kind, server.runtime)
    measured.add_run(step.round_, small_ops(server, counts).loads)
    if not step.last:
        return measured
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
        profiled = f"{min(sizes.big, PROFILE_BIG) // MIB} MiB"
        if m.big is not None:
            for op, goal in (("PUT", 250.0), ("GET", 500.0)):
                out.append(
                    Target(
                        f"{size} {op}, one request: {label}",
                        m.big.mb_per_s(op),
                        goal,
                        unit="MB/s",
                        profile=f"{label}: {profiled} {op}",
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


def _costs(
    results: dict[str, Measured], label: str, what: str
) -> tuple[float, float | None, str] | None:
    """The measured server CPU of workload ``what`` on ``label`` and on the ceiling of the
    same runtime: (node, ceiling, unit); None when the workload was not measured."""
    m = results.get(label)
    ceiling = results.get(f"ceiling {m.runtime}") if m is not None else None
    if m is None:
        return None
    if what.startswith("4 KiB"):
        key = (what.split()[2], int(what.split()[3].removeprefix("x")))
        node = m.small.get(key)
        other = ceiling.small.get(key) if ceiling is not None else None
        if node is None:
            return None
        return (
            node.server_cpu_per_op_ms,
            other.server_cpu_per_op_ms if other is not None else None,
            "ms/op",
        )
    op = what.split()[-1]
    if m.big is None:
        return None
    ceiling_big = ceiling.big if ceiling is not None else None
    return (
        m.big.server_cpu_s_per_gb(op),
        ceiling_big.server_cpu_s_per_gb(op) if ceiling_big is not None else None,
        "s/GB",
    )


def _profile(server: Server, what: str, sizes: Sizes, results: dict[str, Measured]) -> Summary:
    """Runs the workload ``what`` (``4 KiB GET x16``, ``64 MiB PUT``...: the size is the one
    profiled) under py-spy (on the first process: node 1 of a cluster), and sets the
    profile against the measured CPU of the node and of the ceiling (:func:`explain`)."""
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
        size_text, _, op = what.split()
        size = int(size_text) * MIB
        fire(target, [target.request("PUT", "profile/big", generated=size, seed=7)], connections=1)

        def workload() -> None:
            if op == "PUT":
                request = target.request("PUT", "profile/big", generated=size, seed=next(counter))
            else:
                request = target.request("GET", "profile/big")
            fire(target, [request], connections=1)

    summary = record(title, pid, sizes.profile_s, workload)
    if not what.startswith("4 KiB") and size < sizes.big:
        note = (
            f"profiled with {size // MIB} MiB objects (the table's are {sizes.big // MIB} "
            "MiB: the same path, repeated within the profile)"
        )
        summary = dataclasses.replace(summary, lines=(note, *summary.lines))
    costs = _costs(results, server.label, what)
    if costs is not None:
        node, ceiling, unit = costs
        who = "the cluster's 3 processes" if server.kind == "cluster" else "the node"
        summary = explain(summary, node_cost=node, ceiling_cost=ceiling, unit=unit, node=who)
    if server.kind == "cluster":
        return dataclasses.replace(summary, title=f"{title} (node 1)")
    return summary


# ---------------------------------------------------------------- tables


def _small_table(results: dict[str, Measured], rounds: int) -> Table:
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
            f"one node and ceiling: the median run (by ops/s) of {rounds} round(s) (see the "
            "runtime table); moto and the clusters: one run",
        ),
    )  # fmt: skip


def _runtime_table(results: dict[str, Measured]) -> Table | None:
    """Each one-node small-object workload's asyncio / trio ratio over the rounds."""
    rows = []
    verdicts: dict[str, list[str]] = {}
    for kind in ("garage", "ceiling"):
        trio, aio = results.get(f"{kind} trio"), results.get(f"{kind} asyncio")
        if trio is None or aio is None:
            continue
        keys = list(dict.fromkeys(k for run in trio.runs.values() for k in run))
        for op, concurrency in sorted(keys, key=lambda k: (OPS.index(k[0]), k[1])):
            pairs = [
                (trio.runs[r][op, concurrency], aio.runs[r][op, concurrency])
                for r in sorted(set(trio.runs) & set(aio.runs))
                if (op, concurrency) in trio.runs[r] and (op, concurrency) in aio.runs[r]
            ]
            if not pairs:
                continue
            ratios = [a.ops_per_s / t.ops_per_s for t, a in pairs]
            cpu = [
                a.server_cpu_per_op_ms / t.server_cpu_per_op_ms
                for t, a in pairs
                if t.server_cpu_per_op_ms > 0
            ]
            if len(pairs) == 1:
                verdict = "one run"
            elif min(ratios) > 1:
                verdict = "asyncio"
            elif max(ratios) < 1:
                verdict = "trio"
            else:
                verdict = "neither"
            verdicts.setdefault(kind, []).append(verdict)
            rows.append(
                (
                    f"{op} x{concurrency}",
                    kind,
                    str(len(pairs)),
                    statistics.median(t.ops_per_s for t, _ in pairs),
                    statistics.median(a.ops_per_s for _, a in pairs),
                    f"{statistics.median(ratios):.2f}x",
                    f"{min(ratios):.2f}x-{max(ratios):.2f}x" if len(pairs) > 1 else "-",
                    f"{statistics.median(cpu):.2f}x" if cpu else "-",
                    verdict,
                )
            )
    if not rows:
        return None
    tally = [
        f"{kind}: faster on asyncio in every round for {v.count('asyncio')} of {len(v)} "
        f"workloads, on trio for {v.count('trio')}, neither for {v.count('neither')}"
        for kind, v in verdicts.items()
        if "one run" not in v
    ]
    return Table(
        "Runtime: asyncio / trio (one node, 4 KiB objects)",
        (
            "op", "server", "rounds", "trio ops/s", "asyncio ops/s", "asyncio / trio",
            "spread (min-max)", "CPU/op asyncio / trio", "faster in every round",
        ),
        tuple(rows),
        (
            "rounds alternate trio and asyncio (trio, asyncio, trio, asyncio...), each on a "
            "fresh server; each round's ratio compares two runs minutes apart at most",
            "asyncio / trio: the median of the rounds' ops/s ratios; spread: the lowest and "
            "highest of them; ops/s: the medians; CPU/op: server CPU per op (below 1: "
            "asyncio is cheaper)",
            "ceiling: the same comparison for the trivial hypercorn app (what the runtime "
            "does for the framework alone)",
            *tally,
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
                    m.big.server_cpu_s_per_gb(way),
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


def _one(step: Step, sizes: Sizes, results: dict[str, Measured], outcome: Outcome) -> None:
    """Starts one server, measures it (on its last round: all of it, profiled where it
    misses a target), stops it. A failure is reported (with the server's logs on stderr)
    and the run goes on."""
    label = step.label
    rounds = f" (round {step.round_} of {step.rounds})" if step.rounds > 1 else ""
    print(f"  {label}{rounds} ...", file=sys.stderr, flush=True)
    try:
        server = step.start()
    except Exception as exc:
        outcome.failures.append(f"{label}{rounds} did not start: {str(exc)[:500]}")
        traceback.print_exc()
        return
    try:
        results[label] = _measure(server, sizes, step, results.get(label))
        if not step.last:
            return
        targets = _targets(results, label, sizes)
        outcome.targets += targets
        if os.environ.get("BENCH_PROFILE", "1") != "0":
            missed = [t.profile for t in targets if t.met is False and t.profile is not None]
            for wanted in list(dict.fromkeys(missed))[: sizes.profiles_per_server]:
                what = wanted.split(": ", 1)[1]
                outcome.profiles.append(_profile(server, what, sizes, results))
    except Exception as exc:
        outcome.failures.append(f"{label}{rounds}: {str(exc)[:500]}")
        traceback.print_exc()
        print(server.log_tail(), file=sys.stderr)
    finally:
        stop(server)


def run(quick: bool) -> Outcome:
    """Measures every server (see the module's docstring); returns tables and targets."""
    sizes = QUICK if quick else FULL
    rounds = _rounds(quick)
    outcome = Outcome()
    results: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory(prefix="garage-bench-s3-") as tmp:
        for step in _plan(Path(tmp), rounds):
            _one(step, sizes, results, outcome)
    runtime = _runtime_table(results)
    outcome.tables = [
        _small_table(results, rounds),
        *([runtime] if runtime is not None else []),
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
