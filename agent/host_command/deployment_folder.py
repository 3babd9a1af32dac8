"""The folder of one deployment under the deployment root, and the ids that name it.

``<root>/<deployment-group-id>/<deployment-id>`` holds the bundle, the unpacked revision
and the script log, exactly as the AWS agent lays it out.
"""

from __future__ import annotations

from agent.deployment_root.layout import DeploymentDir, DeploymentRoot
from agent.deployment_root.names import shown_name, unsafe_group_id_reason, unsafe_name_reason
from agent.deployment_specification.model import DeploymentSpecError, DeploymentSpecification


def deployment_dir_of(spec: DeploymentSpecification, root: DeploymentRoot) -> DeploymentDir:
    return root.deployment_dir(spec.deployment_group_id, spec.deployment_id)


def check_names_fit_the_root(spec: DeploymentSpecification, root: DeploymentRoot) -> None:
    """Refuse ids that cannot name this root's folders (the parsers check them already,
    but only this root knows its configured ongoing-deployment folder)."""
    group, deployment_id = spec.deployment_group_id, spec.deployment_id
    reason = unsafe_group_id_reason(group, (root.ongoing_deployment_tracking,))
    if reason is not None:
        raise DeploymentSpecError(f"deployment group id {shown_name(group)} {reason}")
    reason = unsafe_name_reason(deployment_id)
    if reason is not None:
        raise DeploymentSpecError(f"deployment id {shown_name(deployment_id)} {reason}")


def deployment_dir_on_disk(spec: DeploymentSpecification, root: DeploymentRoot) -> DeploymentDir:
    check_names_fit_the_root(spec, root)
    deployment = deployment_dir_of(spec, root)
    deployment.path.mkdir(parents=True, exist_ok=True)
    return deployment
