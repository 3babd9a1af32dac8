"""The Install command: the unpacked revision copied into place as its appspec says.

The copy itself, the permissions and the cleanup file are :mod:`agent.installer`'s;
this command reads the appspec, picks the file-exists behaviour (the appspec's, else the
deployment's) and, once everything is in place, marks the deployment the group's last
successful one.
"""

from __future__ import annotations

import dataclasses
import time

import structlog

from agent.application_specification.parser import read_application_specification
from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import DeploymentSpecification
from agent.host_command.engine_settings import EngineSettings
from agent.installer.install_process import InstallRequest

log = structlog.get_logger(__name__)


def install(
    spec: DeploymentSpecification, deployment: DeploymentDir, settings: EngineSettings
) -> None:
    appspec = read_application_specification(deployment.archive, spec.appspec_filename)
    behavior = appspec.file_exists_behavior or spec.file_exists_behavior
    started = time.monotonic()
    request = InstallRequest(
        appspec,
        deployment.archive,
        settings.root,
        spec.deployment_group_id,
        behavior,
        settings.agent_folders,
        settings.reject_symlink_permission_targets,
    )
    # The daemon installs through its helper process (see EngineSettings.install_helper).
    helper = settings.install_helper
    result = request.install_on_disk() if helper is None else helper.install_on_disk(request)
    settings.root.write_last_successful_marker(spec.deployment_group_id, deployment)
    log.info(
        "revision installed",
        seconds=round(time.monotonic() - started, 3),
        file_exists_behavior=behavior.value,
        **dataclasses.asdict(result),
    )
