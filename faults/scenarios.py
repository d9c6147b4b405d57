"""Scenarios and one run of a scenario, end to end (fault-testing.md §3.3 final phase, §3.4).

Theory of operation
-------------------
A :class:`Scenario` names the nemeses that run together and what the cluster needs (more
nodes for layout changes, tmpfs for disk full). :func:`run_scenario` does one run:

1. start the cluster (:class:`faults.harness.Cluster`) and its workload;
2. **fault phase**: the client processes and the nemeses run together for ``time_limit_s``;
3. **heal**: stop the clients, undo every fault (restart killed nodes, resume paused ones,
   flush the partition table, reset clocks, free the disks), restart any node that died on
   its own (recorded: a crash is a finding), and wait until every node sees every other;
   block-damaging scenarios then start a block repair and a scrub on every node;
4. **final reads**: a final-phase marker op brackets a settle wait (10 s) and reads of every
   key and prefix through every node, each retried until it answers (30 s deadline);
5. **convergence**: the replicas are read (:mod:`faults._convergence`) until their Merkle
   roots and referenced blocks agree, within 120 s; the time it took is reported. They are
   judged while the nodes run, at the first moment they agree: table and block GC keep
   changing them, so a snapshot after an arbitrary stop could catch a GC half-way;
6. stop the nodes, judge the history (:func:`faults.checkers.check_history`) and keep it as
   JSONL when the run was not valid.

A run whose nemeses never took effect is *vacuous* (Garage's d7ab2c63): it proves nothing,
so it never counts as valid.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio

from faults._convergence import wait_converged
from faults._known import explain
from faults.checkers import Anomaly, Context, check_history
from faults.harness import REGION, Cluster, ClusterSpec, HarnessError
from faults.history import FAIL, FINAL, NEMESIS_PROCESS, OK, History, Op
from faults.nemesis import FaultBudget, Nemesis, make_nemesis
from faults.workloads import Workload, WorkloadConfig

if TYPE_CHECKING:
    from faults.harness import NodeProc, Tools

__all__ = [
    "CI_SCENARIOS",
    "MODES",
    "SCENARIOS",
    "RunConfig",
    "RunResult",
    "Scenario",
    "run_scenario",
]

logger = logging.getLogger(__name__)

#: The consistency modes a run may use (``consistency_mode`` of the nodes).
MODES: Final = ("consistent", "degraded", "dangerous")
#: Run statuses besides the checker's valid/invalid/unknown.
VACUOUS: Final = "vacuous"
ERROR: Final = "error"
#: How long healed nodes may take to see each other again.
_REJOIN_TIMEOUT_S: Final = 90.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """A combination of nemeses and what the cluster needs for them.

    Attributes:
        name: the scenario's name (``clock+kill+partition``).
        nemeses: the nemeses that run together.
        min_nodes: the least number of nodes (layout changes need spare nodes).
        storage_nodes: storage nodes in the first layout (None: all, at most 5).
        tmpfs: the directory each node gets on tmpfs (``data``/``meta``), or "".
        repair: start a block repair and a scrub after healing (damaged blocks).
        workload: the client mix, if not the default.
    """

    name: str
    nemeses: tuple[str, ...]
    min_nodes: int = 3
    storage_nodes: int | None = None
    tmpfs: str = ""
    repair: bool = False
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)


# Layout changes need nodes beyond the 3 replicas: 4 in quick runs, 5 in the full matrix
# (then 3 storage nodes and 2 spares, as Garage's Jepsen r nemesis picks 3 of 7).
_LAYOUT = {"min_nodes": 4, "storage_nodes": 3}
# Disk-full runs keep multipart uploads out: 10 MiB each would fill the tmpfs by themselves.
_NO_MPU = WorkloadConfig(multipart=0)


def _scenarios() -> dict[str, Scenario]:
    found = [
        Scenario("kill", ("kill",)),
        Scenario("pause", ("pause",)),
        Scenario("partition", ("partition",)),
        Scenario("clock", ("clock",)),
        Scenario("layout", ("layout",), **_LAYOUT),  # type: ignore[arg-type]
        Scenario("disk-full", ("disk-full",), tmpfs="data", workload=_NO_MPU),
        Scenario("disk-full-meta", ("disk-full-meta",), tmpfs="meta", workload=_NO_MPU),
        Scenario("corruption", ("corruption",), repair=True),
        Scenario("clock+kill+partition", ("clock", "kill", "partition")),
        Scenario("partition+layout", ("partition", "layout"), **_LAYOUT),  # type: ignore[arg-type]
        Scenario("kill+pause", ("kill", "pause")),
        Scenario("kill+corruption", ("kill", "corruption"), repair=True),
        Scenario("disk-full+partition", ("disk-full", "partition"), tmpfs="data", workload=_NO_MPU),
        Scenario("layout+corruption", ("layout", "corruption"), repair=True, **_LAYOUT),  # type: ignore[arg-type]
    ]
    return {s.name: s for s in found}


#: Every scenario by name.
SCENARIOS: Final = _scenarios()
#: The scenarios CI runs once each (the issue's list).
CI_SCENARIOS: Final = (
    "kill", "pause", "partition", "clock", "layout", "disk-full", "corruption",
    "clock+kill+partition", "partition+layout",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunConfig:
    """How a run goes.

    Attributes:
        nodes: node processes (3 quick, 5 full); a scenario may need more.
        mode: the nodes' consistency mode.
        mutation: ``GARAGE_TEST_MUTATION`` of the nodes ("" for the real build).
        time_limit_s: length of the fault phase.
        settle_s: wait between healing and the final reads.
        final_deadline_s: how long the final reads may take.
        convergence_timeout_s: how long the replicas may take to agree.
        seed: the run's random seed (nemeses and clients).
        workdir: where the histories of runs that were not valid are kept.
        nodes_dir: where node directories go (metadata, data, logs).
        keep_nodes: keep the node directories after the run.
        clock: how skewed nodes read their clock: ``hook`` or ``faketime``
            (:mod:`faults._clockskew`).
    """

    nodes: int = 3
    mode: str = "consistent"
    mutation: str = ""
    time_limit_s: float = 30.0
    settle_s: float = 10.0
    final_deadline_s: float = 30.0
    convergence_timeout_s: float = 120.0
    seed: int = 0
    workdir: Path = Path("faults/results")
    nodes_dir: Path = Path("/tmp/garage-faults")
    keep_nodes: bool = False
    clock: str = "hook"


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of one run, for the report (JSON-friendly).

    Attributes:
        scenario: the scenario's name.
        mode: the consistency mode.
        mutation: the mutation switch ("" for none).
        seed: the run's seed.
        nodes: how many nodes ran.
        status: valid, invalid, unknown, vacuous (no nemesis took effect) or error.
        reason: one sentence on why.
        anomalies: anomaly kind -> count (allowed findings included).
        ops: client op outcome -> count.
        ops_by_f: ``f`` -> outcome -> count.
        nemesis: nemesis name -> evidence that it fired.
        nemesis_events: how many nemesis events the history holds.
        convergence_s: time from heal to converged replicas; None if they did not.
        duration_s: the whole run.
        history: the JSONL history file, kept when the run was not valid.
        details: the first anomalies, with the nemesis events around them.
        known_issues: the known bugs (:mod:`faults._known`) some anomalies are instances of.
        unexplained: how many anomalies no known issue explains.
    """

    scenario: str
    mode: str
    mutation: str
    seed: int
    nodes: int
    status: str
    reason: str
    anomalies: dict[str, int] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    ops_by_f: dict[str, dict[str, int]] = field(default_factory=dict)
    nemesis: dict[str, str] = field(default_factory=dict)
    nemesis_events: int = 0
    convergence_s: float | None = None
    duration_s: float = 0.0
    history: str | None = None
    details: list[str] = field(default_factory=list)
    known_issues: list[str] = field(default_factory=list)
    unexplained: int = 0


