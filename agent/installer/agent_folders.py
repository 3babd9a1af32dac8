"""The agent's own folders, which no ``files`` entry may install into, over or around.

A destination that contains the deployment root (``destination: /opt`` with the default
``root_dir``) would let a revision rewrite the agent's cleanup files, markers and
deployment records; one that contains the log or pid folder, its logs and its pid file.
Such a destination is refused whether it is the folder itself, one of its parents or a
folder inside it, compared after resolving symlinks, so a destination reached through
a symlink counts too. The configuration's folder is not among them: the agent never
writes there, overwriting its file needs an existing file to be replaced (which the
default ``file_exists_behavior`` refuses), and ``destination: /etc`` is common.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from agent.installer.paths import is_within, normalise_absolute
from agent.installer.result import InstallError


@dataclass(frozen=True)
class AgentFolders:
    """(what it is, where it is) for each folder the agent itself writes in."""

    folders: Tuple[Tuple[str, Path], ...] = ()

    @classmethod
    def of(
        cls, root_dir: Path, log_dir: Optional[Path] = None, pid_dir: Optional[Path] = None
    ) -> AgentFolders:
        named = (("deployment root", root_dir), ("log folder", log_dir), ("pid folder", pid_dir))
        return cls(tuple((what, folder) for what, folder in named if folder is not None))

    def check_destination_on_disk(
        self, destination: str, where: str, noun: str = "the destination"
    ) -> None:
        """Raise InstallError when the absolute ``destination`` is, contains or lies in one of
        the folders; ``where`` names the ``files`` entry, ``noun`` what the path is to it."""
        conflict = self.conflict_on_disk(destination, noun)
        if conflict is not None:
            raise InstallError(f"{where}: {conflict}")

    def conflict_on_disk(self, destination: str, noun: str = "the destination") -> Optional[str]:
        """What is wrong with ``destination``, or None (symlinks are resolved on disk)."""
        real = os.path.realpath(normalise_absolute(destination))
        for what, folder in self.folders:
            guarded = os.path.realpath(folder)
            if is_within(guarded, real):
                relation = "is" if guarded == real else "contains"
            elif is_within(real, guarded):
                relation = "is inside"
            else:
                continue
            return (
                f"{noun} {destination} {relation} the agent's {what} {folder};"
                " a revision may not install files into the agent's own folders"
            )
        return None
