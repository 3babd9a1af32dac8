"""One deployment at a time per deployment group on this host: the group's lock file.

Two deployments of one group must not interleave: both would replay and rewrite the
same cleanup file and ``install.json``, and one of them would fail half-way (or worse,
succeed on a mix of two revisions). Whoever deploys a group holds an exclusive
``flock`` on ``deployment-instructions/<group-id>.lock`` from the first command of the
deployment to the last. The kernel releases it when the holder's process ends, however
it ends, so a killed agent never leaves a stale lock; the file itself stays (removing a
lock file races with the next taker) and holds ``<pid> <deployment-id> <program>`` of
the holder, for the message of whoever waits. The file sits beside the group's other
instruction files: the AWS agent only opens those by name, and tools that walk the root
look for folders, so neither trips over it. The descriptor is close-on-exec, so no hook
(nor anything a hook leaves running) ever inherits the lock.

``codedeploy-local`` takes the lock before its first command and keeps it until it
exits; when another deployment holds it, it says so in one line and waits, or with
``--no-wait`` refuses at once.

The daemon receives a deployment one command at a time, so it cannot know its end for
sure. :class:`DaemonGroupLocks` takes the lock at a deployment's first command and keeps
it across commands; it lets go after the deployment's last event (the last of the
specification's lifecycle events that reaches the host as a command), after a failed
command (the service stops the deployment on this host), when a command of another
deployment of the same group arrives (it passes the lock on to that one), or when no
command of the deployment came for an hour (a deployment stopped on the service side
sends nothing more; an hour also covers the longest wait between two commands, such as
a load balancer's deregistration delay). A command that finds the lock held by
``codedeploy-local`` waits for it up to an hour (AWS's longest hook timeout), logging
who holds it; a stop request ends the wait; either way the command fails with one line
naming the holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import structlog

from agent.deployment_root.layout import DeploymentRoot
from agent.errors import AgentError

log = structlog.get_logger(__name__)

LOCK_SUFFIX = ".lock"
# The daemon's bounds, as the module's docstring explains.
DAEMON_WAIT_SECONDS = 3600.0
DAEMON_IDLE_RELEASE_SECONDS = 3600.0
_RETRY_SECONDS = 0.2
# Traffic is shifted by the service itself; these never reach the host as commands.
_SERVICE_SIDE_EVENTS = frozenset({"BlockTraffic", "AllowTraffic"})


class GroupBusyError(AgentError):
    """Another deployment of the same group holds the group's lock."""


@dataclass(frozen=True)
class LockHolder:
    """What the lock file says about its holder (fields are empty when it says nothing)."""

    pid: Optional[int] = None
    deployment_id: str = ""
    program: str = ""

    def describe(self) -> str:
        what = f"deployment {self.deployment_id}" if self.deployment_id else "another deployment"
        details = ", ".join(
            part
            for part in (self.program, f"pid {self.pid}" if self.pid is not None else "")
            if part
        )
        return f"{what} ({details})" if details else what


def group_lock_file(root: DeploymentRoot, group_id: str) -> Path:
    return root.instructions_dir / f"{group_id}{LOCK_SUFFIX}"


def read_lock_holder_from_disk(path: Path) -> LockHolder:
    """Who holds the lock, as its file says; the holder may be rewriting it right now."""
    try:
        words = path.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return LockHolder()
    pid = int(words[0]) if words and words[0].isdigit() and len(words[0]) < 10 else None
    deployment = words[1] if len(words) > 1 and words[1].isprintable() else ""
    program = words[2] if len(words) > 2 and words[2].isprintable() else ""
    return LockHolder(pid, deployment[:100], program[:40])


class GroupLock:
    """The held lock of one group: an open, ``flock``-ed descriptor of its lock file."""

    def __init__(self, path: Path, descriptor: int, group_id: str) -> None:
        self.path = path
        self.group_id = group_id
        self._descriptor: Optional[int] = descriptor

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def record_holder_to_disk(self, deployment_id: str, program: str) -> None:
        """Say in the lock file who holds it now (for the message of whoever waits)."""
        if self._descriptor is None:
            return
        text = f"{os.getpid()} {deployment_id} {program}\n".encode()
        try:
            os.ftruncate(self._descriptor, 0)
            os.pwrite(self._descriptor, text, 0)
        except OSError as error:
            # Only the waiting message loses its details; the lock holds regardless.
            log.warning("cannot write the group lock file", path=str(self.path), error=str(error))

    def release(self) -> None:
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            os.close(descriptor)


