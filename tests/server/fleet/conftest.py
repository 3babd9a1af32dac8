"""Fixtures of the end-to-end tests: moto's S3 for the module, and a fleet (a server, on
SQLite and on PostgreSQL, and three agent daemons in mount namespaces of their own)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.fleet import Fleet, fleet_server_files
from tests.support.s3_servers import moto_s3_server
from tests.support.server import ServerFiles, ServerProcess


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("the fleet's agents run in mount namespaces of their own: needs root")
    with moto_s3_server() as endpoint:
        yield endpoint


def server_files(base: Path, request: pytest.FixtureRequest) -> ServerFiles:
    """A fleet server's files on a fresh database of the kind ``request.param`` names."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database()
    return fleet_server_files(base, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> ServerFiles:
    """A fleet server's files for one test, on each kind of database."""
    return server_files(tmp_path / "server", request)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> Iterator[Fleet]:
    """Three hosts deploying from one server, for the whole module."""
    base = tmp_path_factory.mktemp("fleet")
    with (
        ServerProcess(server_files(base / "server", request)) as server,
        Fleet(base / "fleet", server, s3_endpoint) as running,
    ):
        yield running