async def run_scenario(scenario: Scenario, config: RunConfig, tools: Tools) -> RunResult:
    """Runs ``scenario`` once (module docstring); never raises for a failed run."""
    start = time.monotonic()
    nodes = max(config.nodes, scenario.min_nodes)
    spec = ClusterSpec(
        nodes=nodes,
        storage_nodes=scenario.storage_nodes,
        consistency_mode=config.mode,
        mutation=config.mutation,
        tmpfs=scenario.tmpfs,
        clock=config.clock if "clock" in scenario.nemeses else "",
    )
    tag = f"{scenario.name}-{config.mode}{'-' + config.mutation if config.mutation else ''}"
    root = config.nodes_dir / f"{tag}-{config.seed}"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    base = RunResult(scenario.name, config.mode, config.mutation, config.seed, nodes, ERROR, "")
    cluster = Cluster(root, spec, tools)
    history = History()
    result = base
    try:
        await cluster.start()
        logger.info(
            "%s: cluster of %d nodes formed in %.0f s", tag, nodes, time.monotonic() - start
        )
        result = await _run(scenario, config, cluster, history, base)
    except HarnessError as exc:
        result = replace(base, reason=f"harness: {exc}")
    finally:
        with anyio.CancelScope(shield=True):
            await cluster.stop()
        cluster.kill_all()
    result = replace(result, duration_s=round(time.monotonic() - start, 1))
    if result.status != "valid":
        config.workdir.mkdir(parents=True, exist_ok=True)
        path = config.workdir / f"{tag}-{config.seed}.jsonl"
        history.to_jsonl(path)
        result = replace(result, history=str(path))
    if not config.keep_nodes:
        shutil.rmtree(root, ignore_errors=True)
    return result


