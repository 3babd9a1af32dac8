"""One poll of the command service and the flow of the command it hands out (docs/behaviour.md section 5).

The flow per command: fetch and open its deployment specification, decide whether it is a
no-op, acknowledge it, and unless the acknowledgement says the service is already done
with it, record it in ``ongoing-deployment/``, run it, complete it exactly once with its
diagnostics, and remove the record. A completion that fails to send is sent again; the
command itself never runs twice. The poll loop (``loop.py``) calls :func:`poll_once`;
start-up calls :func:`report_commands_interrupted_by_restart`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple, TypeVar

import structlog

from agent import event_names
from agent.aws_clients.command_service import (
    CommandServiceError,
    CommandStatus,
    DeploymentSpecificationEnvelope,
    HostCommand,
)
from agent.command_poller.backoff import BackoffPolicy
from agent.command_poller.ongoing import (
    clear_ongoing_record_files,
    engine_naming_hook_cgroups,
    read_ongoing_records_from_disk,
    remove_ongoing_record_from_disk,
    write_ongoing_record_to_disk,
)
from agent.command_poller.service_client import CommandServiceClient
from agent.deployment_root.group_lock import DaemonGroupLocks
from agent.deployment_root.names import shown_name
from agent.deployment_specification.envelope import (
    SignatureSettings,
    open_deployment_specification,
)
from agent.deployment_specification.model import DeploymentSpecError, DeploymentSpecification
from agent.deployment_specification.verified_payloads import VerifiedPayloads
from agent.errors import AgentError, Diagnostics, ErrorCode
from agent.host_command.deployment_folder import check_names_fit_the_root
from agent.host_command.dispatch import execute_host_command, is_command_noop
from agent.host_command.engine_settings import EngineSettings
from agent.host_command.lifecycle_event import RecentAppspecs
from agent.lifecycle_event.process_tree import start_cgroup_migration_warm_up
from agent.logging.printable import one_line

log = structlog.get_logger(__name__)

_MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class PollerSettings:
    """What one poll needs: who we are, how commands run, and how hard to retry a report.

    ``completion_attempts`` bounds how many times a completion is sent when the service
    cannot be reached; the waits between them follow ``backoff``.
    """

    host_identifier: str
    engine: EngineSettings
    signature: SignatureSettings
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    completion_attempts: int = 5


@dataclass(frozen=True)
class CommandOutcome:
    """What happened to one command.

    ``ran`` says whether the command was carried out; ``status`` is what was reported
    (None when nothing was: the service was already done with it, or the report failed);
    ``reported`` says whether the completion reached the service.
    """

    command: HostCommand
    deployment_id: str
    status: Optional[CommandStatus]
    diagnostics: Optional[Diagnostics]
    ran: bool
    noop: bool
    reported: bool

    def summary(self) -> str:
        """One line for the status file and systemd: what ran and how it ended."""
        what = f"{self.command.command_name} of {self.deployment_id or self.command.deployment_execution_id}"
        if self.status is None:
            return f"{what}: not run (service status already final)"
        outcome = self.status.value
        if self.diagnostics is not None and self.status is CommandStatus.FAILED:
            outcome += f" ({self.diagnostics.error_code.name}: {self.diagnostics.message})"
        return f"{what}: {outcome}"[:_MESSAGE_LIMIT]


# Called when a command starts running (its name, its deployment id); the loop uses it
# to say what the agent is doing.
CommandStarted = Callable[[HostCommand, str], None]


def diagnostics_for_exception(error: BaseException, command: str) -> Diagnostics:
    """The diagnostics of a failure: an AgentError's own, anything else UnknownError."""
    if isinstance(error, AgentError):
        return error.diagnostics()
    detail = one_line(str(error).splitlines()[0], _MESSAGE_LIMIT) if str(error) else ""
    message = f"unexpected {type(error).__name__} while running {command}" + (
        f": {detail}" if detail else ""
    )
    return Diagnostics(ErrorCode.UNKNOWN_ERROR, message)


T = TypeVar("T")


