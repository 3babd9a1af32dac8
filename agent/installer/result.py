"""What the Install step reports: its error type and the counts of what it did.

Kept apart from the modules that do the work so that every one of them can raise
:class:`InstallError` without importing the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import AgentError


class InstallError(AgentError):
    """The revision cannot be installed; the message names the path or appspec entry."""


@dataclass(frozen=True)
class InstallResult:
    """Counts of what one install did (never lists of paths: trees can be huge)."""

    files_copied: int
    directories_created: int
    paths_retained: int  # destinations kept as they were because of RETAIN
    symlinks_created: int = 0
    files_overwritten: int = 0  # foreign files replaced (OVERWRITE); in files_copied
    # Files and symlinks of the group's previous install found identical and left in place
    # (not in files_copied), and its folders kept (not in directories_created).
    files_unchanged: int = 0
    directories_kept: int = 0
    bytes_copied: int = 0
    previous_paths_removed: int = 0  # paths of the group's previous install removed first
    permission_paths: int = 0  # installed paths whose permissions were set
