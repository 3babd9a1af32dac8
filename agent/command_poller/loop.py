"""The poll loop: one poll job on an APScheduler scheduler, and a graceful stop.

Exactly one poll job is ever pending: each run schedules its successor when it ends,
after ``wait_between_runs`` (a poll that found nothing or a finished command) or a
jittered back-off (a failed call), so polls never overlap and never spin. The job runs
on a single worker thread, so one command at a time runs on this host. A stop request
lets a running command finish and be reported; a poll merely waiting for a command is
abandoned. Every change of what the loop is doing goes to an optional listener, which
the daemon turns into its status file and systemd status line: what it polls and as whom,
which command of which deployment runs and how many of that deployment's commands are
done, or which error it backs off from.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]

from agent.aws_clients.client_settings import hide_url_user_info
from agent.aws_clients.command_service import (
    CommandServiceError,
    HostCommand,
)
from agent.command_poller.poller import (
    PollerSettings,
    poll_once,
    report_commands_interrupted_by_restart,
)
from agent.command_poller.service_client import CommandServiceClient
from agent.deployment_root.group_lock import DaemonGroupLocks
from agent.deployment_specification.verified_payloads import VerifiedPayloads
from agent.host_command.lifecycle_event import RecentAppspecs
from agent.lifecycle_event.process_tree import reap_adopted_orphans
from agent.process_control import release_free_heap

log = structlog.get_logger(__name__)

STARTING = "starting"
# The daemon's state before a loop exists: no host identity yet (see agent.daemon.identity_wait).
WAITING_FOR_IDENTITY = "waiting for an identity"
POLLING = "polling"
RUNNING = "running"
WAITING_AFTER_ERROR = "waiting after error"
STOPPING = "stopping"
STOPPED = "stopped"


@dataclass(frozen=True)
class LoopStatus:
    """What the loop is doing: its state, the command running now, the last outcome.

    ``since`` is when the loop entered this state (epoch seconds); ``next_try`` is when it
    polls again after an error. ``target`` is what it polls and as whom (``https://... as
    arn:...``); ``done`` counts the commands of the running command's deployment that
    this agent finished before it.
    """

    state: str
    current: Optional[str] = None
    last: Optional[str] = None
    error: Optional[str] = None
    since: float = 0.0
    next_try: Optional[float] = None
    target: Optional[str] = None
    done: int = 0

    def doing(self) -> str:
        """What the agent does, in words: the head of the status line."""
        if self.state == POLLING and self.target:
            return f"polling {self.target}"
        if self.state == RUNNING and self.current:
            return f"running {self.current} ({self.done} of its commands done)"
        if self.state == WAITING_AFTER_ERROR:
            return "backing off after an error"
        if self.state == STOPPING and self.current:
            return f"stopping after {self.current}"
        return self.state if self.current is None else f"{self.state} {self.current}"


StatusListener = Callable[[LoopStatus], None]


class PollLoop:
    """Polls until asked to stop: ``start()``, later ``request_stop()`` and ``wait_stopped()``.

    The object holds the loop's running state (failures in a row, what runs now); it is
    driven from the scheduler's single worker thread and from the thread that stops it.
    """

    def __init__(
        self,
        client: CommandServiceClient,
        settings: PollerSettings,
        *,
        wait_between_runs: float,
        listener: Optional[StatusListener] = None,
        rng: Optional[random.Random] = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._wait_between_runs = max(0.0, wait_between_runs)
        self._listener = listener
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._lock = threading.Condition()
        self._stopping = False
        self._handling = False
        self._failures = 0
        self._restart_reported = False
        # Start-up's garbage goes back to the system before the first long poll, and each
        # command's after it: the daemon idles far longer than it works.
        self._heap_dirty = True
        self._target = f"{hide_url_user_info(client.endpoint_url)} as {settings.host_identifier}"
        # The deployment of the command that runs (or ran last) and how many of its
        # commands finished since: "2 of its commands done" in the status line.
        self._deployment_id = ""
        self._done_in_deployment = 0
        self._status = LoopStatus(STARTING, since=time.time(), target=self._target)
        self._group_locks = DaemonGroupLocks(settings.engine.root)
        # Each command of a deployment brings the same signed specification: openssl
        # verifies it for the first one only.
        self._verified = VerifiedPayloads()
        # ... and the same appspec (of the revision its scripts come from): parsed once.
        self._appspecs = RecentAppspecs()
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone.utc,
        )

    # -- control ----------------------------------------------------------------------

    @property
    def target(self) -> str:
        """What the loop polls and as whom: ``<endpoint> as <host identifier>``."""
        return self._target

    @property
    def status(self) -> LoopStatus:
        with self._lock:
            return self._status

    def start(self) -> None:
        self._announce(STARTING)
        self._scheduler.start()
        self._schedule(0.0)

    def request_stop(self) -> None:
        """Stop polling; a command that runs now goes on to its end."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            handling = self._handling
        log.info("stop requested", command_running=handling)
        self._announce(STOPPING)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no command runs; True when none does."""
        with self._lock:
            return bool(self._lock.wait_for(lambda: not self._handling, max(0.0, timeout)))

    def shutdown(self) -> None:
        """Stop the scheduler. A poll still waiting for an answer is left to end on its own
        (a command it brings is not taken)."""
        self.request_stop()
        with self._lock:
            finished = not self._handling
        self._scheduler.shutdown(wait=False)
        self._announce(STOPPED if finished else STOPPING)

    def wait_stopped(self, timeout: float) -> bool:
        """Stop polling, wait up to ``timeout`` seconds for a running command, shut down."""
        self.request_stop()
        finished = self.wait_idle(timeout)
        self.shutdown()
        return finished

    # -- the poll job -----------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        with self._lock:
            if self._stopping:
                return
        # No job id: each run gets a fresh one, so the run that schedules its successor
        # never races the scheduler's removal of the finished one-off job.
        self._scheduler.add_job(
            self._run_once,
            trigger="date",
            run_date=datetime.now(timezone.utc) + timedelta(seconds=delay),
        )

    def _stop_requested(self) -> bool:
        with self._lock:
            return self._stopping

    def _accept(self, command: HostCommand) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._handling = True
        return True

    def _started(self, command: HostCommand, deployment_id: str) -> None:
        with self._lock:
            if deployment_id != self._deployment_id:
                self._deployment_id, self._done_in_deployment = deployment_id, 0
        self._announce(RUNNING, current=f"{command.command_name} of {deployment_id}")

    def _finished(self, deployment_id: str) -> None:
        with self._lock:
            if deployment_id and deployment_id == self._deployment_id:
                self._done_in_deployment += 1

    def _run_once(self) -> None:
        with self._lock:
            if self._stopping:
                return
        # Processes that hooks left running and the agent adopted (see process_tree) and
        # that ended since; between commands, so no script of ours is waited for now.
        reap_adopted_orphans()
        delay = self._wait_between_runs
        try:
            if not self._restart_reported:
                report_commands_interrupted_by_restart(self._client, self._settings, rng=self._rng)
                self._restart_reported = True
            self._announce(POLLING)
            self._tidy_between_commands()
            result = poll_once(
                self._client,
                self._settings,
                rng=self._rng,
                accept=self._accept,
                on_start=self._started,
                locks=self._group_locks,
                cancelled=self._stop_requested,
                verified=self._verified,
                appspecs=self._appspecs,
            )
            self._failures = 0
            if result.outcome is not None:
                if result.outcome.ran:
                    self._finished(result.outcome.deployment_id)
                    self._heap_dirty = True
                self._announce(POLLING, last=result.outcome.summary())
        except CommandServiceError as error:
            self._failures += 1
            delay = self._settings.backoff.delay(
                self._failures, throttled=error.throttled, rng=self._rng
            )
            log.warning(
                "command service call failed; backing off",
                error=error.message,
                throttled=error.throttled,
                failures=self._failures,
                retry_in=round(delay, 3),
            )
            self._announce(WAITING_AFTER_ERROR, error=error.message, retry_in=delay)
        except Exception as error:
            # A bug of ours must not end polling; back off as for a failed call.
            self._failures += 1
            delay = self._settings.backoff.delay(self._failures, rng=self._rng)
            log.exception("poll failed unexpectedly; backing off", retry_in=round(delay, 3))
            self._announce(
                WAITING_AFTER_ERROR, error=f"unexpected {type(error).__name__}", retry_in=delay
            )
        finally:
            with self._lock:
                self._handling = False
                self._lock.notify_all()
        self._schedule(delay)

    def _tidy_between_commands(self) -> None:
        """Locks no deployment holds, the C heap's free pages, the trash's child: what the
        last command left behind is let go before the next poll."""
        self._group_locks.release_idle_locks()
        if self._heap_dirty:
            release_free_heap()
            self._heap_dirty = False
        if self._settings.engine.trash is not None:
            self._settings.engine.trash.reap()

    def _announce(
        self,
        state: str,
        *,
        current: Optional[str] = None,
        last: Optional[str] = None,
        error: Optional[str] = None,
        retry_in: Optional[float] = None,
    ) -> None:
        with self._lock:
            previous = self._status
            if self._stopping and state not in (STOPPING, STOPPED):
                state = STOPPING
            if current is None and state == STOPPING and self._handling:
                current = previous.current
            current = current if state in (RUNNING, STOPPING) else None
            now = time.time()
            status = LoopStatus(
                state,
                current=current,
                last=last or previous.last,
                error=error,
                # A new outcome while still polling is not a new state: keep its start.
                since=previous.since
                if (state, current) == (previous.state, previous.current)
                else now,
                next_try=now + retry_in if retry_in is not None else None,
                target=self._target,
                done=self._done_in_deployment,
            )
            if status.next_try is None and dataclasses.replace(
                status, since=previous.since
            ) == dataclasses.replace(previous, next_try=None):
                return
            self._status = status
        if self._listener is not None:
            try:
                self._listener(status)
            except Exception:
                log.exception("status listener failed")
