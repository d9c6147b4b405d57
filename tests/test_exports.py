"""Each public module's ``__all__`` is sorted, complete, and names things that exist."""

from __future__ import annotations

import importlib
import types

import pytest

PUBLIC_MODULES = [
    "garage_util",
    "garage_util.background",
    "garage_util.clock",
    "garage_util.config",
    "garage_util.crdt",
    "garage_util.data",
    "garage_util.db",
    "garage_util.encode",
    "garage_util.errors",
    "garage_util.testing",
    "garage_rpc",
    "garage_table",
    "garage_model",
    "garage_api",
    "garage_web",
    "garage",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_complete_and_real(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), "__all__ must be sorted"
    assert len(set(exported)) == len(exported), "__all__ has duplicates"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"__all__ names things that do not exist: {missing}"
    defined = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and not isinstance(v, types.ModuleType)
        and getattr(v, "__module__", name).startswith(name.split(".")[0])
        and n not in {"annotations", "TYPE_CHECKING"}
    }
    # Type variables and aliases defined for typing are fine to keep private by convention.
    defined = {n for n in defined if not (len(n) == 1 and n.isupper())}
    assert defined - set(exported) == set(), "public names missing from __all__"
