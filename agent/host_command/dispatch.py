"""Carrying out one host command of a deployment on this host.

A deployment is a sequence of commands: ``DownloadBundle`` (fetch and unpack the revision),
``Install`` (copy files, apply permissions) and one command per lifecycle event (run the
event's scripts). The daemon receives them one at a time from the command service;
``codedeploy-local`` runs them in order. Both call :func:`execute_host_command`, which
reads and writes the deployment root exactly as the AWS agent lays it out.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Mapping, Optional

import structlog

from agent.application_specification.model import AppSpecError
from agent.application_specification.parser import (
    check_hook_events,
    read_application_specification,
)
from agent.configuration.model import AgentConfig
from agent.deployment_root.layout import DeploymentDir, DeploymentRoot
from agent.deployment_root.names import shown_name, unsafe_group_id_reason, unsafe_name_reason
from agent.deployment_root.retention import prune_old_deployments_on_disk
from agent.deployment_specification.model import DeploymentSpecError, DeploymentSpecification
from agent.errors import AgentError
from agent.host_command.bundle import UnpackPolicy
from agent.host_command.download import FetchSettings, download_revision_to_disk
from agent.installer.agent_folders import AgentFolders
from agent.installer.install_process import InstallHelper, InstallRequest
from agent.lifecycle_event import events
from agent.lifecycle_event.runner import HookRunSettings, OutputsLeftOpenPolicy, run_event_scripts
from agent.lifecycle_event.script_log import open_script_log
from agent.logging.shared_log_file import DEPLOYMENTS_LOG_ROTATION, LogRotation

log = structlog.get_logger(__name__)

# Inherited variables a hook keeps when restrict_hook_env_to_allowlist is on.
HOOK_ENV_ALLOWLIST: FrozenSet[str] = frozenset(
    {
        "PATH",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TERM",
        "TMPDIR",
    }
)


@dataclass(frozen=True)
class EngineSettings:
    """What the engine needs from the agent configuration, resolved once."""

    root: DeploymentRoot
    max_revisions: int = 5
    unpack_policy: UnpackPolicy = field(default_factory=UnpackPolicy)
    hook_settings: HookRunSettings = field(default_factory=HookRunSettings)
    enable_deployments_log: bool = True
    deployments_log_rotation: LogRotation = DEPLOYMENTS_LOG_ROTATION
    fetch: FetchSettings = field(default_factory=FetchSettings)
    reject_symlink_permission_targets: bool = False
    # The agent's other folders, which no files entry may install into (with root).
    log_dir: Optional[Path] = None
    pid_dir: Optional[Path] = None
    # The daemon's: Install runs in a helper process, so that a program with threads
    # still installs large trees with two processes. None: Install runs in this process.
    install_helper: Optional[InstallHelper] = None

    @property
    def agent_folders(self) -> AgentFolders:
        return AgentFolders.of(self.root.path, self.log_dir, self.pid_dir)

    @classmethod
    def from_config(cls, config: AgentConfig) -> EngineSettings:
        return cls(
            root=DeploymentRoot(config.root_dir, config.ongoing_deployment_tracking),
            max_revisions=config.max_revisions,
            unpack_policy=UnpackPolicy(
                reject_symlinks=config.reject_symlinks_in_bundle,
                apply_ownership=not config.ignore_ownership_in_bundle,
                reject_unsafe_permissions=config.reject_unsafe_permissions_in_bundle,
                max_extraction_size=config.archive_max_extraction_size,
            ),
            hook_settings=HookRunSettings(
                kill_grace_seconds=config.hook_kill_grace_seconds,
                outputs_left_open=OutputsLeftOpenPolicy(config.hook_outputs_left_open),
                use_cgroups=config.hook_use_cgroups,
                strip_loader_env=config.strip_loader_env_in_hooks,
                env_allowlist=HOOK_ENV_ALLOWLIST if config.restrict_hook_env_to_allowlist else None,
            ),
            enable_deployments_log=config.enable_deployments_log,
            fetch=FetchSettings.from_config(config, os.environ.get("AWS_REGION") or None),
            reject_symlink_permission_targets=config.reject_symlink_permission_targets,
            log_dir=config.log_dir,
            pid_dir=config.pid_dir,
        )


def deployment_dir_of(spec: DeploymentSpecification, root: DeploymentRoot) -> DeploymentDir:
    return DeploymentDir(root.deployment_dir(spec.deployment_group_id, spec.deployment_id))


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


def execute_host_command(
    command: str,
    spec: DeploymentSpecification,
    settings: EngineSettings,
    *,
    environ: Optional[Mapping[str, str]] = None,
    download_pending: bool = False,
) -> str:
    """Run one command of ``spec``'s deployment; return the script-log tail for the report.

    ``download_pending``: the revision is unpacked already, but this deployment's
    DownloadBundle has not had its place in the order yet (see :func:`script_source_dir`).
    Raises an :class:`~agent.errors.AgentError` whose diagnostics say what went wrong.
    """
    deployment = _deployment_dir_on_disk(spec, settings.root)
    with structlog.contextvars.bound_contextvars(deployment_id=spec.deployment_id, command=command):
        if command == events.DOWNLOAD_BUNDLE:
            _download_bundle(spec, deployment, settings)
            return ""
        if command == events.INSTALL:
            _install(spec, deployment, settings)
            return ""
        return _run_lifecycle_event(
            command,
            spec,
            deployment,
            settings,
            os.environ if environ is None else environ,
            download_pending,
        )


def _deployment_dir_on_disk(spec: DeploymentSpecification, root: DeploymentRoot) -> DeploymentDir:
    check_names_fit_the_root(spec, root)
    deployment = deployment_dir_of(spec, root)
    deployment.path.mkdir(parents=True, exist_ok=True)
    return deployment


def fetch_revision_to_disk(
    spec: DeploymentSpecification, settings: EngineSettings, *, prune_first: bool = True
) -> DeploymentDir:
    """DownloadBundle's work without its checks and its marker: make the deployment's
    folder, prune the group's oldest ones (``prune_first``), fetch the revision and unpack
    it into ``deployment-archive`` (disk, network). ``codedeploy-local`` calls it on its
    own for a local archive, without pruning, to check the unpacked revision before
    ApplicationStop: a revision it then refuses has changed nothing of the group."""
    deployment = _deployment_dir_on_disk(spec, settings.root)
    if prune_first:
        prune_old_deployments_of_group_on_disk(spec, settings)
    download_revision_to_disk(
        spec.revision,
        deployment,
        appspec_filename=spec.appspec_filename,
        policy=settings.unpack_policy,
        fetch=settings.fetch,
    )
    return deployment


def prune_old_deployments_of_group_on_disk(
    spec: DeploymentSpecification, settings: EngineSettings
) -> None:
    """Keep the group's newest ``max_revisions`` deployment folders (and the last
    successful one), this deployment's among them."""
    deployment = deployment_dir_of(spec, settings.root)
    prune_old_deployments_on_disk(
        settings.root, spec.deployment_group_id, deployment.path, settings.max_revisions
    )


