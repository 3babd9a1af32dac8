"""Shared fixtures: a codedeploy-local with its own configuration and deployment root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import LocalAgent


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
