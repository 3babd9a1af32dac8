"""The ``codedeploy-agent`` program: ``run | start | stop | restart | status | prepare | version``.

``run`` is the daemon in the foreground (what systemd starts): it logs to
``<log_dir>/<program_name>.log`` (and to the terminal when run in one; otherwise a few
lines for systemd's journal go to stderr, see :mod:`agent.daemon.journal`), refuses to
start when the configured deployment signer CA file cannot be used, claims the pid file,
tells systemd it is ready, finds the host identity (waiting for it with back-off when it
is not there yet, see :mod:`agent.daemon.identity_wait`), polls the command service until
SIGTERM or SIGINT, lets a running command finish (up to
``kill_agent_max_wait_time_seconds``) and exits 0. Under systemd it reports a status line
and watchdog pings. ``start`` / ``stop`` / ``restart`` / ``status`` manage it through the
pid file on hosts without systemd (``status`` exits 3 when it is not running, as LSB init
scripts do; ``status --json`` says the same as one JSON object). ``prepare`` checks the
configuration and makes the agent's folders (:mod:`agent.daemon.prepare`). A
configuration or start-up problem is one line and exit 1; a bad command line is one line
and exit 2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NoReturn, Optional, Sequence

import structlog

from agent import __version__
from agent.aws_clients.clients import S3Clients
from agent.aws_clients.command_service import CommandServiceSettings, new_command_service_client
from agent.aws_clients.credentials import credentials_for
from agent.aws_clients.host_identity import HostIdentityError, resolve_host_identity
from agent.aws_clients.instance_metadata import RetryPolicy
from agent.aws_clients.wire_log import WireLogSettings, wire_log_file_for
from agent.command_line import OneLineArgumentParser
from agent.command_poller.backoff import BackoffPolicy
from agent.command_poller.loop import RUNNING, STOPPING, LoopStatus, PollLoop, StatusListener
from agent.command_poller.ongoing import end_hook_cgroups_left_on_disk
from agent.command_poller.poller import PollerSettings
from agent.configuration.folder_modes import restrict_folders_on_disk
from agent.configuration.loader import read_agent_config
from agent.configuration.model import DEFAULT_CONFIG_FILE, AgentConfig
from agent.configuration.on_premises import OnPremisesConfigError
from agent.daemon.identity_wait import KeepAlive, wait_for_identity
from agent.daemon.journal import Journal
from agent.daemon.pidfile import (
    claim_pid_file,
    process_is_running,
    release_pid_file,
    running_pid,
)
from agent.daemon.prepare import prepare_agent_on_disk
from agent.daemon.status import (
    DaemonStatus,
    compose_status_line,
    describe_status,
    read_status_file,
    status_file_for,
    write_status_file,
)
from agent.daemon.stop_request import StopRequest
from agent.daemon.systemd_notify import (
    notify_systemd,
    status_message,
    watchdog_interval_seconds,
)
from agent.deployment_root.layout import DeploymentRoot
from agent.deployment_root.trash import DeploymentTrash
from agent.deployment_specification.envelope import REGION_PLACEHOLDER, SignatureSettings
from agent.deployment_specification.signature import (
    check_signer_trust_on_disk,
    describe_signer_ca_file_on_disk,
)
from agent.errors import AgentError
from agent.host_command.engine_settings import EngineSettings
from agent.installer.install_process import InstallHelper
from agent.logging.printable import escape_control_characters
from agent.logging.setup import configure_file_logging
from agent.process_control import exit_without_teardown
from agent.revision.fetchers.settings import FetchSettings

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3  # LSB: program is not running

VERBS = ("run", "start", "stop", "restart", "status", "prepare", "version")
# How long ``start`` waits for the daemon to claim its pid file.
START_TIMEOUT_SECONDS = 30.0
# ``stop`` waits for the daemon's own wait for a command, and this much more.
STOP_MARGIN_SECONDS = 30.0
# Back-off caps: a host never waits longer than this between polls after errors.
ERROR_BACKOFF_CAP_SECONDS = 300.0
THROTTLE_BACKOFF_CAP_SECONDS = 900.0
# One try at EC2 metadata gives up after this long; the identity wait tries again later.
IMDS_RETRY_PER_TRY = RetryPolicy(total_wait=20.0)


_EPILOG = f"""verbs:
  run      the daemon in the foreground (what systemd starts); SIGTERM or Ctrl-C stops
           polling, lets a running command finish, and exits
  start    start the daemon in the background and wait until it runs (hosts without systemd)
  stop     stop the daemon started by start, after its running command (if any) finishes
  restart  stop, then start
  status   whether the daemon runs, its pid, what it is doing and for how long, the last
           command's outcome, and how deployment specifications are verified; with --json,
           one JSON object (running, pid, version, state, busy, line, since, ...)
  prepare  check the configuration (and the signer CA file and on-premises file it
           names), create the log folder, the pid folder and the deployment root with the
           configured modes, and print one line saying what was checked
  version  print the version (as --version does)

