"""A daemon's configuration and folders under tmp_path, its processes ended after the test."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.daemon.test_daemon_process import Daemon
from tests.support_command_service import CommandServiceStub
from tests.support_signing import SigningKit


@pytest.fixture
def daemon_host(tmp_path: Path, stub: CommandServiceStub, kit: SigningKit) -> Iterator[Daemon]:
    agent = Daemon(tmp_path, stub, kit)
    try:
        yield agent
    finally:
        agent.cleanup()
