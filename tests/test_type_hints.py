"""Every dataclass of every package resolves its type hints at run time.

garage_util.encode decodes messages and stored values by their dataclass field types
(``typing.get_type_hints``); a name imported only under ``TYPE_CHECKING`` would make the
first decode of that type fail at run time, far from the import that caused it.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing

import pytest

PACKAGES = [
    "garage_util",
    "garage_rpc",
    "garage_table",
    "garage_model",
    "garage_api",
    "garage_web",
    "garage",
]


def _modules() -> list[str]:
    names = []
    for top in PACKAGES:
        package = importlib.import_module(top)
        names.append(top)
        found = pkgutil.walk_packages(package.__path__, f"{top}.")
        names += [m.name for m in found if not m.name.endswith(".__main__")]  # runs the CLI
    return names


@pytest.mark.parametrize("module_name", _modules())
def test_dataclass_type_hints_resolve(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for value in list(vars(module).values()):
        if (
            isinstance(value, type)
            and dataclasses.is_dataclass(value)
            and value.__module__ == module_name
        ):
            typing.get_type_hints(value)  # raises NameError on a TYPE_CHECKING-only name
