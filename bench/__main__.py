"""Runs the ``bench/bench_*.py`` modules, prints their tables and writes the report.

``python -m bench [--quick] [--runtimes trio,asyncio] [--runtime-rounds 3]
[--geo-delay-ms 50] [--no-profile] [--output FILE] [--allow-dirty] [names...]``.
Each module's ``run(quick)`` returns rows or an :class:`~bench._report.Outcome`; every
table is printed as it comes, and the whole report (date, machine, load average, commit,
the targets with their ratios, every table, the profiles of missed targets) is written
as Markdown: to bench/results/latest.md after a full run of every module, else to
bench/results/partial.md (not committed), or where ``--output`` says.

bench/results/latest.md is committed and must say which code it measured: a run that
would write it from a tree with uncommitted changes stops before measuring anything,
unless ``--allow-dirty`` (the report then says DIRTY at the top). If the tree changes
during the run, the report goes to partial.md instead (or says so, with ``--allow-dirty``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path
from typing import Final

from bench._report import (
    LATEST,
    Outcome,
    Table,
    checkout,
    machine,
    markdown_report,
    refusal,
    render_text,
    rows_table,
)

RESULTS: Final = LATEST.parent


def _outcome(name: str, result: object) -> Outcome:
    if isinstance(result, Outcome):
        return result
    if not isinstance(result, list):
        raise TypeError(f"{name}.run returned {type(result).__name__}, not rows or an Outcome")
    return Outcome(tables=[rows_table(name, result)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer iterations, smaller sizes")
    parser.add_argument(
        "--runtimes",
        default=os.environ.get("BENCH_RUNTIMES", "trio,asyncio"),
        help="the node's runtimes to measure, comma-separated (default trio,asyncio)",
    )
    parser.add_argument(
        "--runtime-rounds",
        type=int,
        help="bench_s3: alternating trio/asyncio rounds of the one-node small-object "
        "workloads (default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--geo-delay-ms",
        type=float,
        default=float(os.environ.get("BENCH_GEO_DELAY_MS", "50")),
        help="bench_geo: one-way delay between nodes (default 50 ms: RTT 100 ms)",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy profiles of missed targets"
    )
    parser.add_argument("--output", type=Path, help="where the Markdown report goes")
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="write bench/results/latest.md from a tree with uncommitted changes (marked DIRTY)",
    )
    parser.add_argument("only", nargs="*", help="module names to run (e.g. bench_s3 bench_db)")
    args = parser.parse_args(argv)
    # The modules read their options from the environment (bench_geo's helper runs in a
    # child process, which inherits it).
    os.environ["BENCH_RUNTIMES"] = args.runtimes
    os.environ["BENCH_GEO_DELAY_MS"] = str(args.geo_delay_ms)
    if args.runtime_rounds is not None:
        if args.runtime_rounds < 1:
            parser.error("--runtime-rounds must be at least 1")
        os.environ["BENCH_RUNTIME_ROUNDS"] = str(args.runtime_rounds)
    if args.no_profile:
        os.environ["BENCH_PROFILE"] = "0"
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    unknown = set(args.only) - set(names)
    if unknown:
        parser.error(f"no such benchmark module: {', '.join(sorted(unknown))}")
    chosen = [n for n in names if not args.only or n in args.only]
    full = not args.quick and chosen == names
    output: Path = args.output or RESULTS / ("latest.md" if full else "partial.md")
    code = checkout()
    refused = refusal(output, code, allow_dirty=args.allow_dirty)
    if refused is not None:  # before measuring: a full run takes about half an hour
        print(refused, file=sys.stderr)
        return 2
    info = machine()
    print(f"load average at start: {info['load']}", flush=True)
    started = time.monotonic()
    outcomes: dict[str, Outcome] = {}
    for name in chosen:
        print(f"running {name}...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            outcome = _outcome(name, module.run(quick=args.quick))
        except Exception as exc:  # the other modules' figures are still worth a report
            traceback.print_exc()
            outcome = Outcome(failures=[f"{type(exc).__name__}: {str(exc)[:500]}"])
        outcomes[name] = outcome
        for table in outcome.tables:
            print(render_text(table), end="\n\n", flush=True)
    targets = [t for o in outcomes.values() for t in o.targets]
    if targets:
        summary = Table(
            "Targets", ("target", "measured", "goal", "verdict"), tuple(t.cells() for t in targets)
        )
        print(render_text(summary), end="\n\n")
    for name, outcome in outcomes.items():
        for failure in outcome.failures:
            print(f"FAILED {name}: {failure}")
    code_after = checkout()
    status = 1 if any(o.failures for o in outcomes.values()) else 0
    if code_after != code:
        print(f"the code changed during the run: {code_after.describe()}", file=sys.stderr)
        if not args.allow_dirty and output.resolve() == LATEST.resolve():
            output, status = RESULTS / "partial.md", 1  # latest.md would name the wrong code
    output.parent.mkdir(parents=True, exist_ok=True)
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    output.write_text(
        markdown_report(
            info,
            outcomes,
            args=argv_text,
            duration_s=time.monotonic() - started,
            load_after=load_after,
            code=code,
            code_after=code_after if code_after != code else None,
        )
    )
    print(f"report written to {output}")
    return status


if __name__ == "__main__":
    sys.exit(main())
