"""Test-suite wide settings: hypothesis profiles and the anyio backends.

Hypothesis profiles: ``ci`` (150 examples, derandomized so a CI failure reproduces; 300
took two more minutes of a suite that must stay well under 20) is picked when the ``CI``
environment variable is set, ``dev`` (100 random examples, new ones every run) otherwise;
override with ``HYPOTHESIS_PROFILE``. Neither has a deadline: speed is measured in benchmarks, never by
the tests (a deadline would be a timing assertion).

Async tests of the util, rpc and table layers run on both anyio backends (trio, which the
node uses, and asyncio, for apps that embed garage_table); upper layers override
``anyio_backend`` to trio only in their own conftest.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


@pytest.fixture(
    params=[pytest.param("trio", id="trio"), pytest.param("asyncio", id="asyncio")],
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Runs each ``@pytest.mark.anyio`` test on trio and on asyncio."""
    return str(request.param)
