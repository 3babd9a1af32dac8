"""The ``codedeploy-local`` program: flags, validation, the run, one clear outcome line.

Flags and defaults match the AWS developer utility so existing scripts keep working.
Everything that can be checked before the first command is checked first (flags, the
bundle, its appspec and the events it names): a folder revision where it is, before the
group's lock; a local archive once the deployment holds the lock, by carrying out its
DownloadBundle first and checking the unpacked revision (see
:mod:`.revision_preflight`), so the archive is read only once. Then the commands run in
order (that DownloadBundle is not run again), and the first failure stops the deployment
with the failing script and the path of its log.
Exit status: 0 success, 1 the deployment failed, 2 the request was invalid, 128 plus the
signal's number when a signal stopped it (130 for Ctrl-C; see :mod:`agent.interrupts`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import structlog

from agent import __version__, event_names
from agent.command_line import OneLineArgumentParser
from agent.command_poller.ongoing import end_hook_cgroups_left_on_disk, engine_naming_hook_cgroups
from agent.configuration.folder_modes import restrict_folders_on_disk
from agent.configuration.loader import read_agent_config
from agent.configuration.model import DEFAULT_CONFIG_FILE, AgentConfig
from agent.deployment_root.group_lock import LockHolder, lock_group_for_deployment_on_disk
from agent.deployment_root.layout import DeploymentDir
from agent.deployment_root.trash import DeploymentTrash
from agent.deployment_specification.model import (
    BundleType,
    DeploymentSpecification,
    LocalRevision,
)
from agent.errors import AgentError
from agent.host_command.deployment_folder import deployment_dir_of
from agent.host_command.dispatch import execute_host_command
from agent.host_command.download_bundle import (
    fetch_revision_to_disk,
    prune_old_deployments_of_group_on_disk,
    record_downloaded_revision_on_disk,
)
from agent.host_command.engine_settings import EngineSettings
from agent.interrupts import interrupted_by
from agent.local_deployment.flags import add_local_flags
from agent.local_deployment.request import (
    LocalDeploymentRequest,
    LocalUsageError,
    build_local_request,
)
from agent.local_deployment.revision_preflight import check_local_revision_on_disk
from agent.logging.printable import escape_control_characters
from agent.logging.setup import TeeLogger, configure_tee_logging
from agent.revision.archive_staging import remove_tree_on_disk
from agent.revision.fetchers.settings import FetchSettings

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_INVALID = 2

# Where the AWS utility writes its log, under log_dir.
LOCAL_LOG_NAME = "codedeploy-local.log"


_EPILOG = """exit statuses:
  0    the deployment succeeded
  1    the deployment failed: the line names the command, the failing script and its log
  2    refused before anything ran (bad flag, missing bundle, invalid appspec, bad --events)
  128+n stopped by signal n: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP; the running
        hook's whole process tree is ended first

logs:
  progress on stderr and in <log_dir>/codedeploy-local.log (log_dir from the
  configuration, default /var/log/aws/codedeploy-agent); every hook's output in the
  deployment's logs/scripts.log under the deployment root (root_dir, default
  /opt/codedeploy-agent/deployment-root), and in
  <root_dir>/deployment-logs/codedeploy-agent-deployments.log.
