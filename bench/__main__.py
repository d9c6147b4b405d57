"""Runs every ``bench/bench_*.py`` module and prints one table per module."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

Row = tuple[str, str, float, str]


def format_table(title: str, rows: list[Row]) -> str:
    """Formats rows as a text table; ratio = value / first value of the same benchmark."""
    first: dict[str, float] = {}
    lines = [f"== {title}", f"{'benchmark':<34} {'variant':<16} {'value':>14} {'unit':<10} ratio"]
    for bench, variant, value, unit in rows:
        base = first.setdefault(bench, value)
        ratio = f"{value / base:5.2f}x" if base else "  n/a"
        lines.append(f"{bench:<34} {variant:<16} {value:>14,.1f} {unit:<10} {ratio}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("only", nargs="*", help="module names to run (e.g. bench_db)")
    args = parser.parse_args(argv)
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    for name in names:
        if args.only and name not in args.only:
            continue
        module = importlib.import_module(f"bench.{name}")
        rows: list[Row] = module.run(quick=args.quick)
        print(format_table(name, rows), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
