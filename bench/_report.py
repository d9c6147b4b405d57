"""What the benchmarks return and how the runner shows it: tables, targets, profiles.

A benchmark module's ``run(quick)`` returns either a list of :data:`Row`
``(benchmark, variant, value, unit)`` (shown as one table, each row with its ratio to the
first variant of its benchmark) or an :class:`Outcome`: its own tables, the
:class:`Target` figures it can judge, and the profile summaries of missed targets.

The runner prints every table as text and writes the whole report as Markdown (the date,
the machine, the load average, the commit, a summary table of every target with its
ratio, then the tables and profiles): :func:`render_text`, :func:`render_markdown`,
:func:`markdown_report`.

The committed report (bench/results/latest.md) must say which code it measured: the
commit, from a clean tree (:func:`checkout`, :func:`refusal`). A run from a tree with
uncommitted changes writes it only when asked to, and then says "dirty" at the top.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bench._profile import Summary, number

__all__ = [
    "LATEST",
    "Cell",
    "Checkout",
    "Outcome",
    "Row",
    "Table",
    "Target",
    "checkout",
    "fmt",
    "machine",
    "markdown_report",
    "ratio",
    "refusal",
    "render_markdown",
    "render_text",
    "rows_table",
]

Row = tuple[str, str, float, str]
Cell = str | float | int | None
ROOT: Final = Path(__file__).resolve().parent.parent
#: The committed report of a full run.
LATEST: Final = ROOT / "bench" / "results" / "latest.md"
#: Changes under this folder are reports, not code: they leave the tree clean.
_REPORTS: Final = "bench/results/"


def fmt(cell: Cell) -> str:
    """A cell as text: numbers with about three significant digits."""
    if cell is None:
        return "-"
    if isinstance(cell, str):
        return cell
    value = float(cell)
    if value == 0:
        return "0"
    return number(value)


def ratio(numerator: float | None, denominator: float | None) -> str:
    """``a / b`` as ``0.45x`` (``-`` when either is missing)."""
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}x"


@dataclass(frozen=True, slots=True)
class Table:
    """A titled table; ``notes`` are printed under it."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Target:
    """A figure to report against a goal (never an assertion).

    Attributes:
        name: what is compared ("4 KiB GET x16: garage / ceiling, trio").
        measured: the figure (``None``: not measured in this run).
        goal: the figure to reach.
        at_most: the goal is a maximum (latency) rather than a minimum.
        unit: ``x`` for ratios, ``MB/s``, ``RTT``...
        profile: the title of the profile that says where the time goes.
    """

    name: str
    measured: float | None
    goal: float
    at_most: bool = False
    unit: str = "x"
    profile: str | None = None

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured <= self.goal if self.at_most else self.measured >= self.goal

    def cells(self) -> tuple[Cell, ...]:
        sign = "<=" if self.at_most else ">="
        verdict = {True: "met", False: "MISSED", None: "not measured"}[self.met]
        measured = "-" if self.measured is None else f"{fmt(self.measured)} {self.unit}"
        return (self.name, measured, f"{sign} {fmt(self.goal)} {self.unit}", verdict)


@dataclass
class Outcome:
    """What a benchmark module found."""

    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    profiles: list[Summary] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def rows_table(title: str, rows: list[Row]) -> Table:
    """Rows as a table, with each row's ratio to its benchmark's first variant."""
    first: dict[str, float] = {}
    cells = []
    for bench, variant, value, unit in rows:
        base = first.setdefault(bench, value)
        cells.append((bench, variant, value, unit, ratio(value, base)))
    return Table(title, ("benchmark", "variant", "value", "unit", "ratio"), tuple(cells))


