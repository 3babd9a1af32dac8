"""A small disk for tests: a tmpfs of a given size (and inode count) mounted for the
duration of a block, to fill up on purpose. Mounting needs root; elsewhere the test is
skipped."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import pytest


@contextlib.contextmanager
def mounted_tmpfs(mount_point: Path, size: str, inodes: Optional[int] = None) -> Iterator[Path]:
    """A tmpfs of ``size`` (``1m``) and at most ``inodes`` inodes mounted on the new folder
    ``mount_point`` while the block runs; the test is skipped when it cannot be mounted
    (not root, no mount rights)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point.mkdir()
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes is not None else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)
