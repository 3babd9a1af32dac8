"""Keeping the deployment root from growing without bound.

Before a revision is downloaded, the oldest deployment folders of the group are removed
so that at most ``max_revisions`` remain, counting the one being deployed. The last
successful deployment is never removed: its scripts run the next ApplicationStop. Given a
:class:`~agent.deployment_root.trash.DeploymentTrash`, a folder goes there to be removed
while the deployment goes on (see that module for when it is removed at once instead).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

import structlog

from agent.deployment_root.layout import DeploymentDir, DeploymentRoot
from agent.deployment_root.trash import DeploymentTrash

log = structlog.get_logger(__name__)


def prune_old_deployments_on_disk(
    root: DeploymentRoot,
    group_id: str,
    current: DeploymentDir,
    max_revisions: int,
    trash: Optional[DeploymentTrash] = None,
) -> int:
    """Remove the oldest deployment folders of ``group_id``; return how many were removed."""
    group_dir = root.group_dir(group_id)
    try:
        entries = [Path(e.path) for e in os.scandir(group_dir) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return 0
    others = [p for p in entries if p != current.path]
    extra = len(others) - max_revisions + 1
    if extra <= 0:
        return 0
    last_successful = root.read_last_successful_deployment_dir(group_id)
    candidates = [p for p in others if last_successful is None or p != last_successful.path]

    def age(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    removed = 0
    for old in sorted(candidates, key=age)[:extra]:
        if trash is not None and trash.retire_on_disk(old):
            log.info("old deployment folder moved to the trash", path=str(old))
        else:
            shutil.rmtree(old, ignore_errors=True)
            log.info("removed old deployment folder", path=str(old))
        removed += 1
    return removed