exit statuses:
  0  done (status: the daemon is running)
  1  failed: a bad configuration, the daemon could not start or stop; one line on stderr
  2  bad command line
  3  status: the daemon is not running

logs:
  <log_dir>/<program_name>.log (default /var/log/aws/codedeploy-agent/codedeploy-agent.log),
  rotated; every hook's output in <root_dir>/deployment-logs/codedeploy-agent-deployments.log
  and in each deployment's logs/scripts.log. The configuration file is
  {DEFAULT_CONFIG_FILE} unless --config_file names another.
"""


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="codedeploy-agent",
        description="The CodeDeploy host agent (Python work-alike): polls the CodeDeploy"
        " command service and runs the deployments it hands out on this host.",
        epilog=_EPILOG,
    )
    parser.add_argument(
        "--config_file",
        "-c",
        "--config-file",
        dest="config_file",
        default=None,
        help=f"agent configuration (default: {DEFAULT_CONFIG_FILE})",
    )
    parser.add_argument("--version", action="version", version=f"codedeploy-agent {__version__}")
    parser.add_argument(
        "--json", action="store_true", help="status only: print one JSON object instead"
    )
    parser.add_argument(
        "verb", choices=VERBS, metavar="{" + ",".join(VERBS) + "}", help="what to do"
    )
    return parser


def _load_config(path_text: Optional[str], environ: Mapping[str, str]) -> AgentConfig:
    path = Path(path_text) if path_text else DEFAULT_CONFIG_FILE
    return read_agent_config(path, required=path_text is not None, environ=environ)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json and args.verb != "status":
        parser.error(f"--json goes with status only, not with {args.verb}")
    if args.verb == "version":
        print(f"codedeploy-agent {__version__}")
        return EXIT_OK
    environ = dict(os.environ)
    try:
        config = _load_config(args.config_file, environ)
        if args.verb in ("run", "start", "restart"):
            # A CA file named but unusable would fail every deployment: refuse to start.
            check_signer_trust_on_disk(config.deployment_signer_ca_file)
        if args.verb == "prepare":
            for warning in config.warnings:
                print(f"codedeploy-agent: warning: {warning}", file=sys.stderr)
            print(f"codedeploy-agent: {prepare_agent_on_disk(config)}")
            return EXIT_OK
    except AgentError as error:
        print(f"codedeploy-agent: {error.message}", file=sys.stderr)
        return EXIT_FAILED
    config_path = Path(args.config_file).resolve() if args.config_file else None
    if args.verb == "run":
        return run_daemon(config, environ)
    if args.verb == "start":
        return start_daemon(config, config_path)
    if args.verb == "stop":
        return stop_daemon(config)
    if args.verb == "restart":
        stopped = stop_daemon(config)
        return stopped if stopped != EXIT_OK else start_daemon(config, config_path)
    if args.json:
        return print_status_json(config)
    return print_status(config)


# -- the daemon ---------------------------------------------------------------------------


def _status_publisher(
    config: AgentConfig, environ: Mapping[str, str], pid: int
) -> Callable[[LoopStatus, str], None]:
    """What publishes a status: systemd's STATUS line and the status file, one line."""
    status_file = status_file_for(config.pid_file)

    def publish(status: LoopStatus, signature_policy: str) -> None:
        doing = status.doing()
        line = compose_status_line(
            doing,
            error=status.error,
            last=status.last,
            next_try_in=None if status.next_try is None else status.next_try - status.since,
        )
        notify_systemd(status_message(line), environ)
        try:
            write_status_file(
                status_file,
                DaemonStatus(
                    pid,
                    status.state,
                    line,
                    status.current,
                    status.last,
                    status.since,
                    error=status.error,
                    next_try=status.next_try,
                    signature_policy=signature_policy,
                    doing=doing,
                    version=__version__,
                ),
            )
        except OSError as error:
            log.warning(
                "cannot write the status file", path=str(status_file), error=str(error.strerror)
            )

    return publish