def _call_with_retries(
    call: Callable[[], T],
    what: str,
    settings: PollerSettings,
    rng: random.Random,
    **log_fields: str,
) -> T:
    """``call()``, again after a retryable service error, at most ``completion_attempts``
    times: a command handed out is not handed out again until the service gives up on it.

    The waits between attempts are not cut short by a stop request: the report of a
    command that ran matters more than a prompt exit.
    """
    attempts = max(1, settings.completion_attempts)
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except CommandServiceError as error:
            last = attempt == attempts or not error.retryable
            log.warning(
                f"{what} failed" + ("; giving up" if last else "; trying again"),
                error=error.message,
                attempt=attempt,
                **log_fields,
            )
            if last:
                raise
            time.sleep(settings.backoff.delay(attempt, throttled=error.throttled, rng=rng))
    raise AssertionError("unreachable")  # pragma: no cover


def complete_command_with_retries(
    client: CommandServiceClient,
    host_command_identifier: str,
    status: CommandStatus,
    diagnostics: Diagnostics,
    settings: PollerSettings,
    *,
    rng: random.Random,
) -> bool:
    """Send the completion, again after a retryable failure; True once it was accepted."""
    try:
        _call_with_retries(
            lambda: client.put_host_command_complete(host_command_identifier, status, diagnostics),
            "sending the completion",
            settings,
            rng,
            host_command=host_command_identifier,
        )
    except CommandServiceError:
        return False
    log.info(
        "command completed",
        host_command=host_command_identifier,
        status=status.value,
        error_code=int(diagnostics.error_code),
    )
    return True


def process_host_command(
    client: CommandServiceClient,
    command: HostCommand,
    settings: PollerSettings,
    *,
    rng: Optional[random.Random] = None,
    on_start: Optional[CommandStarted] = None,
    locks: Optional[DaemonGroupLocks] = None,
    cancelled: Callable[[], bool] = lambda: False,
    verified: Optional[VerifiedPayloads] = None,
    appspecs: Optional[RecentAppspecs] = None,
) -> CommandOutcome:
    """Carry out one command the service handed out, and report it (network, disk).

    With ``locks``, the command runs holding its deployment group's lock (it may wait for
    it, until ``cancelled()``); see :mod:`agent.deployment_root.group_lock`. With
    ``verified``, a signed specification already verified (by an earlier command of its
    deployment) is not verified again; with ``appspecs``, an appspec an earlier command
    read is not parsed again while its file is unchanged (without, the command parses it
    once for itself).

    Raises :class:`CommandServiceError` only when the specification cannot be fetched or
    the acknowledgement cannot be sent, even after retries: nothing has run then.
    """
    chance = rng or random.Random()  # noqa: S311 - jitter, not security
    appspecs = appspecs if appspecs is not None else RecentAppspecs()
    _warm_up_hook_cgroup_move(command, settings)
    with structlog.contextvars.bound_contextvars(
        command=command.command_name, host_command=command.host_command_identifier
    ):
        envelope = _fetch_specification(client, command, settings, chance)
        spec, failure = _open_specification(command, envelope, settings, verified)
        deployment_id = spec.deployment_id if spec is not None else ""
        with structlog.contextvars.bound_contextvars(deployment_id=deployment_id or None):
            noop = spec is not None and _is_noop(command.command_name, spec, settings, appspecs)
            if not noop:
                _warm_up_hook_cgroup_move(command, settings)
            answer = _call_with_retries(
                lambda: client.put_host_command_acknowledgement(
                    command.host_command_identifier, noop
                ),
                "acknowledging the command",
                settings,
                chance,
            )
            log.info("command acknowledged", noop=noop, service_status=answer and answer.value)
            if answer in (CommandStatus.SUCCEEDED, CommandStatus.FAILED):
                return _already_final(
                    client, command, deployment_id, answer, noop, settings, chance
                )
            if spec is None or failure is not None:
                diagnostics = failure or Diagnostics(ErrorCode.UNKNOWN_ERROR, "no specification")
                return _report_refused(client, command, diagnostics, settings, chance)
            if on_start is not None:
                on_start(command, deployment_id)
            return _run_and_complete(
                client, command, spec, noop, settings, chance, locks, cancelled, appspecs
            )


def _warm_up_hook_cgroup_move(command: HostCommand, settings: PollerSettings) -> None:
    """Let the kernel's wait before a hook's move into its cgroup pass while this command
    talks to the service (see :func:`start_cgroup_migration_warm_up`). Called when the
    command arrives and again before its acknowledgement: a move made within a grace
    period of the last one does not wait, so the second keeps the way clear for the hook
    however long the acknowledgement takes up to a grace period."""
    if settings.engine.hook_settings.use_cgroups and command.command_name not in (
        event_names.DOWNLOAD_BUNDLE,
        event_names.INSTALL,
    ):
        start_cgroup_migration_warm_up()


