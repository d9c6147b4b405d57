"""A lower package never imports an upper one.

Order, bottom to top: garage_util < garage_rpc < garage_table < garage_model < garage_api <
garage_web < garage. The check reads every source file's imports (including imports inside
functions and ``TYPE_CHECKING`` blocks), so a lazy import cannot sneak past it.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Bottom to top, from the import-linter contract in pyproject.toml (one source of truth).
LAYERS: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
][0]["layers"][::-1]
RANK = {name: i for i, name in enumerate(LAYERS)}
PACKAGES = ROOT / "packages"


def upward_imports(package: str, source: str, filename: str = "<src>") -> list[str]:
    """The imports in ``source`` (a module of ``package``) of packages at or above it."""
    bad = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in RANK and top != package and RANK[top] > RANK[package]:
                bad.append(f"{filename}:{node.lineno}: {package} imports {name}")
    return bad


def test_the_checker_sees_upward_imports() -> None:
    src = "import garage_util\nfrom garage_api.s3 import x\ndef f():\n    import garage_table\n"
    assert upward_imports("garage_rpc", src) == [
        "<src>:2: garage_rpc imports garage_api.s3",
        "<src>:4: garage_rpc imports garage_table",
    ]
    assert upward_imports("garage", src) == []


@pytest.mark.parametrize("package", LAYERS)
def test_no_package_imports_an_upper_one(package: str) -> None:
    files = sorted((PACKAGES / package / "src" / package).rglob("*.py"))
    assert files, f"no sources found for {package}"
    bad = [b for f in files for b in upward_imports(package, f.read_text(), str(f))]
    assert bad == []


@pytest.mark.parametrize("package", LAYERS)
def test_each_package_declares_only_lower_garage_dependencies(package: str) -> None:
    meta = tomllib.loads((PACKAGES / package / "pyproject.toml").read_text())
    deps = meta["project"].get("dependencies", [])
    garage_deps = [d.split("[")[0].split(">")[0].strip().replace("-", "_") for d in deps]
    garage_deps = [d for d in garage_deps if d in RANK]
    assert all(RANK[d] < RANK[package] for d in garage_deps), garage_deps
