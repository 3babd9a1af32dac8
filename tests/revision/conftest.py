"""Fixtures for the revision tests: a deployment folder, and a tiny disk that fills up."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support.tmpfs import mounted_tmpfs


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    """``<root>/<group-id>/<deployment-id>``, empty: deployment-archive/ goes in it."""
    path = tmp_path / "deployment-root" / "group-id" / "d-TEST12345"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    with mounted_tmpfs(tmp_path / "small", "1m") as mount_point:
        yield mount_point