"""


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="codedeploy-local",
        description="Deploy a revision on this host exactly as the CodeDeploy agent would, with no service.",
        epilog=_EPILOG,
    )
    add_local_flags(parser)
    parser.add_argument(
        "-v", "--version", action="version", version=f"codedeploy-local {__version__}"
    )
    return parser


def _prepare(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[AgentConfig, LocalDeploymentRequest]:
    """Everything checked before a command runs; raises AgentError on a bad request."""
    config_path = Path(args.agent_configuration_file or DEFAULT_CONFIG_FILE)
    config = read_agent_config(
        config_path, required=args.agent_configuration_file is not None, environ=environ
    )
    request = build_local_request(
        bundle_location=args.bundle_location or os.getcwd(),
        bundle_type=args.type,
        file_exists_behavior=args.file_exists_behavior,
        deployment_group_id=args.deployment_group,
        deployment_group_name=args.deployment_group_name,
        application_name=args.application_name,
        events_text=args.events,
        appspec_filename=args.appspec_filename,
        reserved_root_names=(config.ongoing_deployment_tracking,),
    )
    revision = request.spec.revision
    if isinstance(revision, LocalRevision) and revision.bundle_type is BundleType.DIRECTORY:
        agent_folders = _engine_settings(config, environ).agent_folders
        check_local_revision_on_disk(request, revision.location, agent_folders)
    return config, request


def _engine_settings(
    config: AgentConfig, environ: Mapping[str, str], trash: Optional[DeploymentTrash] = None
) -> EngineSettings:
    """The engine's settings for this program: S3 revisions in ``AWS_REGION`` when it is set
    (otherwise botocore's own region chain), with botocore's credential chain; hooks inherit
    ``environ``."""
    region = environ.get("AWS_REGION") or None
    fetch = FetchSettings.from_config(config, region=region)
    return EngineSettings.from_config(config, fetch, environ, trash=trash)


def _check_root_writable(config: AgentConfig) -> None:
    try:
        config.root_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LocalUsageError(
            f"cannot create the deployment root {config.root_dir}: {error.strerror}; run as"
            " root or give -c a configuration whose root_dir you can write"
        ) from None
    if not os.access(config.root_dir, os.W_OK | os.X_OK):
        raise LocalUsageError(
            f"cannot write the deployment root {config.root_dir}; run as root or give -c a"
            " configuration whose root_dir you can write"
        )


def run_local_deployment(
    argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None
) -> int:
    """The program; ``environ`` is the environment it runs in (this process's by default),
    read here once: the configuration's checks, S3's region and the hooks take it."""
    environ = dict(os.environ) if environ is None else environ
    args = build_parser().parse_args(argv)
    try:
        config, request = _prepare(args, environ)
        _check_root_writable(config)
        restrict_folders_on_disk(config, daemon=False)
    except AgentError as error:
        print(f"codedeploy-local: {error.message}", file=sys.stderr)
        return EXIT_INVALID

    tee = configure_tee_logging(
        config.log_dir / LOCAL_LOG_NAME, verbose=config.verbose, utc=config.time_zone == "utc"
    )
    spec = request.spec
    settings = _engine_settings_on_disk(config, environ, spec.deployment_id)
    deployment = deployment_dir_of(spec, settings.root)
    try:
        # Held until this process exits, however it exits: the kernel lets go of it.
        _group_lock = lock_group_for_deployment_on_disk(
            settings.root,
            spec.deployment_group_id,
            spec.deployment_id,
            "codedeploy-local",
            wait_seconds=0 if args.no_wait else None,
            on_wait=lambda holder: _say_waiting(holder, spec.deployment_group_id),
        )
    except AgentError as error:
        print(f"codedeploy-local: {error.message}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt as error:
        return _say_interrupted(spec.deployment_id, "before it started", error)
    # Each event finds the new revision on disk once DownloadBundle put it there.
    download_pending = False
    if (
        isinstance(spec.revision, LocalRevision)
        and spec.revision.bundle_type is not BundleType.DIRECTORY
    ):
        refused = _download_early(request, spec.revision.location, settings, deployment, tee)
        if refused is not None:
            return refused
        # Unpacked already; the events before DownloadBundle's place still run the last
        # successful revision's scripts (or none), as if it were not.
        download_pending = True
    print(f"Starting to execute deployment from within folder {deployment.path}", flush=True)
    try:
        return _run_commands(request, settings, deployment, download_pending)
    finally:
        # Old deployment folders go on being removed while the commands run; not past the
        # program's end.
        if settings.trash is not None:
            settings.trash.wait()


def _run_commands(
    request: LocalDeploymentRequest,
    settings: EngineSettings,
    deployment: DeploymentDir,
    download_pending: bool,
) -> int:
    """Run the request's commands in order; the first failure ends the deployment.

    ``download_pending`` when the pre-flight already carried out DownloadBundle (a local
    archive): at its place only the group's old folders are pruned and its record written.
    """
    spec = request.spec
    for command in request.commands:
        try:
            if command == event_names.DOWNLOAD_BUNDLE and download_pending:
                _finish_early_download(spec, settings)
                download_pending = False
                continue
            execute_host_command(command, spec, settings, download_pending=download_pending)
        except AgentError as error:
            _report_failure(spec.deployment_id, command, error, deployment.script_log)
            return EXIT_FAILED
        except KeyboardInterrupt as error:
            # The hook runner has already ended the interrupted script's process tree, and
            # the install its second process.
            return _say_interrupted(spec.deployment_id, f"in {command}", error)
        except OSError as error:
            # The host refused something the agent needed (permissions, disk): one line.
            _report_failure(
                spec.deployment_id, command, AgentError(_describe(error)), deployment.script_log
            )
            return EXIT_FAILED
    print(f"Deployment {spec.deployment_id} succeeded", flush=True)
    return EXIT_SUCCEEDED


def _engine_settings_on_disk(
    config: AgentConfig, environ: Mapping[str, str], deployment_id: str
) -> EngineSettings:
    """The engine's settings for this run, once the configuration's warnings are logged and
    the hook cgroups a killed agent left behind are ended (reads and writes cgroupfs)."""
    log = structlog.get_logger("codedeploy-local")
    for warning in config.warnings:
        log.warning(warning)
    trash = DeploymentTrash(config.root_dir)
    # What an earlier run left in the trash goes first, beside this deployment.
    trash.start_emptying()
    settings = _engine_settings(config, environ, trash)
    settings = engine_naming_hook_cgroups(settings, deployment_id)
    for cgroup in end_hook_cgroups_left_on_disk(settings.root):
        log.warning("ended the hook cgroup a killed agent left behind", cgroup=str(cgroup))
    return settings


def _download_early(
    request: LocalDeploymentRequest,
    bundle: Path,
    settings: EngineSettings,
    deployment: DeploymentDir,
    tee: TeeLogger,
) -> Optional[int]:
    """Carry out the DownloadBundle of a local archive and check the unpacked revision,
    before the first command; None when all is well, else the exit status of the refusal
    (or of the interrupt), said in one line, the deployment's folder removed."""
    spec = request.spec
    group_dir = settings.root.group_dir(spec.deployment_group_id)
    group_is_new = not group_dir.exists()
    # Refused, the request is one line: what the download logged on the way is dropped.
    tee.hold_lines()
    try:
        _fetch_and_check(request, bundle, settings)
    except (AgentError, OSError, KeyboardInterrupt) as error:
        tee.release_lines(write=False)
        _remove_refused_deployment_on_disk(deployment, group_dir if group_is_new else None)
        if isinstance(error, KeyboardInterrupt):
            return _say_interrupted(spec.deployment_id, "before it started", error)
        message = error.message if isinstance(error, AgentError) else _describe(error)
        print(f"codedeploy-local: {escape_control_characters(message)}", file=sys.stderr)
        return EXIT_INVALID
    tee.release_lines(write=True)
    return None


def _fetch_and_check(
    request: LocalDeploymentRequest, bundle: Path, settings: EngineSettings
) -> None:
    spec = request.spec
    with structlog.contextvars.bound_contextvars(
        deployment_id=spec.deployment_id, command=event_names.DOWNLOAD_BUNDLE
    ):
        started = time.monotonic()
        deployment = fetch_revision_to_disk(spec, settings, prune_first=False)
        check_local_revision_on_disk(
            request, deployment.archive, settings.agent_folders, bundle=bundle
        )
        structlog.get_logger("codedeploy-local").info(
            "revision downloaded and checked before the first command",
            archive=str(deployment.archive),
            seconds=round(time.monotonic() - started, 3),
        )


def _finish_early_download(spec: DeploymentSpecification, settings: EngineSettings) -> None:
    """DownloadBundle's place in the order, when it was carried out before the first
    command: the group's old folders are pruned and its record written, nothing else."""
    with structlog.contextvars.bound_contextvars(
        deployment_id=spec.deployment_id, command=event_names.DOWNLOAD_BUNDLE
    ):
        prune_old_deployments_of_group_on_disk(spec, settings)
        record_downloaded_revision_on_disk(spec, settings)
        structlog.get_logger("codedeploy-local").info(
            "DownloadBundle was carried out before the first command; not run again"
        )


def _remove_refused_deployment_on_disk(
    deployment: DeploymentDir, new_group: Optional[Path]
) -> None:
    """Remove what a refused early download made: the deployment's folder, and the
    group's folder when this run created it (the group's lock keeps others out of both)."""
    with contextlib.suppress(OSError):
        remove_tree_on_disk(deployment.path)
    if new_group is not None:
        with contextlib.suppress(OSError):
            new_group.rmdir()


def _describe(error: OSError) -> str:
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror or error}{where}"


def _say_interrupted(deployment_id: str, where: str, error: KeyboardInterrupt) -> int:
    """One line for the signal that stopped the deployment; returns the exit status."""
    interrupted = interrupted_by(error)
    # Ctrl-C goes without saying; another signal is named.
    named = "" if interrupted.signal_number == signal.SIGINT else f" ({interrupted.signal_name})"
    print(f"Deployment {deployment_id} interrupted {where}{named}", file=sys.stderr, flush=True)
    return interrupted.exit_status


def _say_waiting(holder: LockHolder, group_id: str) -> None:
    print(
        f"codedeploy-local: waiting for {holder.describe()} to finish with deployment group"
        f" {group_id}",
        file=sys.stderr,
        flush=True,
    )


def _report_failure(deployment_id: str, command: str, error: AgentError, script_log: Path) -> None:
    lines: List[str] = [f"Deployment {deployment_id} failed in {command}: {error.message}"]
    if error.script_name:
        lines.append(f"Failing script: {error.script_name}")
    if command not in (event_names.DOWNLOAD_BUNDLE, event_names.INSTALL) and script_log.exists():
        lines.append(f"Script log: {script_log}")
    # The message can quote a hook's process names or file names: no terminal escapes.
    print("\n".join(map(escape_control_characters, lines)), file=sys.stderr, flush=True)


def main() -> None:
    """Kept for installs whose console script still names it; see :func:`.entry.main`."""
    from agent.local_deployment.entry import main as entry_main

    entry_main()
