"""The fault-run report: per scenario, runs, verdicts, anomalies, ops, convergence time.

:func:`render_markdown` turns :class:`~faults.scenarios.RunResult` records into the
Markdown of ``faults/results/latest.md`` (``nox -s faults``); :func:`results_to_json` and
:func:`results_from_json` keep them as JSON (``python -m faults --json``), which the tests
read. Pure except for :func:`write_report`.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from faults._known import KNOWN_ISSUES
from faults.scenarios import RunResult

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

__all__ = ["render_markdown", "results_from_json", "results_to_json", "write_report"]

#: Verdict columns, in the order shown.
_STATUSES = ("valid", "invalid", "unknown", "vacuous", "error", "skipped")


def results_to_json(results: Iterable[RunResult]) -> str:
    """The results as a JSON array."""
    return json.dumps([dataclasses.asdict(r) for r in results], indent=1, sort_keys=True)


def results_from_json(text: str) -> list[RunResult]:
    """Reads what :func:`results_to_json` wrote."""
    return [RunResult(**obj) for obj in json.loads(text)]


def _convergence(results: Sequence[RunResult]) -> str:
    times = [r.convergence_s for r in results if r.convergence_s is not None]
    missing = sum(1 for r in results if r.convergence_s is None and r.status != "error")
    if not times:
        return "never" if missing else "-"
    text = f"{min(times):.0f} / {statistics.median(times):.0f} / {max(times):.0f} s"
    return text + (f" ({missing} never)" if missing else "")


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counter.items())) or "none"


def render_markdown(results: Sequence[RunResult], *, title: str = "Fault runs") -> str:
    """The report: a summary table per (scenario, mode, mutation), then every non-valid run.

    Convergence times are min / median / max from heal to equal replicas.
    """
    groups: dict[tuple[str, str, str], list[RunResult]] = defaultdict(list)
    for r in results:
        groups[r.scenario, r.mode, r.mutation].append(r)
    lines = [
        f"# {title}",
        "",
        "| scenario | mode | mutation | runs | verdicts | anomalies | ops ok / fail / info "
        "| convergence (min / median / max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (scenario, mode, mutation), runs in sorted(groups.items()):
        verdicts = Counter(r.status for r in runs)
        shown = ", ".join(f"{s} {verdicts[s]}" for s in _STATUSES if verdicts[s])
        anomalies: Counter[str] = Counter()
        ops: Counter[str] = Counter()
        for r in runs:
            anomalies.update(r.anomalies)
            ops.update(r.ops)
        lines.append(
            f"| {scenario} | {mode} | {mutation or '-'} | {len(runs)} | {shown} "
            f"| {_counts(anomalies)} | {ops['ok']} / {ops['fail']} / {ops['info']} "
            f"| {_convergence(runs)} |"
        )
    total = Counter(r.status for r in results)
    decided = total["valid"] + total["invalid"]
    rate = 100.0 * decided / len(results) if results else 0.0
    lines += ["", f"Verdict rate (valid or invalid): {decided}/{len(results)} ({rate:.0f}%)."]
    mutated = [(k, runs) for k, runs in sorted(groups.items()) if k[2]]
    if mutated:
        lines += ["", "## Mutation checks", ""]
    for (scenario, _, mutation), runs in mutated:
        caught = next((i for i, r in enumerate(runs, start=1) if r.unexplained), None)
        verdict = f"caught in run {caught}" if caught else f"NOT caught in {len(runs)} runs"
        lines.append(f"- `{mutation}` on {scenario}: {verdict}.")
    notable = [r for r in results if r.status != "valid"]
    if notable:
        lines += ["", "## Runs that were not valid", ""]
    for r in notable:
        known = f" Known issues: {', '.join(r.known_issues)}." if r.known_issues else ""
        if r.known_issues and not r.unexplained:
            known += " (no other anomaly)"
        lines.append(
            f"- **{r.scenario}** ({r.mode}{', ' + r.mutation if r.mutation else ''}, "
            f"seed {r.seed}): {r.status}: {r.reason}.{known}"
            + (f" History: `{r.history}`." if r.history else "")
        )
        lines += [f"  - {d}" for d in r.details[:5]]
        lines += [f"  - nemesis {n}: {e}" for n, e in sorted(r.nemesis.items())]
    return "\n".join(lines + _known_section(results)) + "\n"


def _known_section(results: Sequence[RunResult]) -> list[str]:
    names = sorted({k for r in results for k in r.known_issues})
    if not names:
        return []
    lines = ["", "## Known issues (bugs found, not fixed yet)", ""]
    for name in names:
        runs = sum(1 for r in results if name in r.known_issues)
        lines.append(f"- `{name}` ({runs} runs): {KNOWN_ISSUES[name]}")
    return lines


def write_report(results: Sequence[RunResult], path: Path, **kwargs: Any) -> None:
    """Writes :func:`render_markdown` to ``path`` (creating its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(results, **kwargs), encoding="utf-8")
