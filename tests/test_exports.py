"""Each public module's ``__all__`` is sorted, complete, and names things that exist."""

from __future__ import annotations

import importlib
import types
from pathlib import Path
from typing import TypeVar

import pytest

PACKAGES = Path(__file__).resolve().parent.parent / "packages"


def _public_modules() -> list[str]:
    """Every module of every package whose dotted name has no part starting with ``_``."""
    found = []
    for init in sorted(PACKAGES.glob("*/src/*/__init__.py")):
        src = init.parent.parent
        for path in sorted(init.parent.rglob("*.py")):
            parts = list(path.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts.pop()
            if not any(p.startswith("_") for p in parts):
                found.append(".".join(parts))
    return found


PUBLIC_MODULES = _public_modules()


def test_public_modules_are_found() -> None:
    assert {"garage_util", "garage_util.crdt", "garage_util.db", "garage.cli"} <= set(
        PUBLIC_MODULES
    )


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_complete_and_real(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key), "__all__ must be sorted"
    assert len(set(exported)) == len(exported), "__all__ has duplicates"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"__all__ names things that do not exist: {missing}"
    defined = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and not isinstance(v, types.ModuleType | TypeVar)
        and _defined_in(getattr(v, "__module__", None), name)
    }
    assert defined - set(exported) == set(), "public names missing from __all__"


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return (kind, name)


def _defined_in(origin: str | None, module: str) -> bool:
    """True for names defined by ``module`` itself or by one of its private submodules."""
    if origin is None:
        return False
    return origin == module or origin.startswith(f"{module}._")