def record_downloaded_revision_on_disk(
    spec: DeploymentSpecification, settings: EngineSettings
) -> None:
    """DownloadBundle's last step: the group's most recent deployment is this one."""
    deployment = deployment_dir_of(spec, settings.root)
    settings.root.write_most_recent_marker(spec.deployment_group_id, deployment.path)


def _download_bundle(
    spec: DeploymentSpecification, deployment: DeploymentDir, settings: EngineSettings
) -> None:
    started = time.monotonic()
    if settings.install_helper is not None:
        settings.install_helper.start_ahead()  # its start-up runs beside the download
    fetch_revision_to_disk(spec, settings)
    # Catch an appspec naming events nobody will run, or a deployment naming custom events
    # the appspec lacks, before any of the new revision's scripts runs.
    appspec = read_application_specification(deployment.archive, spec.appspec_filename)
    custom = _custom_events(spec)
    check_hook_events(appspec, custom, filename=spec.appspec_filename)
    missing = sorted(e for e in custom if e not in appspec.hooks)
    if missing:
        raise AppSpecError(
            f"{spec.appspec_filename} has no hooks for {', '.join(missing)}, which the"
            " deployment names as custom lifecycle events"
        )
    record_downloaded_revision_on_disk(spec, settings)
    log.info(
        "revision downloaded",
        archive=str(deployment.archive),
        seconds=round(time.monotonic() - started, 3),
    )


