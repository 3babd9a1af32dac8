"""The Install step from start to end, in the order that keeps a refused install harmless.

1. Resolve the appspec's ``files`` and ``permissions`` against this host (sources, owners,
   tools) and read the group's previous cleanup file as a set of free paths.
2. Plan: walk the revision and refuse the install at the first conflict, or when its
   copies would not fit on a destination's filesystem (nothing to measure when the
   previous install already holds every path). Nothing has changed on disk yet,
   so the previous revision is still in place.
3. Replay the previous cleanup file (newest path first). Paths the plan found already
   identical to what the copy would produce are kept (and stay listed) rather than deleted
   and copied again: that is most of a redeployment, and deleting is costly.
4. Copy, appending each path to the cleanup file before creating it, then apply the
   permissions to the paths installed, logging every step in ``<group>-install.json``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

from agent.application_specification.model import ApplicationSpecification, FileExistsBehavior
from agent.deployment_root.layout import DeploymentRoot
from agent.installer.agent_folders import AgentFolders
from agent.installer.cleanup import (
    CleanupFileWriter,
    iter_recorded_paths_from_disk,
    read_previous_install_from_disk,
    replay_cleanup_file_on_disk,
)
from agent.installer.copy import copy_entries_on_disk
from agent.installer.instructions import InstructionsFileWriter
from agent.installer.permissions import (
    apply_permissions_on_disk,
    find_permission_tools,
    resolve_permissions,
)
from agent.installer.plan import check_plan_on_disk, resolve_entries_on_disk
from agent.installer.result import InstallError, InstallResult
from agent.installer.reuse import read_identity_from_os
from agent.installer.space import check_space_on_disk

__all__ = ["InstallError", "InstallResult", "install_revision_on_disk"]


def install_revision_on_disk(
    spec: ApplicationSpecification,
    archive_root: Path,
    root: DeploymentRoot,
    group_id: str,
    file_exists_behavior: FileExistsBehavior,
    agent_folders: Optional[AgentFolders] = None,
    reject_symlink_permission_targets: bool = False,
) -> InstallResult:
    """Install the unpacked revision at ``archive_root`` for deployment group ``group_id``.

    ``file_exists_behavior`` is already resolved (the appspec's own setting over the
    deployment's); no destination may touch ``agent_folders`` (by default the deployment
    root). ``reject_symlink_permission_targets`` (the configuration key): a symlink where
    ``permissions`` apply refuses the install rather than being skipped. Raises
    InstallError; when it does so before the copy starts, nothing has changed on disk.
    """
    if spec.os != "linux":
        raise InstallError(f"appspec os {spec.os!r} is not supported by this agent (linux only)")
    tools = find_permission_tools()
    folders = AgentFolders.of(root.path) if agent_folders is None else agent_folders
    entries = resolve_entries_on_disk(spec, archive_root, root.path, folders)
    permissions = resolve_permissions(spec.permissions, tools)
    identity = read_identity_from_os()
    cleanup_file = root.cleanup_file(group_id)
    previous = read_previous_install_from_disk(cleanup_file, key=os.urandom(16))
    reuse = check_plan_on_disk(
        entries,
        permissions,
        previous,
        file_exists_behavior,
        identity,
        folders,
        reject_symlink_targets=reject_symlink_permission_targets,
    )
    if not reuse.everything_kept:
        # Else nothing new is copied, and a redeployment spares a walk of the revision.
        check_space_on_disk(entries, reuse.kept, cleanup_file)
    removed = replay_cleanup_file_on_disk(
        cleanup_file, tools.semanage, reuse.kept, previous.free, identity.uid
    )
    root.instructions_dir.mkdir(parents=True, exist_ok=True)
    install_file = root.install_instructions_file(group_id)
    with CleanupFileWriter(cleanup_file) as cleanup, InstructionsFileWriter(install_file) as steps:
        copied = copy_entries_on_disk(
            entries, file_exists_behavior, reuse.kept, previous.free, identity, cleanup, steps
        )
        installed = iter_recorded_paths_from_disk(cleanup_file, cleanup.size)
        permission_paths = apply_permissions_on_disk(
            permissions,
            installed,
            tools,
            cleanup,
            steps,
            reject_symlinks=reject_symlink_permission_targets,
        )
    return dataclasses.replace(
        copied, previous_paths_removed=removed, permission_paths=permission_paths
    )
