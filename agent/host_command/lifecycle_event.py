"""The command of one lifecycle event: its scripts run from the revision that supplies them.

Which revision that is (:mod:`agent.lifecycle_event.script_source`), the scripts'
environment (:mod:`agent.lifecycle_event.hook_environment`) and how they run
(:mod:`agent.lifecycle_event.runner`) are the lifecycle events' own policy; this command
reads the appspec, opens the script log and reports the log's tail.
"""

from __future__ import annotations

import structlog

from agent.application_specification.parser import read_application_specification
from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import DeploymentSpecification
from agent.errors import AgentError
from agent.host_command.deployment_folder import check_names_fit_the_root, deployment_dir_of
from agent.host_command.engine_settings import EngineSettings
from agent.lifecycle_event.hook_environment import hook_environment
from agent.lifecycle_event.runner import run_event_scripts
from agent.lifecycle_event.script_log import open_script_log
from agent.lifecycle_event.script_source import script_source_dir

log = structlog.get_logger(__name__)


def run_lifecycle_event(
    event: str,
    spec: DeploymentSpecification,
    deployment: DeploymentDir,
    settings: EngineSettings,
    download_pending: bool,
) -> str:
    with structlog.contextvars.bound_contextvars(lifecycle_event=event):
        source = script_source_dir(event, spec, deployment, settings.root, download_pending)
        archive = source.archive if source is not None else None
        if archive is None or not archive.is_dir():
            log.debug("no revision to take scripts from; nothing to run")
            return ""
        appspec = read_application_specification(archive, spec.appspec_filename)
        scripts = appspec.scripts_for(event)
        if not scripts:
            log.debug("no scripts for this event")
            return ""
        log.info("running scripts", scripts=len(scripts), revision=str(source))
        deployments_log = settings.root.deployments_log if settings.enable_deployments_log else None
        with open_script_log(
            deployment.script_log,
            spec.deployment_id,
            deployments_log,
            settings.deployments_log_rotation,
        ) as script_log:
            tail = run_event_scripts(
                event,
                scripts,
                archive,
                hook_environment(event, spec, settings.inherited_environment),
                script_log,
                settings.hook_settings,
            )
        log.info("scripts succeeded")
        return tail


def is_lifecycle_event_noop(
    event: str, spec: DeploymentSpecification, settings: EngineSettings
) -> bool:
    """Whether ``event`` would run nothing (reads the appspec from disk): no revision
    provides its scripts yet, or that revision's appspec has none for it. An appspec that
    cannot be read is not a no-op: running the event reports why."""
    try:
        check_names_fit_the_root(spec, settings.root)
    except AgentError:
        return False
    deployment = deployment_dir_of(spec, settings.root)
    source = script_source_dir(event, spec, deployment, settings.root)
    if source is None or not source.archive.is_dir():
        return True
    try:
        appspec = read_application_specification(source.archive, spec.appspec_filename)
    except AgentError:
        return False
    return not appspec.scripts_for(event)
