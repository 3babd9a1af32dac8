"""Carrying out one host command of a deployment on this host.

A deployment is a sequence of commands: ``DownloadBundle`` (fetch and unpack the revision),
``Install`` (copy files, apply permissions) and one command per lifecycle event (run the
event's scripts). The daemon receives them one at a time from the command service;
``codedeploy-local`` runs them in order. Both call :func:`execute_host_command`, which
reads and writes the deployment root exactly as the AWS agent lays it out.
"""

from __future__ import annotations

from typing import Optional

import structlog

from agent import event_names
from agent.deployment_specification.model import DeploymentSpecification
from agent.host_command.deployment_folder import deployment_dir_on_disk
from agent.host_command.download_bundle import download_bundle
from agent.host_command.engine_settings import EngineSettings
from agent.host_command.install import install
from agent.host_command.lifecycle_event import (
    RecentAppspecs,
    is_lifecycle_event_noop,
    run_lifecycle_event,
)


def execute_host_command(
    command: str,
    spec: DeploymentSpecification,
    settings: EngineSettings,
    *,
    download_pending: bool = False,
    appspecs: Optional[RecentAppspecs] = None,
) -> str:
    """Run one command of ``spec``'s deployment; return the script-log tail for the report.

    ``download_pending``: the revision is unpacked already, but this deployment's
    DownloadBundle has not had its place in the order yet (see :func:`script_source_dir`).
    ``appspecs``: the appspec readings the caller keeps (see :class:`RecentAppspecs`).
    Raises an :class:`~agent.errors.AgentError` whose diagnostics say what went wrong.
    """
    deployment = deployment_dir_on_disk(spec, settings.root)
    with structlog.contextvars.bound_contextvars(deployment_id=spec.deployment_id, command=command):
        if command == event_names.DOWNLOAD_BUNDLE:
            download_bundle(spec, deployment, settings)
            return ""
        if command == event_names.INSTALL:
            install(spec, deployment, settings)
            return ""
        return run_lifecycle_event(command, spec, deployment, settings, download_pending, appspecs)


def is_command_noop(
    command: str,
    spec: DeploymentSpecification,
    settings: EngineSettings,
    appspecs: Optional[RecentAppspecs] = None,
) -> bool:
    """Whether ``command`` would run nothing (reads the appspec from disk, or takes it from
    ``appspecs``): ``DownloadBundle`` and ``Install`` always do something; a lifecycle
    event may have no scripts to run."""
    if command in (event_names.DOWNLOAD_BUNDLE, event_names.INSTALL):
        return False
    return is_lifecycle_event_noop(command, spec, settings, appspecs)