async def _run(
    scenario: Scenario, config: RunConfig, cluster: Cluster, history: History, base: RunResult
) -> RunResult:
    rng = random.Random(f"{scenario.name}/{config.seed}")
    budget = FaultBudget(limit=1)  # a minority of RF 3
    try:
        nemeses = [make_nemesis(n, cluster, history, rng, budget) for n in scenario.nemeses]
    except ValueError as exc:
        return replace(base, status="skipped", reason=str(exc))
    workload = Workload(
        [n.endpoint for n in cluster.nodes],
        cluster.key_id,
        cluster.secret,
        cluster.bucket,
        REGION,
        history,
        replace(scenario.workload, seed=config.seed),
    )
    logger.info("%s: fault phase (%s s)", scenario.name, config.time_limit_s)
    with anyio.move_on_after(config.time_limit_s):
        async with anyio.create_task_group() as tg:
            tg.start_soon(workload.run)
            for nemesis in nemeses:
                tg.start_soon(nemesis.run)
    with anyio.CancelScope(shield=True):
        found = await _heal(cluster, nemeses, history)
    healed_ns = time.monotonic_ns()
    logger.info("%s: healed; every node sees the others", scenario.name)
    if scenario.repair:
        await _repair_blocks(cluster)
    logger.info("%s: final reads", scenario.name)
    t0 = time.monotonic_ns()
    await anyio.sleep(config.settle_s)
    # Through every node of the layout (a node removed from it serves nothing).
    members = [n.index - 1 for n in cluster.nodes if n.index in cluster.members]
    complete = await workload.final_reads(members, deadline_s=config.final_deadline_s)
    marker = Op(NEMESIS_PROCESS, FINAL, "", None, OK if complete else FAIL, t0, time.monotonic_ns())
    history.append(marker)
    logger.info("%s: final reads %s", scenario.name, "done" if complete else "INCOMPLETE")
    converged_ns, state = await wait_converged(cluster, timeout_s=config.convergence_timeout_s)
    converged_s = None if converged_ns is None else round((converged_ns - healed_ns) / 1e9, 1)
    logger.info(
        "%s: replicas %s",
        scenario.name,
        f"converged in {converged_s} s" if converged_s is not None else "did NOT converge",
    )
    found += [] if converged_ns is not None else state.anomalies()
    verdict = check_history(history, convergence=found)
    known, unexplained = explain(verdict.anomalies, history.ops)
    fired = {n.name: n.evidence() for n in nemeses}
    status, reason = verdict.status, verdict.reason
    if verdict.status == "valid" and any(n.fired == 0 for n in nemeses):
        idle = [n.name for n in nemeses if n.fired == 0]
        status, reason = VACUOUS, f"nemesis never took effect: {', '.join(idle)}"
    ops: dict[str, int] = {}
    by_f: dict[str, dict[str, int]] = {}
    for (f, outcome), n in verdict.counts.items():
        if f in ("nemesis", FINAL):
            continue
        ops[outcome] = ops.get(outcome, 0) + n
        by_f.setdefault(f, {})[outcome] = n
    return replace(
        base,
        status=status,
        reason=reason,
        anomalies=verdict.kinds(),
        ops=ops,
        ops_by_f=by_f,
        nemesis=fired,
        nemesis_events=len(history.nemesis_events()),
        convergence_s=converged_s,
        details=_details(verdict.contexts, verdict.anomalies),
        known_issues=known,
        unexplained=unexplained,
    )


