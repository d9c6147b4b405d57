"""The fault-injection runs (real clusters under nemeses) carry the ``faults`` marker.

They are the slow tests of this folder, about 13 minutes in all: ``nox -s tests`` leaves
them out so that the suite stays fast, and ``nox -s faults_ci`` (which ``.ci/run`` calls
after the suite) runs each scenario once. The checker tests here are ordinary tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent == _HERE and item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.faults)
