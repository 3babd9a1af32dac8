"""Which deployment's revision supplies the scripts of a lifecycle event.

Events that run before the new revision is unpacked use the scripts of the group's last
successful deployment (so a first deployment runs no ApplicationStop); a blue/green
rollback takes the block-traffic scripts from the most recent deployment and the
allow-traffic scripts from the last successful one. The answer is read from the
deployment root, where the AWS agent keeps the same markers.
"""

from __future__ import annotations

from typing import FrozenSet, Optional

from agent.deployment_root.layout import DeploymentDir, DeploymentRoot
from agent.deployment_specification.model import DeploymentSpecification

# Events whose scripts come from the previous (last successful) revision while the
# current one has not been unpacked yet.
PREVIOUS_REVISION_EVENTS: FrozenSet[str] = frozenset(
    {"ApplicationStop", "BeforeBlockTraffic", "AfterBlockTraffic"}
)

# Events of a blue/green rollback that run the most recent deployment's scripts ...
ROLLBACK_MOST_RECENT_EVENTS: FrozenSet[str] = frozenset({"BeforeBlockTraffic", "AfterBlockTraffic"})
# ... and those that run the last successful deployment's scripts.
ROLLBACK_LAST_SUCCESSFUL_EVENTS: FrozenSet[str] = frozenset(
    {"BeforeAllowTraffic", "AfterAllowTraffic"}
)


def uses_previous_revision(event: str) -> bool:
    return event in PREVIOUS_REVISION_EVENTS


def script_source_dir(
    event: str,
    spec: DeploymentSpecification,
    deployment: DeploymentDir,
    root: DeploymentRoot,
    download_pending: bool = False,
) -> Optional[DeploymentDir]:
    """The deployment folder whose revision provides ``event``'s scripts (None: no revision).

    Events before the deployment's DownloadBundle use the last successful deployment's
    scripts (so a first deployment runs no ApplicationStop) or none. A blue/green rollback
    runs the block-traffic events of the most recent deployment and the allow-traffic
    events of the last successful one. Whether DownloadBundle has run is judged by the disk
    (``deployment-archive`` exists exactly when it ran, as the daemon's commands come one
    by one), unless ``download_pending`` says its place has not come yet:
    ``codedeploy-local`` unpacks a local archive before ApplicationStop.
    """
    group = spec.deployment_group_id
    if spec.is_blue_green_rollback:
        if event in ROLLBACK_MOST_RECENT_EVENTS:
            return root.read_most_recent_deployment_dir(group)
        if event in ROLLBACK_LAST_SUCCESSFUL_EVENTS:
            return root.read_last_successful_deployment_dir(group)
    unpacked = not download_pending and deployment.archive.is_dir()
    if uses_previous_revision(event) and not unpacked:
        return root.read_last_successful_deployment_dir(group)
    # Before DownloadBundle's place no script runs from the new revision.
    return None if download_pending else deployment
