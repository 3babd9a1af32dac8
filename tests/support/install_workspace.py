"""The installer in process: a revision on disk, a deployment root, and what an install left.

Everything is real files under the test's tmp_path: the revision (``archive``), the
deployment root and the destinations.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from agent.application_specification.model import (
    ApplicationSpecification,
    FileExistsBehavior,
    FileMapping,
    Permission,
)
from agent.deployment_root.layout import DeploymentRoot
from agent.installer import InstallResult, install_revision_on_disk

GROUP = "group-1"

# A revision entry: file content, ("link", target) for a symlink, or None for a folder.
Entry = Union[str, Tuple[str, str], None]


@dataclass(frozen=True)
class Workspace:
    base: Path

    @property
    def archive(self) -> Path:
        return self.base / "deployment-archive"

    @property
    def root(self) -> DeploymentRoot:
        return DeploymentRoot(self.base / "root")

    @property
    def dest(self) -> Path:
        return self.base / "dest"

    @property
    def cleanup_file(self) -> Path:
        return self.root.cleanup_file(GROUP)

    @property
    def install_file(self) -> Path:
        return self.root.install_instructions_file(GROUP)

    def write_revision(self, entries: Dict[str, Entry]) -> None:
        """Replace the revision with ``entries`` (relative path -> content)."""
        if self.archive.exists():
            shutil.rmtree(self.archive)
        self.archive.mkdir(parents=True)
        for relative, content in sorted(entries.items()):
            path = self.archive / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if content is None:
                path.mkdir(exist_ok=True)
            elif isinstance(content, tuple):
                os.symlink(content[1], path)
            else:
                path.write_text(content, encoding="utf-8")

    def install(
        self,
        files: Tuple[FileMapping, ...],
        permissions: Tuple[Permission, ...] = (),
        behavior: FileExistsBehavior = FileExistsBehavior.DISALLOW,
        group: str = GROUP,
    ) -> InstallResult:
        spec = ApplicationSpecification(files=files, permissions=permissions)
        return install_revision_on_disk(spec, self.archive, self.root, group, behavior)

    def install_all(
        self,
        permissions: Tuple[Permission, ...] = (),
        behavior: FileExistsBehavior = FileExistsBehavior.DISALLOW,
    ) -> InstallResult:
        """Install the whole revision (``source: /``) into ``dest``."""
        return self.install((FileMapping("/", str(self.dest)),), permissions, behavior)

    def cleanup_lines(self) -> List[str]:
        return self.cleanup_file.read_bytes().decode("utf-8").splitlines()

    def instructions(self) -> List[Dict[str, Any]]:
        document = json.loads(self.install_file.read_text(encoding="utf-8"))
        assert list(document) == ["instructions"]
        instructions: List[Dict[str, Any]] = document["instructions"]
        return instructions


def tree(folder: Path) -> Dict[str, str]:
    """Every path below ``folder``: relative path -> "dir", "link:<target>" or the content."""
    found: Dict[str, str] = {}
    for current, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(current) / name
            relative = str(path.relative_to(folder))
            if path.is_symlink():
                found[relative] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[relative] = "dir"
            else:
                found[relative] = path.read_text(encoding="utf-8")
    return found


def mode_of(path: Path) -> int:
    return path.lstat().st_mode & 0o7777


def write_stub_tool(folder: Path, name: str, log: Path, exit_code: int = 0) -> None:
    """An executable that appends its name and arguments (one line) to ``log``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$(basename "$0") $*" >> "{log}"\nexit {exit_code}\n',
        encoding="utf-8",
    )
    script.chmod(0o755)


def link_tools(folder: Path, *names: str) -> None:
    """Put the real ``names`` (found on PATH now) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        found: Optional[str] = shutil.which(name)
        assert found is not None, name
        os.symlink(found, folder / name)
