"""Test support: building revisions and bundles, running codedeploy-local as a subprocess."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LocalRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def deployment_dir(self) -> Path:
        first = self.stdout.splitlines()[0]
        prefix = "Starting to execute deployment from within folder "
        assert first.startswith(prefix), self.stdout
        return Path(first[len(prefix) :])


@dataclass(frozen=True)
class LocalAgent:
    """A codedeploy-local with its own configuration and deployment root under tmp_path."""

    base: Path

    @property
    def root(self) -> Path:
        return self.base / "deployment-root"

    @property
    def config(self) -> Path:
        return self.base / "codedeployagent.yml"

    def run(
        self,
        *arguments: str,
        env: Optional[Dict[str, str]] = None,
        timeout: float = 120,
    ) -> LocalRun:
        environment = dict(os.environ)
        environment.update(env or {})
        completed = subprocess.run(
            [sys.executable, "-m", "agent.local_deployment", "-c", str(self.config), *arguments],
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
            check=False,
            cwd=self.base,
        )
        return LocalRun(completed.returncode, completed.stdout, completed.stderr)


def write_tree(root: Path, files: Dict[str, str], modes: Optional[Dict[str, int]] = None) -> Path:
    """Write ``files`` (relative name -> text) under ``root``; scripts ending in .sh get 0755."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if name.endswith(".sh"):
            path.chmod(0o755)
    for name, mode in (modes or {}).items():
        (root / name).chmod(mode)
    return root


def make_bundle(source: Path, bundle: Path, kind: str) -> Path:
    """Pack the folder ``source`` as tar, tgz or zip, keeping modes."""
    members: List[Path] = sorted(source.rglob("*"))
    if kind in ("tar", "tgz"):
        with tarfile.open(bundle, "w:gz" if kind == "tgz" else "w") as archive:
            for path in members:
                archive.add(path, arcname=str(path.relative_to(source)), recursive=False)
    elif kind == "zip":
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in members:
                name = str(path.relative_to(source))
                if path.is_symlink():
                    # zipfile follows links; store the link itself, as zip -y does.
                    info = zipfile.ZipInfo(name)
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    archive.writestr(info, os.readlink(path))
                    continue
                info = zipfile.ZipInfo.from_file(path, name)
                if path.is_dir():
                    archive.writestr(info, b"")
                else:
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, path.read_bytes())
    else:  # pragma: no cover - a test bug
        raise ValueError(kind)
    return bundle


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