def render_text(table: Table) -> str:
    """The table as aligned text, for the terminal."""
    grid = [list(table.columns), *([fmt(c) for c in row] for row in table.rows)]
    widths = [max(len(r[i]) for r in grid) for i in range(len(table.columns))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 or not _numeric(c) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [f"== {table.title}", line(grid[0]), *(line(r) for r in grid[1:])]
    out += [f"   {note}" for note in table.notes]
    return "\n".join(out)


def _numeric(text: str) -> bool:
    """Whether a cell is a figure (right-aligned): ``1,234``, ``0.45x``, ``-``."""
    try:
        float(text.replace(",", "").removesuffix("x"))
    except ValueError:
        return text == "-"
    return True


def render_markdown(table: Table, level: int = 3) -> str:
    """The table as Markdown (a heading, the table, its notes)."""
    out = [f"{'#' * level} {table.title}", ""]
    out.append("| " + " | ".join(table.columns) + " |")
    out.append("|" + "|".join("---" for _ in table.columns) + "|")
    out += ["| " + " | ".join(fmt(c).replace("|", "/") for c in row) + " |" for row in table.rows]
    if table.notes:
        out.append("")
        out += [f"- {note}" for note in table.notes]
    return "\n".join(out)


def _run(*argv: str, cwd: Path = ROOT) -> str | None:
    """A command's output; None when it cannot run or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass(frozen=True, slots=True)
class Checkout:
    """The code a run measures.

    Attributes:
        commit: the checked-out commit (None: not a git checkout, or no git).
        dirty: the paths with uncommitted changes, untracked ones included (reports under
            bench/results/ left out).
    """

    commit: str | None
    dirty: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return self.commit is not None and not self.dirty

    def describe(self, most: int = 8) -> str:
        """``<hash>``, or ``<hash> + uncommitted changes to a, b...``."""
        if self.commit is None:
            return "unknown (not a git checkout)"
        if not self.dirty:
            return self.commit
        listed = ", ".join(self.dirty[:most]) + (", ..." if len(self.dirty) > most else "")
        files = f"{len(self.dirty)} file{'' if len(self.dirty) == 1 else 's'}"
        return f"{self.commit} + uncommitted changes to {files} ({listed})"


def checkout(root: Path = ROOT) -> Checkout:
    """The commit of the git checkout at ``root`` and its uncommitted changes."""
    head = _run("git", "rev-parse", "HEAD", cwd=root)
    status = _run("git", "status", "--porcelain", "--untracked-files=normal", cwd=root)
    if head is None or status is None:
        return Checkout(None)
    paths = (line[3:] for line in status.splitlines() if len(line) > 3)
    return Checkout(head.strip(), tuple(p for p in paths if not p.startswith(_REPORTS)))


def refusal(output: Path, state: Checkout, *, allow_dirty: bool) -> str | None:
    """Why the report may not be written to ``output`` (None: it may).

    Only :data:`LATEST`, the committed report, is guarded: it must name the code it
    measured, so it is written from a clean checkout unless ``allow_dirty``.
    """
    if allow_dirty or state.clean or output.resolve() != LATEST.resolve():
        return None
    if state.commit is None:
        why = "this is not a git checkout: the report could not say which code it measured"
    else:
        why = f"the tree has uncommitted changes ({state.describe()})"
    return (
        f"refusing to write {LATEST.relative_to(ROOT)}: {why}. Commit first, pass --output "
        "elsewhere, or pass --allow-dirty (the report then says DIRTY at the top)"
    )


def machine() -> dict[str, str]:
    """Where and when: date, kernel, CPU, cores, memory, Python, load average."""
    cpu = "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = models[0] if models else "?"
    mem = "?"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kib = int(meminfo.read_text().split()[1])
        mem = f"{total_kib / 2**20:.1f} GiB"
    uname = (_run("uname", "-a") or "?").strip() if os.name == "posix" else ""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "uname": uname or " ".join(platform.uname()),
        "cpu": f"{cpu}, {os.cpu_count()} cores, {mem}",
        "python": sys.version.split()[0],
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def markdown_report(
    info: dict[str, str],
    outcomes: dict[str, Outcome],
    *,
    args: str,
    duration_s: float,
    load_after: str,
    code: Checkout,
    code_after: Checkout | None = None,
) -> str:
    """The whole report, as bench/results/latest.md holds it.

    Args:
        info: :func:`machine` at the start.
        outcomes: each module's, in the order they ran.
        args: the runner's arguments.
        duration_s: how long the run took.
        load_after: the load average at the end.
        code: the checkout at the start.
        code_after: the checkout at the end, when it differs (the code changed meanwhile).
    """
    out = ["# Benchmarks of Garage in Python", ""]
    if not code.clean or (code_after is not None and code_after != code):
        out += [
            "> **DIRTY**: measured from a tree that is not a clean commit: "
            f"{code.describe()}"
            + (f"; at the end: {code_after.describe()}" if code_after not in (None, code) else "")
            + ". These figures may not match any commit.",
            "",
        ]
    out += [
        f"- date: {info['date']} (`python -m bench {args}`, {duration_s / 60:.1f} min)",
        f"- machine: `{info['uname']}`; {info['cpu']}",
        f"- Python {info['python']}; commit `{code.commit or 'unknown'}`"
        + ("" if code.clean else " (DIRTY: see above)"),
        f"- load average at start: {info['load']}; at the end: {load_after} "
        "(servers and client share the same cores: on a busy machine every figure "
        "is pessimistic)",
        "",
    ]
    targets = [t for o in outcomes.values() for t in o.targets]
    if targets:
        summary = Table(
            "Targets (reported, not asserted)",
            ("target", "measured", "goal", "verdict"),
            tuple(t.cells() for t in targets),
        )
        out += [render_markdown(summary, 2), ""]
    for name, outcome in outcomes.items():
        out += [f"## {name}", ""]
        out += [f"- FAILED: {failure}" for failure in outcome.failures]
        if outcome.failures:
            out.append("")
        for table in outcome.tables:
            markdown = render_markdown(table)
            if table.title == name:  # a module's only table: its heading says it already
                markdown = markdown.split("\n", 2)[2]
            out += [markdown, ""]
        for profile in outcome.profiles:
            out += [f"### Profile: {profile.title}", ""]
            out += [f"- {line}" for line in profile.lines]
            if profile.hint is not None:
                area = f" ({profile.top_area})" if profile.next_step is None else ""
                out.append(f"- next optimisation{area}: {profile.hint}")
            out.append("")
    return "\n".join(out).rstrip() + "\n"
