"""Fixtures of the self-hosted service's tests: a PostgreSQL 15 cluster for the session
(skipped, saying why, only when its binaries are absent), and database URLs for the
suite that runs on both SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support_server import PostgresCluster, postgres_unavailable_reason


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    reason = postgres_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'server.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()
