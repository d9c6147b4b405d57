"""``python -m faults``: run fault scenarios against a real cluster and report.

Usage::

    python -m faults [--nodes 3|5] [--scenario NAME ...] [--runs N] [--time-limit S]
                     [--mode consistent|degraded|dangerous] [--mutation NAME]
                     [--report PATH] [--json PATH] [--seed N] [--workdir DIR]
                     [--clock hook|faketime] [--keep-nodes]
    python -m faults --matrix [--nodes 5] [--runs 10] [--time-limit 60] [--report PATH]
    python -m faults --probe NAME|all --json PATH  (nemesis effects: see faults/_probes.py)

``--matrix`` is the full matrix of ``nox -s faults``: every scenario (or those given) in
``consistent`` mode, a few in ``degraded`` and ``dangerous`` mode (a fifth of the runs:
their anomalies are expected and reported), and each mutation check (the mutated build
run until the checker catches it, at most 10 runs).

The runner re-executes itself inside private network and mount namespaces (``unshare``),
then runs each scenario ``--runs`` times and writes the Markdown report (``--report``) and
the results as JSON (``--json``). Histories of runs that were not valid are kept as JSONL
under ``--workdir``.

Exit status: 0 when the runs say what they should (``consistent``: every run valid;
``degraded``/``dangerous``: every run reached a verdict, anomalies are reported, not
failures; ``--mutation``: the checker caught the mutated build with an anomaly that no
known issue (faults/_known.py) explains, stopping at that run); 1 otherwise; 77 when
this machine cannot run it (reason on stderr).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from faults._probes import PROBES, run_probe
from faults.harness import Tools, enter_namespace, in_namespace, reexec_in_namespace
from faults.report import results_to_json, write_report
from faults.scenarios import CI_SCENARIOS, MODES, SCENARIOS, RunConfig, run_scenario

if TYPE_CHECKING:
    from faults.scenarios import RunResult

#: The mutation switches the nodes understand (GARAGE_TEST_MUTATION), with the scenario
#: that exercises each (fault-testing.md §3.4: Garage's pre-fix builds failed c and r).
MUTATIONS = {"no-ts-bump": "clock", "single-layout-write": "layout"}
#: A mutated build must be caught within this many runs.
MUTATION_RUNS = 10
#: The scenarios the matrix also runs in the weaker consistency modes.
WEAK_MODE_SCENARIOS = ("partition", "kill+pause", "clock+kill+partition")


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell of the matrix: a scenario in a mode (and mutation), run up to ``runs`` times
    (a mutation cell stops at the first invalid run)."""

    scenario: str
    mode: str
    mutation: str
    runs: int


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m faults", description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=3, help="node processes (3 quick, 5 full)")
    p.add_argument(
        "--scenario", action="append", choices=sorted(SCENARIOS), help="default: the CI list"
    )
    p.add_argument("--runs", type=int, default=1, help="runs per scenario")
    p.add_argument("--time-limit", type=float, default=30.0, help="fault phase, seconds")
    p.add_argument("--mode", choices=MODES, default="consistent")
    p.add_argument("--mutation", choices=sorted(MUTATIONS), default="")
    p.add_argument("--matrix", action="store_true", help="the full matrix (nox -s faults)")
    p.add_argument("--report", type=Path, help="write the Markdown report here")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    p.add_argument("--seed", type=int, default=0, help="seed of the first run")
    p.add_argument(
        "--workdir", type=Path, default=Path("faults/results"), help="kept histories go here"
    )
    p.add_argument(
        "--keep-nodes", action="store_true", help="keep node directories (in --workdir/nodes)"
    )
    p.add_argument(
        "--clock", choices=("hook", "faketime"), default="hook", help="how clocks are skewed"
    )
    p.add_argument(
        "--probe", choices=(*PROBES, "all"), help="fire one nemesis (or all) and record its effect"
    )
    return p


