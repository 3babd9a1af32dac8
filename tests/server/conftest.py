"""Fixtures of the self-hosted service's tests: a PostgreSQL 15 cluster for the session
(skipped, saying why, only when its binaries are absent), database URLs for the suite
that runs on both SQLite and PostgreSQL, and one running server per test module."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator

import pytest

from tests.support.postgres import PostgresCluster, postgres_unavailable_reason
from tests.support.server import ServerFiles, ServerProcess


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


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ServerFiles:
    """The configuration and folders of the module's server (SQLite)."""
    files = ServerFiles(tmp_path_factory.mktemp("server"))
    files.write_config()
    return files


@pytest.fixture(scope="module")
def server(files: ServerFiles) -> Iterator[ServerProcess]:
    """``codedeploy-server run`` for the module, stopped at its end."""
    with ServerProcess(files) as process:
        yield process


@pytest.fixture(scope="module")
def operator(files: ServerFiles, server: ServerProcess) -> Dict[str, str]:
    """An operator key of the module's server."""
    return files.create_operator("operator")
