"""Fixtures for the metadata db tests: every test using ``db`` runs on both engines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from garage_util.db import open_db

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from garage_util.db import Db


@pytest.fixture(params=["sqlite", "lmdb"])
def engine(request: pytest.FixtureRequest) -> str:
    """The engine name; tests taking it (or ``db``) run once per engine."""
    name: str = request.param
    return name


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    """The metadata directory of the test's db."""
    return tmp_path / "meta"


@pytest.fixture
def db(engine: str, db_dir: Path) -> Iterator[Db]:
    """A fresh, empty db of ``engine``, closed after the test."""
    with open_db(db_dir, engine) as opened:
        yield opened
