"""The benchmark report: what it says about where and on which code it was measured.

The runner (``python -m bench``) is run for real on a cheap module and its Markdown file
read back; the committed report's guard (no bench/results/latest.md from a tree with
uncommitted changes) is checked against real git checkouts made here.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import bench.__main__ as runner
from bench._report import LATEST, ROOT, Checkout, checkout, markdown_report, refusal

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_report_names_the_date_the_machine_the_commit_and_its_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner passes its options on through the environment: restore it afterwards.
    for name in ("BENCH_RUNTIMES", "BENCH_GEO_DELAY_MS", "BENCH_PROFILE", "BENCH_RUNTIME_ROUNDS"):
        monkeypatch.delenv(name, raising=False)
    output = tmp_path / "report.md"
    before = checkout()
    status = runner.main(["--quick", "--no-profile", "--output", str(output), "bench_layout"])
    after = checkout()
    assert status == 0
    text = output.read_text()
    head = _git(ROOT, "rev-parse", "HEAD")
    assert text.startswith("# Benchmarks of Garage in Python\n")
    assert "- date: 20" in text
    assert "UTC (`python -m bench --quick --no-profile --output" in text
    assert "- machine: `" in text
    assert " cores, " in text
    assert f"commit `{head}`" in text
    assert "## bench_layout" in text
    assert "| benchmark | variant | value | unit | ratio |" in text
    assert "| layout: first assignment | 5 nodes |" in text
    if before == after:  # (other work in this checkout may change it meanwhile)
        assert ("**DIRTY**" in text) == (not before.clean)


def test_the_checkout_lists_uncommitted_changes_but_not_reports(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    (repo / "bench" / "results").mkdir(parents=True)
    (repo / "bench" / "results" / "latest.md").write_text("old\n")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD")
    assert checkout(repo) == Checkout(head, ())
    assert checkout(repo).clean

    (repo / "bench" / "results" / "latest.md").write_text("new\n")  # a report: still clean
    assert checkout(repo).clean
    (repo / "code.py").write_text("x = 2\n")
    (repo / "new.py").write_text("y = 1\n")
    state = checkout(repo)
    assert state.commit == head
    assert set(state.dirty) == {"code.py", "new.py"}
    assert not state.clean
    assert state.describe().startswith(f"{head} + uncommitted changes to 2 files")

    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    assert checkout(nowhere) == Checkout(None)


def test_latest_md_is_refused_from_a_dirty_tree_unless_allowed(tmp_path: Path) -> None:
    dirty = Checkout("0" * 40, ("packages/garage_api/src/garage_api/http.py",))
    reason = refusal(LATEST, dirty, allow_dirty=False)
    assert reason is not None
    assert "uncommitted changes" in reason
    assert "garage_api/http.py" in reason
    assert "--allow-dirty" in reason
    assert refusal(LATEST, dirty, allow_dirty=True) is None
    assert refusal(tmp_path / "elsewhere.md", dirty, allow_dirty=False) is None
    assert refusal(LATEST, Checkout("0" * 40), allow_dirty=False) is None
    unknown = refusal(LATEST, Checkout(None), allow_dirty=False)
    assert unknown is not None
    assert "not a git checkout" in unknown


def _report(code: Checkout, code_after: Checkout | None = None) -> str:
    info = {"date": "d", "uname": "u", "cpu": "c", "python": "3", "load": "0"}
    return markdown_report(
        info, {}, args="", duration_s=60.0, load_after="0", code=code, code_after=code_after
    )


def test_a_dirty_report_says_so_at_the_top() -> None:
    clean = _report(Checkout("a" * 40))
    assert "DIRTY" not in clean
    assert f"commit `{'a' * 40}`" in clean
    dirty = _report(Checkout("a" * 40, ("x.py",)))
    assert dirty.splitlines()[2].startswith("> **DIRTY**")
    assert "uncommitted changes to 1 file (x.py)" in dirty
    assert f"commit `{'a' * 40}` (DIRTY" in dirty
    changed = _report(Checkout("a" * 40), Checkout("b" * 40))
    assert changed.splitlines()[2].startswith("> **DIRTY**")
    assert f"at the end: {'b' * 40}" in changed