def _build_loop(
    config: AgentConfig,
    environ: Mapping[str, str],
    publish: Callable[[LoopStatus, str], None],
) -> PollLoop:
    """Find the host identity and build the poll loop; raises :class:`HostIdentityError`
    or :class:`OnPremisesConfigError` while the identity is not there yet."""
    identity = resolve_host_identity(config, environ, imds_retry=IMDS_RETRY_PER_TRY)
    signature = SignatureSettings.from_config(config, identity.region, environ)
    log.info("deployment specifications are verified", policy=signature.policy())
    credentials = credentials_for(identity.on_premises) if identity.on_premises else None
    wire_log: Optional[WireLogSettings] = None
    if config.log_aws_wire:
        wire_log = WireLogSettings(wire_log_file_for(config.log_dir, config.program_name))
        log.info("writing the AWS wire log", path=str(wire_log.path))
    client = new_command_service_client(
        CommandServiceSettings.from_config(config, identity.region), credentials, wire_log
    )
    # S3 revisions are fetched in the host's region (AWS_REGION when set: the identity
    # honours it) with the host's credentials (the on-premises ones when the host is
    # registered that way; botocore's chain otherwise), through the same proxy.
    fetch = FetchSettings.from_config(
        config,
        region=identity.region,
        credentials=credentials,
        wire_log=wire_log,
        # One S3 client per distinct settings for the daemon's life, not one per download.
        s3_clients=S3Clients(),
    )
    trash = DeploymentTrash(config.root_dir)
    # What the agent left in the trash when it stopped goes first.
    trash.start_emptying()
    engine = EngineSettings.from_config(
        config, fetch, environ, install_helper=InstallHelper(), trash=trash
    )
    settings = PollerSettings(
        host_identifier=identity.host_identifier,
        engine=engine,
        signature=signature,
        backoff=BackoffPolicy(
            base_seconds=max(config.wait_after_error, 0.01),
            cap_seconds=max(ERROR_BACKOFF_CAP_SECONDS, config.wait_after_error),
            throttle_cap_seconds=max(THROTTLE_BACKOFF_CAP_SECONDS, config.wait_after_error),
        ),
    )
    policy = signature.policy()
    listener: StatusListener = lambda status: publish(status, policy)  # noqa: E731
    return PollLoop(client, settings, wait_between_runs=config.wait_between_runs, listener=listener)