def _install(
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
    helper = settings.install_helper
    result = request.install_on_disk() if helper is None else helper.install_on_disk(request)
    settings.root.write_last_successful_marker(spec.deployment_group_id, deployment.path)
    log.info(
        "revision installed",
        seconds=round(time.monotonic() - started, 3),
        file_exists_behavior=behavior.value,
        **dataclasses.asdict(result),
    )


def _custom_events(spec: DeploymentSpecification) -> FrozenSet[str]:
    named = spec.all_possible_lifecycle_events or ()
    return frozenset(e for e in named if not events.is_standard(e))


def script_source_dir(
    event: str,
    spec: DeploymentSpecification,
    deployment: DeploymentDir,
    root: DeploymentRoot,
    download_pending: bool = False,
) -> Optional[Path]:
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
        if event in events.ROLLBACK_MOST_RECENT_EVENTS:
            return root.read_most_recent_deployment_dir(group)
        if event in events.ROLLBACK_LAST_SUCCESSFUL_EVENTS:
            return root.read_last_successful_deployment_dir(group)
    unpacked = not download_pending and deployment.archive.is_dir()
    if events.uses_previous_revision(event) and not unpacked:
        return root.read_last_successful_deployment_dir(group)
    # Before DownloadBundle's place no script runs from the new revision.
    return None if download_pending else deployment.path


def hook_environment(
    event: str, spec: DeploymentSpecification, environ: Mapping[str, str]
) -> Dict[str, str]:
    """The agent's environment plus the variables of the hook contract (DESIGN section 9)."""
    env = dict(environ)
    env.update(
        LIFECYCLE_EVENT=event,
        DEPLOYMENT_ID=spec.deployment_id,
        APPLICATION_NAME=spec.application_name,
        DEPLOYMENT_GROUP_NAME=spec.deployment_group_name,
        DEPLOYMENT_GROUP_ID=spec.deployment_group_id,
    )
    env.update(spec.revision.hook_environment())
    return env


def _run_lifecycle_event(
    event: str,
    spec: DeploymentSpecification,
    deployment: DeploymentDir,
    settings: EngineSettings,
    environ: Mapping[str, str],
    download_pending: bool,
) -> str:
    with structlog.contextvars.bound_contextvars(lifecycle_event=event):
        source = script_source_dir(event, spec, deployment, settings.root, download_pending)
        archive = DeploymentDir(source).archive if source is not None else None
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
                hook_environment(event, spec, environ),
                script_log,
                settings.hook_settings,
            )
        log.info("scripts succeeded")
        return tail


def is_command_noop(command: str, spec: DeploymentSpecification, settings: EngineSettings) -> bool:
    """Whether ``command`` would run nothing (reads the appspec from disk).

    ``DownloadBundle`` and ``Install`` always do something. A lifecycle event is a no-op
    when no revision provides its scripts yet, or that revision's appspec has none for it.
    An appspec that cannot be read is not a no-op: running the command reports why.
    """
    if command in (events.DOWNLOAD_BUNDLE, events.INSTALL):
        return False
    try:
        check_names_fit_the_root(spec, settings.root)
    except AgentError:
        return False
    deployment = deployment_dir_of(spec, settings.root)
    source = script_source_dir(command, spec, deployment, settings.root)
    if source is None or not DeploymentDir(source).archive.is_dir():
        return True
    try:
        appspec = read_application_specification(
            DeploymentDir(source).archive, spec.appspec_filename
        )
    except AgentError:
        return False
    return not appspec.scripts_for(command)
