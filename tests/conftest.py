"""Shared fixtures: a codedeploy-local with its own deployment root, the test command
service, and a signing kit for deployment specifications."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support import LocalAgent
from tests.support_command_service import CommandServiceStub
from tests.support_signing import SigningKit, make_signing_kit


@pytest.fixture
def local_agent(tmp_path: Path) -> LocalAgent:
    base = tmp_path / "agent"
    base.mkdir()
    agent = LocalAgent(base)
    agent.config.write_text(
        f":root_dir: '{agent.root}'\n:log_dir: '{base / 'log'}'\n:hook_kill_grace_seconds: 1\n",
        encoding="utf-8",
    )
    return agent


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> SigningKit:
    """A test CA and a signer named as AWS's, to sign deployment specifications."""
    return make_signing_kit(tmp_path_factory.mktemp("signing"))


@pytest.fixture
def stub() -> Iterator[CommandServiceStub]:
    """The JSON 1.1 command service on loopback (hung requests are released in 5 s)."""
    with CommandServiceStub(hang_seconds=5) as service:
        yield service
