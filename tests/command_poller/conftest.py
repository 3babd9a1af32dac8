"""Fixtures of the poller tests: the in-process command service."""

from __future__ import annotations

import pytest

from tests.support.fake_command_service import FakeCommandService


@pytest.fixture
def service() -> FakeCommandService:
    """An in-process command service for the poller's logic (no wire)."""
    return FakeCommandService()