def _details(contexts: tuple[Context, ...], anomalies: tuple[Anomaly, ...]) -> list[str]:
    """The first anomalies as report lines, with the nemesis events around each."""
    out = []
    for ctx in contexts[:10]:
        a = ctx.anomaly
        line = f"{a.kind}: {a.detail}"
        if a.op is not None:
            line += f" [op p{a.op.process} {a.op.f} {a.op.key} -> {a.op.value}]"
        if ctx.nemesis:
            events = ", ".join(f"{e.key}:{e.value}" for e in ctx.nemesis[-4:])
            line += f" (nemesis around: {events})"
        out.append(line)
    if not out:
        out = [f"{a.kind}: {a.detail}" for a in anomalies[:10]]
    return out


async def _heal(cluster: Cluster, nemeses: list[Nemesis], history: History) -> list[Anomaly]:
    """Undoes every fault and waits until the nodes see each other; crashes found."""
    t0 = time.monotonic_ns()
    for nemesis in nemeses:
        await nemesis.heal()
    found: list[Anomaly] = []
    for node in cluster.nodes:
        if not node.running:  # not killed by a nemesis (those are restarted): a crash
            detail = f"{node.name} exited on its own during the run (see {node.log})"
            found.append(Anomaly("node-crashed", None, detail))
            node.start()
    for node in cluster.nodes:
        await node.wait_listening()
    with anyio.move_on_after(_REJOIN_TIMEOUT_S) as scope:
        for node in cluster.nodes:
            # Polling: failure detection inside the nodes has no notification outside.
            while not await _sees_all(cluster, node):  # noqa: ASYNC110
                await anyio.sleep(0.5)
    if scope.cancelled_caught:
        detail = f"nodes still apart {_REJOIN_TIMEOUT_S} s after heal"
        found.append(Anomaly("no-rejoin", None, detail))
    history.append(Op(NEMESIS_PROCESS, "nemesis", "heal", "healed", OK, t0, time.monotonic_ns()))
    return found


async def _sees_all(cluster: Cluster, node: NodeProc) -> bool:
    done = await cluster.cli(node, "--json", "status")
    if done.returncode != 0:
        return False
    status = json.loads(done.stdout)
    return sum(bool(n["is_up"]) for n in status["nodes"]) == len(cluster.nodes)


async def _repair_blocks(cluster: Cluster) -> None:
    """Starts a full block resync and a scrub (no tranquility) on every node."""
    first = cluster.nodes[0]
    for args in (
        ("repair", "-a", "--yes", "scrub", "set-tranquility", "0"),
        ("repair", "-a", "--yes", "blocks"),
        ("repair", "-a", "--yes", "scrub", "start"),
    ):
        done = await cluster.cli(first, *args)
        if done.returncode != 0:
            logger.warning("garage %s: %s", " ".join(args), done.stderr.strip())
