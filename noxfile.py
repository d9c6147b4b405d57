"""Developer sessions: ``uv run nox -s tests|lint|typecheck|bench``.

Every session runs in the uv workspace environment that ``uv run`` has just synced (with the
dev dependency group), so nox creates no virtualenvs of its own: one lock file, one set of
versions everywhere.

- ``tests``: the whole suite, slow tests included (plain ``pytest`` skips them for a fast
  edit loop). Extra arguments go to pytest: ``uv run nox -s tests -- tests/util -x``.
- ``lint``: ruff check, ruff format --check, and import-linter's layering contract.
- ``typecheck``: mypy --strict over every package, the tests, benchmarks and examples.
- ``bench``: the benchmarks, printed as tables with ratios (``-- --quick`` for a short run).
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests", "lint", "typecheck"]

#: pytest's "no tests were collected" status: a filter that selects nothing is not a failure.
PYTEST_NO_TESTS = 5


@nox.session
def tests(session: nox.Session) -> None:
    """Runs the whole test suite, slow tests included."""
    args = session.posargs or ["tests"]
    session.run(
        "python", "-m", "pytest", "-m", "slow or not slow", *args,
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
    """Runs the benchmarks and prints their tables."""
    session.run("python", "-m", "bench", *session.posargs)