def _fetch_specification(
    client: CommandServiceClient,
    command: HostCommand,
    settings: PollerSettings,
    chance: random.Random,
) -> DeploymentSpecificationEnvelope:
    """The command's specification from the service, retried (network)."""
    return _call_with_retries(
        lambda: client.get_deployment_specification(
            command.deployment_execution_id, settings.host_identifier
        ),
        "fetching the deployment specification",
        settings,
        chance,
    )


def _open_specification(
    command: HostCommand,
    envelope: DeploymentSpecificationEnvelope,
    settings: PollerSettings,
    verified: Optional[VerifiedPayloads],
) -> Tuple[Optional[DeploymentSpecification], Optional[Diagnostics]]:
    """The command's verified specification, or the diagnostics of why it is refused.

    Whatever is wrong with the command or its specification is reported as a failed
    command; the poll loop goes on.
    """
    try:
        _check_command_name(command.command_name)
        spec = open_deployment_specification(
            envelope.format, envelope.payload, settings.signature, verified
        )
    except Exception as error:
        failure = diagnostics_for_exception(error, command.command_name)
        log.error("deployment specification refused", error=failure.message)
        return None, failure
    return spec, None


def _report_refused(
    client: CommandServiceClient,
    command: HostCommand,
    diagnostics: Diagnostics,
    settings: PollerSettings,
    chance: random.Random,
) -> CommandOutcome:
    """Complete a command that never ran as failed (network)."""
    reported = complete_command_with_retries(
        client,
        command.host_command_identifier,
        CommandStatus.FAILED,
        diagnostics,
        settings,
        rng=chance,
    )
    return CommandOutcome(command, "", CommandStatus.FAILED, diagnostics, False, False, reported)


def _check_command_name(name: str) -> None:
    # The name reaches log lines, the hooks' environment and the script log.
    if not event_names.is_event_name(name):
        raise DeploymentSpecError(
            f"command name {shown_name(name)} is not a lifecycle event name"
            f" ({event_names.EVENT_NAME_RULE})"
        )


def _is_noop(
    command: str,
    spec: DeploymentSpecification,
    settings: PollerSettings,
    appspecs: RecentAppspecs,
) -> bool:
    try:
        return is_command_noop(command, spec, settings.engine, appspecs)
    except Exception:
        # Running the command will say what is wrong, as a failed command.
        log.warning("cannot tell whether the command is a no-op", exc_info=True)
        return False


def _already_final(
    client: CommandServiceClient,
    command: HostCommand,
    deployment_id: str,
    answer: CommandStatus,
    noop: bool,
    settings: PollerSettings,
    rng: random.Random,
) -> CommandOutcome:
    # The service is done with this command: never run it. A no-op it marked Failed is
    # one it gave up waiting for; nothing was to be done, so it did succeed.
    if answer is CommandStatus.FAILED and noop:
        diagnostics = Diagnostics.succeeded()
        reported = complete_command_with_retries(
            client,
            command.host_command_identifier,
            CommandStatus.SUCCEEDED,
            diagnostics,
            settings,
            rng=rng,
        )
        return CommandOutcome(
            command, deployment_id, CommandStatus.SUCCEEDED, diagnostics, False, True, reported
        )
    log.info("service already finished with this command; not running it", status=answer.value)
    return CommandOutcome(command, deployment_id, None, None, False, noop, False)