def run_daemon(config: AgentConfig, environ: Mapping[str, str]) -> int:
    """The daemon in the foreground; returns only through :func:`_exit_now`."""
    pid = os.getpid()
    journal = _open_logs(config)
    if journal is None:
        return EXIT_FAILED
    # SIGTERM and SIGINT from now on stop polling (and end a wait for an identity).
    stop = StopRequest()
    stop.request_on_signals()
    _announce_start(config, pid, journal)
    if not _claim_the_host(config, pid, journal):
        return EXIT_FAILED
    # Ready before finding the identity, which may take long (metadata that does not
    # answer yet, an on-premises host not registered yet): systemd's start timeout must
    # not end the daemon while it waits.
    notify_systemd("READY=1", environ)
    log.info("agent ready")
    journal.say("ready")
    loop = _wait_for_the_loop(config, environ, pid, stop, journal)
    loop.start()
    journal.say(f"polling {loop.target}")
    _serve_until_stopped(config, environ, pid, loop, stop, journal)
    release_pid_file(config.pid_file, pid)
    _exit_now(EXIT_OK)


def _open_logs(config: AgentConfig) -> Optional[Journal]:
    """The log file (and, under systemd, the journal lines on stderr) and the folder modes
    the configuration asks for; None, after one line, when either cannot be had."""
    echoing = sys.stderr.isatty()
    # ``start`` sends our stderr to the log file itself: the journal lines would repeat
    # there what the log says.
    journal = Journal(sys.stderr, echoing=echoing or _is_stderr_on_disk_at(config.log_file))
    try:
        configure_file_logging(
            config.log_file,
            verbose=config.verbose,
            utc=config.time_zone.lower() == "utc",
            # In a terminal, an operator running the daemon by hand sees what it does.
            echo=sys.stderr if echoing else None,
        )
    except OSError as error:
        journal.fatal(f"cannot open the log file {config.log_file}: {error.strerror}")
        return None
    try:
        restrict_folders_on_disk(config, daemon=True)
    except AgentError as error:
        journal.fatal(error.message)
        return None
    return journal


def _announce_start(config: AgentConfig, pid: int, journal: Journal) -> None:
    config_file = str(config.config_file) if config.config_file else None
    log.info(
        "agent starting",
        version=__version__,
        pid=pid,
        config_file=config_file,
        spec_verification=SignatureSettings.from_config(config, REGION_PLACEHOLDER).policy(),
        signer_ca_file=describe_signer_ca_file_on_disk(config.deployment_signer_ca_file),
    )
    journal.say(
        f"starting codedeploy-agent {__version__} (pid {pid}); configuration"
        f" {config_file or 'none (defaults)'}; log {config.log_file}"
    )
    for warning in config.warnings:
        log.warning(warning)


def _claim_the_host(config: AgentConfig, pid: int, journal: Journal) -> bool:
    """Take the pid file, then end the hook cgroups a crashed run left; False, after one
    line, when another agent holds the pid file."""
    try:
        claim_pid_file(config.pid_file, pid)
    except AgentError as error:
        log.error("cannot start", error=error.message)
        journal.fatal(error.message)
        return False
    # Only now that the pid file is ours: what a crashed run left is no other agent's.
    root = DeploymentRoot(config.root_dir, config.ongoing_deployment_tracking)
    for cgroup in end_hook_cgroups_left_on_disk(root):
        log.warning("ended the hook cgroup a previous run left behind", cgroup=str(cgroup))
    return True


def _wait_for_the_loop(
    config: AgentConfig,
    environ: Mapping[str, str],
    pid: int,
    stop: StopRequest,
    journal: Journal,
) -> PollLoop:
    """The poll loop, once the host has an identity (retried with back-off); a fatal error
    or a stop during the wait ends the process here."""
    publish = _status_publisher(config, environ, pid)
    waiting_policy = SignatureSettings.from_config(config, REGION_PLACEHOLDER).policy()
    try:
        loop = wait_for_identity(
            lambda: _build_loop(config, environ, publish),
            (HostIdentityError, OnPremisesConfigError),
            stop,
            KeepAlive(
                seconds=watchdog_interval_seconds(environ, pid),
                ping=lambda: notify_systemd("WATCHDOG=1", environ),
                report=lambda status: publish(status, waiting_policy),
                journal=journal.say,
            ),
        )
    except AgentError as error:
        log.error("cannot start", error=error.message)
        journal.fatal(error.message)
        release_pid_file(config.pid_file, pid)
        _exit_now(EXIT_FAILED)
    if loop is None:
        notify_systemd("STOPPING=1", environ)
        publish(LoopStatus("stopped", since=time.time()), waiting_policy)
        log.info("agent stopped while waiting for an identity")
        journal.say("stopped")
        release_pid_file(config.pid_file, pid)
        _exit_now(EXIT_OK)
    return loop