def _cells(args: argparse.Namespace) -> list[Cell]:
    if not args.matrix:
        names = args.scenario or CI_SCENARIOS
        return [Cell(n, args.mode, args.mutation, args.runs) for n in names]
    names = args.scenario or sorted(SCENARIOS)
    cells = [Cell(n, "consistent", "", args.runs) for n in names]
    weak_runs = max(1, args.runs // 5)
    for mode in ("degraded", "dangerous"):
        cells += [Cell(n, mode, "", weak_runs) for n in WEAK_MODE_SCENARIOS if n in names]
    cells += [Cell(s, "consistent", m, MUTATION_RUNS) for m, s in MUTATIONS.items() if s in names]
    return cells


def _success(cells: list[Cell], results: list[RunResult]) -> bool:
    for cell in cells:
        mine = [
            r
            for r in results
            if (r.scenario, r.mode, r.mutation) == (cell.scenario, cell.mode, cell.mutation)
        ]
        if cell.mutation:
            ok = any(r.unexplained > 0 for r in mine)  # caught, beyond the known issues
        elif cell.mode == "consistent":
            ok = all(r.status in ("valid", "skipped") for r in mine)
        else:  # weaker modes: anomalies are expected; the runs must reach a verdict
            ok = all(r.status in ("valid", "invalid", "skipped") for r in mine)
        if not ok:
            return False
    return True


async def _matrix(args: argparse.Namespace, cells: list[Cell], tools: Tools) -> list[RunResult]:
    results: list[RunResult] = []
    # Node directories are scratch (hundreds of MB): a temporary directory unless kept.
    scratch = None if args.keep_nodes else tempfile.TemporaryDirectory(prefix="garage-faults-")
    nodes_dir = args.workdir.absolute() / "nodes" if scratch is None else Path(scratch.name)
    try:
        await _run_cells(args, cells, tools, nodes_dir, results)
    finally:
        if scratch is not None:
            scratch.cleanup()
    return results


async def _run_cells(
    args: argparse.Namespace,
    cells: list[Cell],
    tools: Tools,
    nodes_dir: Path,
    results: list[RunResult],
) -> None:
    for cell in cells:
        name = cell.scenario
        for run in range(cell.runs):
            config = RunConfig(
                nodes=args.nodes,
                mode=cell.mode,
                mutation=cell.mutation,
                time_limit_s=args.time_limit,
                seed=args.seed + run,
                workdir=args.workdir.absolute(),
                nodes_dir=nodes_dir,
                keep_nodes=args.keep_nodes,
                clock=args.clock,
            )
            result = await run_scenario(SCENARIOS[name], config, tools)
            results.append(result)
            logging.getLogger("faults").info(
                "%s run %d: %s (%s)", name, run + 1, result.status, result.reason
            )
            if args.json is not None:
                args.json.write_text(results_to_json(results))
            if cell.mutation and result.unexplained > 0:
                break  # caught (beyond known issues): this mutation check is done


def main(argv: list[str] | None = None) -> int:
    """Entry point; the exit status (module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if not in_namespace():
        return reexec_in_namespace(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    # The CLI runs in-process: its libraries' INFO lines (connections) would drown the run's.
    for noisy in ("httpx", "garage", "garage_rpc", "garage_util", "garage_table"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    enter_namespace()
    tools = Tools.find()
    if args.probe:
        if args.json is None:
            print("faults: --probe needs --json PATH", file=sys.stderr)
            return 2
        probe = (args.probe, args.json.absolute(), args.workdir.absolute(), tools)
        status: int = anyio.run(run_probe, *probe, backend="trio")
        return status
    cells = _cells(args)
    if args.json is not None:  # written after every run, so a long matrix keeps its results
        args.json.parent.mkdir(parents=True, exist_ok=True)
    results = anyio.run(_matrix, args, cells, tools, backend="trio")
    if args.report is not None:
        write_report(results, args.report)
    for r in results:
        print(f"{r.scenario} [{r.mode}{' ' + r.mutation if r.mutation else ''}]: {r.status}")
    return 0 if _success(cells, results) else 1


if __name__ == "__main__":
    sys.exit(main())
