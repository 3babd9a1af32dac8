"""Waiting for this host's identity without exiting, so systemd never restarts the daemon
in a loop.

An EC2 instance may start the agent before its metadata service answers; an on-premises
host may get its ``codedeploy.onpremises.yml`` (or the credentials file it names) after
the agent is installed. Exiting would make ``Restart=on-failure`` start the daemon again
and again. Instead the daemon, already ready in systemd's eyes, tries again with
exponential back-off and jitter (from a few seconds up to a few minutes), reading the
on-premises file anew each time. Each try runs on a worker thread, so the daemon keeps
pinging systemd's watchdog while metadata is slow, and SIGTERM ends the wait at once.
Every failed try is one log line and a status (``waiting for an identity: <why>; next try
in 40s``); the first one is also one line in the journal.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Type, TypeVar

import structlog

from agent.command_poller.backoff import BackoffPolicy
from agent.command_poller.loop import WAITING_FOR_IDENTITY, LoopStatus
from agent.daemon.stop_request import StopRequest
from agent.errors import AgentError

log = structlog.get_logger(__name__)

# From a few seconds after the first failure up to five minutes between tries.
IDENTITY_BACKOFF = BackoffPolicy(base_seconds=5.0, cap_seconds=300.0)

Result = TypeVar("Result")


@dataclass(frozen=True)
class KeepAlive:
    """What the daemon owes systemd while it waits: a watchdog ping every ``seconds``
    (None: no watchdog), a status for each change, and journal lines."""

    seconds: Optional[float]
    ping: Callable[[], object]
    report: Callable[[LoopStatus], None]
    journal: Callable[[str], None]


def wait_for_identity(
    attempt: Callable[[], Result],
    retriable: Tuple[Type[AgentError], ...],
    stop: StopRequest,
    keep_alive: KeepAlive,
    *,
    policy: BackoffPolicy = IDENTITY_BACKOFF,
    rng: Optional[random.Random] = None,
) -> Optional[Result]:
    """``attempt()``'s result once it succeeds; None when a stop was asked for first.

    ``attempt`` fails with one of ``retriable`` while the identity is not there yet; any
    other error is raised here at once (a configuration the operator must fix).
    """
    chance = rng or random.Random()  # noqa: S311 - jitter, not security
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-identity")
    pause = _Pause(stop, keep_alive)
    failures = 0
    waiting_since = time.time()
    keep_alive.report(LoopStatus(WAITING_FOR_IDENTITY, since=waiting_since))
    try:
        while True:
            future: Future[Result] = executor.submit(attempt)
            future.add_done_callback(lambda _done: stop.wake())
            if not pause.until(future.done):
                return None
            try:
                result = future.result()
            except retriable as error:
                failures += 1
                delay = policy.delay(failures, rng=chance)
                log.warning(
                    "no host identity yet; trying again",
                    error=error.message,
                    tries=failures,
                    retry_in=round(delay, 1),
                )
                if failures == 1:
                    keep_alive.journal(
                        f"waiting for an identity: {error.message}; trying again with back-off"
                    )
                now = time.time()
                keep_alive.report(
                    LoopStatus(
                        WAITING_FOR_IDENTITY,
                        error=error.message,
                        since=waiting_since,
                        next_try=now + delay,
                    )
                )
                if not pause.until(lambda: False, seconds=delay):
                    return None
                continue
            if failures:
                log.info("host identity found after waiting", tries=failures + 1)
            return result
    finally:
        # A try still asking metadata is abandoned: the daemon exits without joining it.
        executor.shutdown(wait=False)


class _Pause:
    """Waits for a condition or a time, pinging the watchdog on the way; ends at a stop."""

    def __init__(self, stop: StopRequest, keep_alive: KeepAlive) -> None:
        self._stop = stop
        self._keep_alive = keep_alive
        self._last_ping = time.monotonic()

    def until(self, done: Callable[[], bool], *, seconds: Optional[float] = None) -> bool:
        """Wait until ``done()`` or ``seconds`` pass; False when a stop came first."""
        deadline = None if seconds is None else time.monotonic() + seconds
        interval = self._keep_alive.seconds
        while not self._stop.requested:
            if done():
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return True
            if interval is not None and now - self._last_ping >= interval:
                self._keep_alive.ping()
                self._last_ping = now
            limits = [limit for limit in (deadline, self._next_ping()) if limit is not None]
            self._stop.wait_for_wake(max(0.0, min(limits) - now) if limits else None)
        return False

    def _next_ping(self) -> Optional[float]:
        interval = self._keep_alive.seconds
        return None if interval is None else self._last_ping + interval
