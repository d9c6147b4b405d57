"""The READMEs stay true: their Python examples run, and their commands exist."""

from __future__ import annotations

import re
import sys
import tomllib
import types
from pathlib import Path

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
READMES = [
    ROOT / "README.md",
    ROOT / "packages" / "garage_util" / "README.md",
    ROOT / "packages" / "garage_rpc" / "README.md",
    ROOT / "packages" / "garage_table" / "README.md",
]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize(
    ("path", "index"),
    [(p, i) for p in READMES for i in range(len(_python_blocks(p)))],
    ids=lambda v: v.name if isinstance(v, Path) else str(v),
)
def test_python_examples_run(path: Path, index: int, tmp_path: Path) -> None:
    block = _python_blocks(path)[index]
    block = block.replace('"/var/lib/garage/meta"', repr(str(tmp_path)))
    # A real module, so that dataclasses and type hints can find their globals.
    module = types.ModuleType(f"readme_example_{index}")
    sys.modules[module.__name__] = module
    try:
        exec(compile(block, f"{path.name}[{index}]", "exec"), module.__dict__)
        main = module.__dict__.get("main")
        if callable(main) and "async def main" in block:
            anyio.run(main, backend="trio")
    finally:
        del sys.modules[module.__name__]


def test_readme_commands_are_the_ones_ci_and_nox_run() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "uv run nox -s tests" in readme
    assert "run --locked nox -s tests" in ci
    assert "uv run garage server --single-node" in readme
    scripts = tomllib.loads((ROOT / "packages/garage/pyproject.toml").read_text())["project"]
    assert scripts["scripts"]["garage"] == "garage.cli:main"
