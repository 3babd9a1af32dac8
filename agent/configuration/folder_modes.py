"""Tightening the modes of the agent's own folders, for ``restrict_*_permissions``.

By default the agent's folders keep the modes the umask gives them (0755), because host
tooling reads them as another user (log shippers, health checks on the pid file), as
with the AWS agent. ``restrict_agent_dir_permissions`` makes the state folders private at
start-up: the deployment root 0711 (others may pass through it to a revision's scripts
for hooks that ``runas`` another user, but not list it), the pid folder, the
ongoing-deployment and deployment-instructions folders 0700, and the deployments log
folder 0750. ``restrict_log_dir_permissions`` makes ``log_dir`` 0750 and the agent's log
files in it 0640. Folders are created when missing; files created later inside them keep
their own modes, which the folder's mode already shields.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple

from agent.configuration.model import AgentConfig
from agent.deployment_root.layout import DEPLOYMENT_LOGS_DIR, DeploymentRoot
from agent.errors import AgentError

ROOT_DIR_MODE = 0o711
PRIVATE_DIR_MODE = 0o700
SHARED_WITH_GROUP_DIR_MODE = 0o750
LOG_FILE_MODE = 0o640


class FolderModeError(AgentError):
    """A folder the configuration asks to restrict cannot be created or restricted."""


def restricted_folders(config: AgentConfig, *, daemon: bool) -> List[Tuple[Path, int]]:
    """The folders the configuration restricts and their modes, parents first.

    ``daemon`` adds what only the daemon owns: its pid folder and its log folder.
    """
    folders: List[Tuple[Path, int]] = []
    if config.restrict_agent_dir_permissions:
        root = DeploymentRoot(config.root_dir, config.ongoing_deployment_tracking)
        folders += [
            (root.path, ROOT_DIR_MODE),
            (root.ongoing_dir, PRIVATE_DIR_MODE),
            (root.instructions_dir, PRIVATE_DIR_MODE),
            (root.path / DEPLOYMENT_LOGS_DIR, SHARED_WITH_GROUP_DIR_MODE),
        ]
        if daemon:
            folders.append((config.pid_dir, PRIVATE_DIR_MODE))
    if daemon and config.restrict_log_dir_permissions:
        folders.append((config.log_dir, SHARED_WITH_GROUP_DIR_MODE))
    return folders


def restrict_folders_on_disk(config: AgentConfig, *, daemon: bool) -> None:
    """Create and restrict the folders of :func:`restricted_folders`, and the agent's log
    files when the log folder is restricted. Raises :class:`FolderModeError` naming the
    path that cannot be restricted."""
    for folder, mode in restricted_folders(config, daemon=daemon):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, mode)
        except OSError as error:
            raise FolderModeError(
                f"cannot restrict the permissions of {folder} to {mode:04o}"
                f" ({error.strerror or error})"
            ) from None
    if daemon and config.restrict_log_dir_permissions:
        for log_file in config.log_dir.glob(f"{config.program_name}*.log*"):
            try:
                if log_file.is_file() and not log_file.is_symlink():
                    os.chmod(log_file, LOG_FILE_MODE)
            except OSError as error:
                raise FolderModeError(
                    f"cannot restrict the permissions of {log_file} to {LOG_FILE_MODE:04o}"
                    f" ({error.strerror or error})"
                ) from None