def _is_stderr_on_disk_at(path: Path) -> bool:
    """Whether our stderr is the file at ``path`` (reads its metadata)."""
    try:
        ours, theirs = os.fstat(sys.stderr.fileno()), os.stat(path)
    except (OSError, ValueError):
        return False
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


def _serve_until_stopped(
    config: AgentConfig,
    environ: Mapping[str, str],
    pid: int,
    loop: PollLoop,
    stop: StopRequest,
    journal: Journal,
) -> None:
    """Ping systemd's watchdog until a stop is asked for, then let the running command finish
    (up to ``kill_agent_max_wait_time_seconds``) and shut the loop down."""
    watchdog = watchdog_interval_seconds(environ, pid)
    while not stop.wait_for_stop(watchdog):
        if watchdog:
            notify_systemd("WATCHDOG=1", environ)
    notify_systemd("STOPPING=1", environ)
    loop.request_stop()
    running = loop.status.current
    if running is not None:
        journal.say(
            f"stopping: letting {running} finish (up to"
            f" {config.kill_agent_max_wait_time_seconds:g} s)"
        )
    deadline = time.monotonic() + config.kill_agent_max_wait_time_seconds
    finished = False
    while True:
        remaining = deadline - time.monotonic()
        finished = loop.wait_idle(min(remaining, watchdog) if watchdog else remaining)
        if finished or remaining <= 0:
            break
        notify_systemd("WATCHDOG=1", environ)
    loop.shutdown()
    if finished:
        log.info("agent stopped")
        journal.say("stopped")
    else:
        log.warning(
            "agent stopped while a command still runs; it will be reported as failed at the next start",
            waited_seconds=config.kill_agent_max_wait_time_seconds,
        )
        journal.say(
            f"stopped while {running or 'a command'} still runs; it will be reported as"
            " failed at the next start"
        )


def _exit_now(code: int) -> NoReturn:
    # A poll may still wait for the service's answer on a worker thread that the
    # interpreter would join at exit (up to http_read_timeout); everything that matters
    # is reported and logged by now, so flush the logs and leave without that wait.
    exit_without_teardown(code)


# -- management without systemd ---------------------------------------------------------------


