"""Developer sessions: ``uv run nox -s tests|lint|typecheck|bench|faults_ci|faults``.

Every session runs in the uv workspace environment that ``uv run`` has just synced (with the
dev dependency group), so nox creates no virtualenvs of its own: one lock file, one set of
versions everywhere.

- ``tests``: the whole suite, slow tests included (plain ``pytest`` skips them for a fast
  edit loop). Extra arguments go to pytest: ``uv run nox -s tests -- tests/util -x``.
- ``lint``: ruff check, ruff format --check, and import-linter's layering contract.
- ``typecheck``: mypy --strict over every package, the tests, benchmarks and examples.
- ``bench``: the benchmarks, printed as tables with ratios (``-- --quick`` for a short run).
- ``faults_ci``: every fault scenario once on a 3-node cluster (about 13 minutes; CI runs it
  after the suite); ``faults``: the full fault matrix (hours).
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests", "lint", "typecheck"]

#: pytest's "no tests were collected" status: a filter that selects nothing is not a failure.
PYTEST_NO_TESTS = 5


@nox.session
def tests(session: nox.Session) -> None:
    """Runs the whole test suite, slow tests included (the fault runs are ``faults_ci``)."""
    args = session.posargs or ["tests"]
    session.run(
        "python", "-m", "pytest", "-m", "(slow or not slow) and not faults", *args,
        success_codes=[0, PYTEST_NO_TESTS],
    )  # fmt: skip


@nox.session
def faults_ci(session: nox.Session) -> None:
    """Runs every fault scenario once, short (tests/faults, about 13 minutes): CI's run."""
    session.run(
        "python", "-m", "pytest", "-m", "faults", "tests/faults", *session.posargs,
        success_codes=[0, PYTEST_NO_TESTS],
    )  # fmt: skip


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint and format) and the import-linter layering contract."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over packages, tests, benchmarks, the fault harness, examples and this file."""
    session.run("mypy", "packages", "tests", "bench", "faults", "examples", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Runs the benchmarks: prints their tables and writes bench/results/latest.md.

    It starts what it measures (our node on trio and asyncio, alone and as a 3-node
    cluster, moto's S3 server, the hypercorn ceiling, a 3-zone cluster behind delaying
    relays in a private network namespace). Arguments go to ``python -m bench``:
    ``-- --quick`` for a short run, ``-- bench_s3 bench_geo`` for some modules,
    ``-- --runtimes trio``, ``-- --geo-delay-ms 50``, ``-- --no-profile``,
    ``-- --runtime-rounds 3`` (alternating trio/asyncio rounds), ``-- --allow-dirty`` (write
    latest.md from a tree with uncommitted changes, marked DIRTY).
    """
    session.run("python", "-m", "bench", *session.posargs)


@nox.session
def faults(session: nox.Session) -> None:
    """The full fault matrix (issue 11): writes faults/results/latest.md.

    Every scenario in ``consistent`` mode on 5 nodes (10 runs of 60 s of faults each), a
    few in ``degraded`` and ``dangerous`` mode, and the mutation checks, in a private
    network namespace (root or user namespaces; skipped otherwise). That takes hours:
    split it with ``-- --scenario kill --scenario pause``, or shorten it with
    ``-- --runs 2 --time-limit 30``. Histories of runs that were not valid are kept as
    JSONL in faults/results/.
    """
    session.run(
        "python", "-m", "faults", "--matrix", "--report", "faults/results/latest.md",
        "--json", "faults/results/latest.json", "--nodes", "5", "--runs", "10",
        "--time-limit", "60", *session.posargs,
    )  # fmt: skip