def _open_lock_file(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        raise GroupBusyError(
            f"cannot open the deployment group's lock file {path}: {error.strerror or error}"
        ) from None


def _try_flock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def lock_group_on_disk(
    root: DeploymentRoot,
    group_id: str,
    *,
    wait_seconds: Optional[float],
    on_wait: Callable[[LockHolder], None],
    cancelled: Callable[[], bool] = lambda: False,
) -> GroupLock:
    """Take ``group_id``'s lock; ``wait_seconds`` None waits as long as it takes.

    ``on_wait`` is called once, with the holder, when the lock is taken by someone else.
    Raises :class:`GroupBusyError` when the lock is still taken after ``wait_seconds``
    (0: do not wait) or once ``cancelled()`` says so.
    """
    path = group_lock_file(root, group_id)
    descriptor = _open_lock_file(path)
    try:
        if _try_flock(descriptor):
            return GroupLock(path, descriptor, group_id)
        holder = read_lock_holder_from_disk(path)
        if wait_seconds is not None and wait_seconds <= 0:
            raise GroupBusyError(
                f"deployment group {group_id} is being deployed by {holder.describe()}"
            )
        on_wait(holder)
        if wait_seconds is None:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            return GroupLock(path, descriptor, group_id)
        deadline = time.monotonic() + wait_seconds
        while not _try_flock(descriptor):
            if cancelled():
                raise GroupBusyError(
                    f"stopped waiting for deployment group {group_id}, which"
                    f" {read_lock_holder_from_disk(path).describe()} is deploying"
                )
            if time.monotonic() >= deadline:
                raise GroupBusyError(
                    f"deployment group {group_id} is still being deployed by"
                    f" {read_lock_holder_from_disk(path).describe()} after {wait_seconds:g}s"
                )
            time.sleep(_RETRY_SECONDS)
        return GroupLock(path, descriptor, group_id)
    except BaseException:
        os.close(descriptor)
        raise


def lock_group_for_deployment_on_disk(
    root: DeploymentRoot,
    group_id: str,
    deployment_id: str,
    program: str,
    *,
    wait_seconds: Optional[float],
    on_wait: Callable[[LockHolder], None],
) -> GroupLock:
    """Take the group's lock for one whole deployment and say who holds it."""
    lock = lock_group_on_disk(root, group_id, wait_seconds=wait_seconds, on_wait=on_wait)
    lock.record_holder_to_disk(deployment_id, program)
    return lock


@dataclass
class _Held:
    lock: GroupLock
    deployment_id: str
    last_used: float


def _last_host_event(events: Optional[tuple[str, ...]]) -> Optional[str]:
    commands = [event for event in events or () if event not in _SERVICE_SIDE_EVENTS]
    return commands[-1] if commands else None


@dataclass
class DaemonGroupLocks:
    """The group locks the daemon holds across the commands of its deployments.

    Used from the poll loop's single worker thread only.
    """

    root: DeploymentRoot
    wait_seconds: float = DAEMON_WAIT_SECONDS
    idle_release_seconds: float = DAEMON_IDLE_RELEASE_SECONDS
    program: str = "codedeploy-agent"
    _held: Dict[str, _Held] = field(default_factory=dict)

    def hold_for_command(
        self,
        group_id: str,
        deployment_id: str,
        *,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        """Make sure this process holds ``group_id``'s lock for ``deployment_id`` (may wait).

        Raises :class:`GroupBusyError` when another program keeps it too long.
        """
        self.release_idle_locks(keep=group_id)
        held = self._held.get(group_id)
        if held is None:

            def waiting(holder: LockHolder) -> None:
                log.warning(
                    "waiting for the deployment group's lock",
                    deployment_group_id=group_id,
                    holder=holder.describe(),
                    wait_seconds=self.wait_seconds,
                )

            lock = lock_group_on_disk(
                self.root,
                group_id,
                wait_seconds=self.wait_seconds,
                on_wait=waiting,
                cancelled=cancelled,
            )
            held = self._held[group_id] = _Held(lock, "", 0.0)
        if held.deployment_id != deployment_id:
            held.lock.record_holder_to_disk(deployment_id, self.program)
            held.deployment_id = deployment_id
        held.last_used = time.monotonic()

    def command_finished(
        self,
        group_id: str,
        command: str,
        *,
        failed: bool,
        lifecycle_events: Optional[tuple[str, ...]],
    ) -> None:
        """Let go of the group after its deployment's last command or a failed one."""
        held = self._held.get(group_id)
        if held is None:
            return
        held.last_used = time.monotonic()
        if failed or command == _last_host_event(lifecycle_events):
            self._release(group_id, "failed command" if failed else "last lifecycle event")

    def release_idle_locks(self, keep: str = "") -> None:
        now = time.monotonic()
        for group_id, held in list(self._held.items()):
            if group_id != keep and now - held.last_used >= self.idle_release_seconds:
                self._release(group_id, "no command of the deployment for a while")

    def _release(self, group_id: str, reason: str) -> None:
        held = self._held.pop(group_id)
        with contextlib.suppress(OSError):
            held.lock.release()
        log.info(
            "released the deployment group's lock",
            deployment_group_id=group_id,
            deployment_id=held.deployment_id,
            reason=reason,
        )