def start_daemon(config: AgentConfig, config_path: Optional[Path]) -> int:
    """Start ``run`` detached from this terminal, and wait until it has claimed its pid file."""
    running = running_pid(config.pid_file)
    if running is not None:
        print(f"{config.program_name} is already running (pid {running})")
        return EXIT_OK
    command: List[str] = [sys.executable, "-m", "agent.daemon"]
    if config_path is not None:
        command += ["--config_file", str(config_path)]
    command.append("run")
    try:
        config.log_file.parent.mkdir(parents=True, exist_ok=True)
        output_file = config.log_file.open("ab")
    except OSError as error:
        print(
            f"codedeploy-agent: cannot start the daemon: cannot create the log file"
            f" {config.log_file}: {error.strerror or error}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    try:
        with output_file as output:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
                close_fds=True,
                cwd="/",
            )
    except OSError as error:
        print(
            f"codedeploy-agent: cannot start the daemon: {error.strerror or error}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if running_pid(config.pid_file) == child.pid:
            print(f"{config.program_name} started (pid {child.pid})")
            return EXIT_OK
        if child.poll() is not None:
            break
        time.sleep(0.05)
    print(
        f"codedeploy-agent: the daemon did not start; see {config.log_file}",
        file=sys.stderr,
    )
    return EXIT_FAILED


def stop_daemon(config: AgentConfig) -> int:
    """SIGTERM the daemon and wait until it is gone (it may finish a command first)."""
    pid = running_pid(config.pid_file)
    if pid is None:
        print(f"{config.program_name} is not running")
        return EXIT_OK
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError:
        print(f"codedeploy-agent: not allowed to stop pid {pid}", file=sys.stderr)
        return EXIT_FAILED
    limit = config.kill_agent_max_wait_time_seconds + STOP_MARGIN_SECONDS
    deadline = time.monotonic() + limit
    while process_is_running(pid):
        if time.monotonic() > deadline:
            print(
                f"codedeploy-agent: pid {pid} did not stop within {limit:g} seconds",
                file=sys.stderr,
            )
            return EXIT_FAILED
        time.sleep(0.1)
    release_pid_file(config.pid_file, pid)
    print(f"{config.program_name} stopped (pid {pid})")
    return EXIT_OK


def print_status(config: AgentConfig) -> int:
    """Whether the daemon runs, its pid, what it is doing and for how long, and how it
    verifies specifications; exit 3 when it is not running. Text from hooks (an error
    message, a process name) is shown with its control characters escaped."""
    pid = running_pid(config.pid_file)
    status = read_status_file(status_file_for(config.pid_file))
    policy = SignatureSettings.from_config(config, REGION_PLACEHOLDER).policy()
    ca_file = describe_signer_ca_file_on_disk(config.deployment_signer_ca_file)
    if pid is None:
        last = f"; last: {status.last}" if status is not None and status.last else ""
        print(escape_control_characters(f"{config.program_name} is not running{last}"))
        print(f"deployment specifications: {policy}; CA file: {ca_file}")
        return EXIT_NOT_RUNNING
    current = status is not None and status.pid == pid
    doing = describe_status(status, time.time()) if status is not None and current else "starting"
    if status is not None and current and status.signature_policy:
        policy = status.signature_policy
    print(escape_control_characters(f"{config.program_name} is running (pid {pid}): {doing}"))
    print(f"deployment specifications: {policy}; CA file: {ca_file}")
    return EXIT_OK


def print_status_json(config: AgentConfig) -> int:
    """``status --json``: one JSON object for programs (the installer waits on ``busy``
    before an upgrade); exit 0 when the daemon runs, 3 when it does not, as ``status``."""
    pid = running_pid(config.pid_file)
    status = read_status_file(status_file_for(config.pid_file))
    current = status if status is not None and pid is not None and status.pid == pid else None
    report: Dict[str, Any] = {
        "running": pid is not None,
        "pid": pid,
        "version": __version__,
        "running_version": current.version if current is not None else None,
        "program_name": config.program_name,
        "state": "not running" if pid is None else (current.state if current else "starting"),
        # A command runs now: the daemon runs one, or is stopping after one.
        "busy": current is not None
        and current.current is not None
        and current.state in (RUNNING, STOPPING),
        "line": current.line if current is not None else ("starting" if pid else "not running"),
        "since": current.updated if current is not None and current.updated else None,
        "next_try": current.next_try if current is not None else None,
        "error": current.error if current is not None else None,
        "current": current.current if current is not None else None,
        "last": status.last if status is not None else None,
        "signature_policy": (current.signature_policy if current is not None else None)
        or SignatureSettings.from_config(config, REGION_PLACEHOLDER).policy(),
        "ca_file": describe_signer_ca_file_on_disk(config.deployment_signer_ca_file),
        # Where the configuration puts the agent's folders: the installer removes these on
        # --purge and takes back the ones it made when an install fails.
        "paths": {
            "log_dir": str(config.log_dir),
            "pid_dir": str(config.pid_dir),
            "root_dir": str(config.root_dir),
        },
    }
    for key in ("line", "error", "current", "last"):
        if isinstance(report[key], str):
            report[key] = escape_control_characters(report[key])
    print(json.dumps(report, sort_keys=True))
    return EXIT_OK if pid is not None else EXIT_NOT_RUNNING