def _run_and_complete(
    client: CommandServiceClient,
    command: HostCommand,
    spec: DeploymentSpecification,
    noop: bool,
    settings: PollerSettings,
    rng: random.Random,
    locks: Optional[DaemonGroupLocks],
    cancelled: Callable[[], bool],
    appspecs: RecentAppspecs,
) -> CommandOutcome:
    root = settings.engine.root
    status = CommandStatus.FAILED
    diagnostics: Diagnostics
    recorded = False
    try:
        write_ongoing_record_to_disk(root, spec.deployment_id, command.host_command_identifier)
        recorded = True
        if locks is not None:
            check_names_fit_the_root(spec, root)
            locks.hold_for_command(
                spec.deployment_group_id, spec.deployment_id, cancelled=cancelled
            )
        log.info("running command")
        tail = execute_host_command(
            command.command_name,
            spec,
            engine_naming_hook_cgroups(settings.engine, spec.deployment_id),
            appspecs=appspecs,
        )
        status, diagnostics = CommandStatus.SUCCEEDED, Diagnostics.succeeded(tail)
        log.info("command succeeded")
    except AgentError as error:
        diagnostics = error.diagnostics()
        log.error(
            "command failed",
            error=error.message,
            error_code=error.error_code.name,
            script=error.script_name or None,
        )
    except Exception as error:
        # A bug of ours: the operator sees one line in the report; the traceback stays here.
        diagnostics = diagnostics_for_exception(error, command.command_name)
        log.exception("command failed unexpectedly", error=diagnostics.message)
    if locks is not None:
        locks.command_finished(
            spec.deployment_group_id,
            command.command_name,
            failed=status is CommandStatus.FAILED,
            lifecycle_events=spec.all_possible_lifecycle_events,
        )
    reported = complete_command_with_retries(
        client, command.host_command_identifier, status, diagnostics, settings, rng=rng
    )
    if recorded:
        remove_ongoing_record_from_disk(root, spec.deployment_id)
    return CommandOutcome(command, spec.deployment_id, status, diagnostics, True, noop, reported)


def report_commands_interrupted_by_restart(
    client: CommandServiceClient, settings: PollerSettings, *, rng: Optional[random.Random] = None
) -> List[str]:
    """Report each command a previous run left in ``ongoing-deployment/`` as failed.

    Records younger than a day are completed as Failed with FailedAfterRestart, then all
    records are removed (older ones silently). Returns the host command ids reported.
    Raises :class:`CommandServiceError` when a report cannot be sent; the records are kept
    then, so the next attempt reports them.
    """
    chance = rng or random.Random()  # noqa: S311 - jitter, not security
    records = read_ongoing_records_from_disk(settings.engine.root)
    reported: List[str] = []
    for record in records:
        if not record.is_recent or not record.host_command_identifier:
            log.info(
                "removing an old ongoing-deployment record", deployment_id=record.deployment_id
            )
            clear_ongoing_record_files([record])
            continue
        diagnostics = Diagnostics(
            ErrorCode.FAILED_AFTER_RESTART,
            f"the agent stopped while this command of deployment {record.deployment_id} was"
            " running, and was restarted; its outcome is unknown",
        )
        with structlog.contextvars.bound_contextvars(deployment_id=record.deployment_id):
            if not complete_command_with_retries(
                client,
                record.host_command_identifier,
                CommandStatus.FAILED,
                diagnostics,
                settings,
                rng=chance,
            ):
                raise CommandServiceError(
                    f"could not report host command {record.host_command_identifier} as failed"
                    " after the restart; will try again",
                    operation="PutHostCommandComplete",
                    retryable=True,
                )
            log.warning(
                "reported a command interrupted by the restart as failed",
                host_command=record.host_command_identifier,
            )
        clear_ongoing_record_files([record])
        reported.append(record.host_command_identifier)
    return reported


@dataclass(frozen=True)
class PollResult:
    """What one poll found: no command, or a command and its outcome."""

    command: Optional[HostCommand] = None
    outcome: Optional[CommandOutcome] = None


def poll_once(
    client: CommandServiceClient,
    settings: PollerSettings,
    *,
    rng: Optional[random.Random] = None,
    accept: Optional[Callable[[HostCommand], bool]] = None,
    on_start: Optional[CommandStarted] = None,
    locks: Optional[DaemonGroupLocks] = None,
    cancelled: Callable[[], bool] = lambda: False,
    verified: Optional[VerifiedPayloads] = None,
    appspecs: Optional[RecentAppspecs] = None,
) -> PollResult:
    """Long-poll once and carry out the command, if any (network, disk).

    ``accept`` is asked about a command as soon as it arrives; when it says no (the agent
    is stopping) the command is left alone, not even acknowledged, and the service hands
    it out again. Raises :class:`CommandServiceError` when the poll, the specification or
    the acknowledgement fails.
    """
    command = client.poll_host_command(settings.host_identifier)
    if command is None:
        return PollResult()
    if accept is not None and not accept(command):
        log.info(
            "stopping: leaving the command just received to the service",
            command=command.command_name,
            host_command=command.host_command_identifier,
        )
        return PollResult(command)
    outcome = process_host_command(
        client,
        command,
        settings,
        rng=rng,
        on_start=on_start,
        locks=locks,
        cancelled=cancelled,
        verified=verified,
        appspecs=appspecs,
    )
    return PollResult(command, outcome)
