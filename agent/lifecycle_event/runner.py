"""Running the scripts of one lifecycle event (docs/behaviour.md section 9).

Each script runs in order, as its own process with stdin on ``/dev/null``, in a process
group and (where the host allows) a cgroup of its own, its output logged line by line as
it arrives. The first failure stops the event with a :class:`LifecycleEventError` that
carries the protocol code and the log tail. A timeout ends the whole tree the script
started; a script that succeeds keeps what it started (the application). A script that
exits while a background process still holds its output is reported at once, naming that
process, instead of after the timeout as the AWS agent does.
"""

from __future__ import annotations

import enum
import errno
import functools
import os
import selectors
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import (
    BinaryIO,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    cast,
)

import structlog

from agent.application_specification.model import HookScript
from agent.errors import ErrorCode
from agent.lifecycle_event.errors import LifecycleEventError
from agent.lifecycle_event.hook_environment import compose_hook_environment
from agent.lifecycle_event.hook_identity import HookUser, look_up_hook_user
from agent.lifecycle_event.output_lines import LineAssembler, drain_in_background
from agent.lifecycle_event.process_tree import PipeHolder, ProcessTree, find_pipe_holders
from agent.lifecycle_event.script_log import ScriptLog, open_script_log
from agent.lifecycle_event.settings import HookRunSettings, OutputsLeftOpenPolicy

__all__ = [
    "HookRunSettings",
    "LifecycleEventError",
    "OutputsLeftOpenPolicy",
    "ScriptLog",
    "open_script_log",
    "run_event_scripts",
]

_log = structlog.get_logger(__name__)

# Without a pidfd the exit of a script that left its output open is noticed by polling.
_EXIT_POLL_SECONDS = 0.1
# Without a cgroup, descendants are looked for often at first (daemons fork early), then less.
_TRACK_FAST_SECONDS = 0.05
_TRACK_FAST_PERIOD_SECONDS = 5.0
_TRACK_SLOW_SECONDS = 0.25
# After SIGKILL the tree vanishes within moments; this only bounds a kernel that stalls.
_AFTER_KILL_SECONDS = 5.0
# A holder may close the pipe just as we look; this is how long we give that a chance.
_HOLDER_RECHECK_SECONDS = 0.5
_READ_SIZE = 64 * 1024
# Passes at closing a script's tree when interrupts land in the middle of it.
_CLOSE_ATTEMPTS = 3


def run_event_scripts(
    event: str,
    scripts: Sequence[HookScript],
    revision_root: Path,
    environment: Mapping[str, str],
    script_log: ScriptLog,
    settings: HookRunSettings = HookRunSettings(),  # noqa: B008 - frozen, so safe to share
) -> str:
    """Run an event's scripts in order (spawns processes); return the log tail on success.

    ``environment`` is the complete base environment of the scripts. Raises
    :class:`LifecycleEventError` at the first script that is missing, fails, times out or
    leaves its output open (unless the settings accept that).
    """
    if not scripts:
        return ""
    script_log.event_started(event)
    for script in scripts:
        _run_script(script, revision_root, environment, script_log, settings)
    return script_log.tail()


def _run_script(
    script: HookScript,
    revision_root: Path,
    environment: Mapping[str, str],
    script_log: ScriptLog,
    settings: HookRunSettings,
) -> None:
    location = script.location
    path = _locate_script(location, revision_root, script_log)
    script_log.script_started(location)
    try:
        user = look_up_hook_user(script.runas, script.sudo, location)
    except LifecycleEventError as error:
        raise _with_tail(error, script_log) from None
    _make_executable_if_needed(path, location, user, script_log)
    hook_environment = compose_hook_environment(environment, settings, user)
    tree = ProcessTree.create_on_host(settings.use_cgroups, settings.cgroup_record_file)
    try:
        process = _spawn_script(path, location, hook_environment, user, tree, script_log)
        tree.attach(process.pid)
        run = _ScriptRun(process, tree, script_log)
        try:
            _supervise_script(run, script, user, script_log, settings)
        finally:
            run.close()
    finally:
        _close_tree(tree)


def _close_tree(tree: ProcessTree) -> None:
    """Close the tree even when an interrupt lands in the middle of it.

    ``codedeploy-local`` ignores a signal that follows soon after one that interrupted,
    so another pass runs to its end; the interrupt is raised again afterwards.
    """
    interrupted: Optional[KeyboardInterrupt] = None
    for _ in range(_CLOSE_ATTEMPTS):
        try:
            tree.close()
            break
        except KeyboardInterrupt as error:
            interrupted = interrupted or error
    if interrupted is not None:
        raise interrupted


def _locate_script(location: str, revision_root: Path, script_log: ScriptLog) -> Path:
    """The script's path in the revision; it must be a file inside the revision folder."""
    # As in the AWS agent, a leading slash still means "relative to the revision root".
    path = revision_root / location.lstrip("/")
    root = revision_root.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        problem = f"Script location {location} points outside the revision folder {revision_root}"
    elif not resolved.exists():
        problem = f"Script does not exist at specified location: {location} (looked for {path})"
    elif not resolved.is_file():
        problem = f"Script at specified location: {location} is not a file ({path})"
    else:
        return path
    raise _script_failure(problem, ErrorCode.SCRIPT_MISSING, location, script_log)


def _make_executable_if_needed(
    path: Path, location: str, user: Optional[HookUser], script_log: ScriptLog
) -> None:
    """Add the execute bits (``chmod +x``) when the script's user could not run it."""
    try:
        status = path.stat()
    except OSError as error:
        raise _script_failure(
            f"Script at specified location: {location} cannot be read: {error.strerror}",
            ErrorCode.SCRIPT_NOT_EXECUTABLE,
            location,
            script_log,
        ) from error
    if _can_execute(path, status, user):
        return
    _log.warning("script is not executable; making it executable", location=location)
    try:
        path.chmod(stat.S_IMODE(status.st_mode) | 0o111)
    except OSError as error:
        raise _script_failure(
            f"Unable to make the script at specified location: {location} executable:"
            f" {error.strerror}",
            ErrorCode.SCRIPT_NOT_EXECUTABLE,
            location,
            script_log,
        ) from error


def _can_execute(path: Path, status: os.stat_result, user: Optional[HookUser]) -> bool:
    if user is None or not user.switch:
        return os.access(path, os.X_OK)
    if user.uid == 0:
        return bool(status.st_mode & 0o111)
    if status.st_uid == user.uid:
        return bool(status.st_mode & stat.S_IXUSR)
    if status.st_gid in user.groups:
        return bool(status.st_mode & stat.S_IXGRP)
    return bool(status.st_mode & stat.S_IXOTH)


def _spawn_script(
    path: Path,
    location: str,
    environment: Dict[str, str],
    user: Optional[HookUser],
    tree: ProcessTree,
    script_log: ScriptLog,
) -> subprocess.Popen[bytes]:
    """Start the script in its own session (and cgroup); without a shebang, under /bin/sh.

    No Python code runs in the child (no ``preexec_fn``): the start is a ``vfork`` and an
    ``exec`` where the interpreter can, which spares copying the agent's memory maps for
    each script; the cgroup is entered by the agent around the start instead
    (:meth:`ProcessTree.spawn_inside`).
    """
    command = [str(path)]
    while True:
        try:
            return tree.spawn_inside(
                functools.partial(_start_script_process, command, environment, user)
            )
        except OSError as error:
            if error.errno == errno.ENOEXEC and command[0] != "/bin/sh":
                # No "#!" line: run it the way a shell (and the AWS agent) would.
                command = ["/bin/sh", str(path)]
                continue
            code = (
                ErrorCode.SCRIPT_NOT_EXECUTABLE
                if error.errno in (errno.EACCES, errno.EPERM)
                else ErrorCode.SCRIPT_FAILED
            )
            raise _script_failure(
                f"{_script_prefix(location, user)} could not be started: {error.strerror or error}",
                code,
                location,
                script_log,
            ) from error


def _start_script_process(
    command: List[str], environment: Dict[str, str], user: Optional[HookUser]
) -> subprocess.Popen[bytes]:
    switch = user is not None and user.switch
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        close_fds=True,
        start_new_session=True,
        bufsize=0,
        user=user.uid if switch and user is not None else None,
        group=user.gid if switch and user is not None else None,
        extra_groups=list(user.groups) if switch and user is not None else None,
    )


class _Outcome(enum.Enum):
    EXITED = "exited"
    TIMED_OUT = "timed out"
    OUTPUTS_LEFT_OPEN = "outputs left open"


class _ScriptRun:
    """One running script: reads its two pipes, notices its exit, follows its tree.

    The script's process is never reaped here before :meth:`reap`, so its pid (also its
    process group and session number) cannot be reused while we may still signal it.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], tree: ProcessTree, script_log: ScriptLog
    ) -> None:
        self.process = process
        self.tree = tree
        self._selector = selectors.DefaultSelector()
        self._assemblers: Dict[int, LineAssembler] = {}
        self._pipes: Dict[int, BinaryIO] = {}
        self.pipe_inodes: Dict[int, str] = {}
        for name, pipe in (("stdout", process.stdout), ("stderr", process.stderr)):
            if pipe is None:
                continue
            descriptor = pipe.fileno()
            self._pipes[descriptor] = cast(BinaryIO, pipe)
            self._assemblers[descriptor] = LineAssembler(name, script_log.output_line)
            self.pipe_inodes[os.fstat(descriptor).st_ino] = name
            self._selector.register(descriptor, selectors.EVENT_READ)
        self._pidfd = _open_pidfd(process.pid)
        if self._pidfd is not None:
            self._selector.register(self._pidfd, selectors.EVENT_READ)
        self.started_at = time.monotonic()
        self.exited_at: Optional[float] = None
        self._next_refresh = self.started_at

    @property
    def outputs_open(self) -> bool:
        return bool(self._assemblers)

    def exited(self) -> bool:
        """Whether the script's own process ended (without reaping it)."""
        if self.exited_at is None and _has_exited(self.process.pid):
            self.exited_at = time.monotonic()
        return self.exited_at is not None

    def wait_once(self, wake_at: float) -> None:
        """Read whatever output arrives until ``wake_at`` or the next event of interest."""
        if self.tree.tracks_descendants:
            wake_at = min(wake_at, self._next_refresh)
        if self._pidfd is None and self.exited_at is None:
            wake_at = min(wake_at, time.monotonic() + _EXIT_POLL_SECONDS)
        for key, _ in self._selector.select(max(0.0, wake_at - time.monotonic())):
            if key.fd == self._pidfd:
                # Readable from now on; the exit itself is read with waitid(WNOWAIT).
                self._selector.unregister(key.fd)
            else:
                self._read(key.fd)
        now = time.monotonic()
        if self.tree.tracks_descendants and now >= self._next_refresh:
            self.tree.refresh()
            fast = now - self.started_at < _TRACK_FAST_PERIOD_SECONDS
            self._next_refresh = now + (_TRACK_FAST_SECONDS if fast else _TRACK_SLOW_SECONDS)

    def end_tree(self, grace_seconds: float) -> None:
        """SIGTERM to the whole tree, SIGKILL to what is left after the grace period."""
        self.tree.signal_all(signal.SIGTERM)
        grace_end = time.monotonic() + grace_seconds
        while time.monotonic() < grace_end and not self.tree.all_gone():
            self.wait_once(min(grace_end, time.monotonic() + _EXIT_POLL_SECONDS))
        if not self.tree.all_gone():
            self.tree.kill_all()
        # Whatever the tree wrote before it died is still worth logging.
        read_end = time.monotonic() + _AFTER_KILL_SECONDS
        while self.outputs_open and time.monotonic() < read_end:
            self.wait_once(min(read_end, time.monotonic() + _EXIT_POLL_SECONDS))

    def let_go_of_outputs(self) -> None:
        """Stop reading pipes a background process holds, without making it fail."""
        held: List[BinaryIO] = []
        for descriptor, assembler in list(self._assemblers.items()):
            assembler.finish()
            self._selector.unregister(descriptor)
            held.append(self._pipes.pop(descriptor))
        self._assemblers.clear()
        drain_in_background(held)

    def reap(self, timeout: Optional[float] = None) -> Optional[int]:
        """Collect the script's exit status; None if it did not end in ``timeout``."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            _log.warning("hook script did not end after SIGKILL", pid=self.process.pid)
            return None

    def close(self) -> None:
        for descriptor, pipe in self._pipes.items():
            if descriptor in self._assemblers:
                self._selector.unregister(descriptor)
            pipe.close()
        self._pipes.clear()
        self._assemblers.clear()
        self._selector.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _read(self, descriptor: int) -> None:
        data = os.read(descriptor, _READ_SIZE)
        assembler = self._assemblers[descriptor]
        if data:
            assembler.feed(data)
            return
        assembler.finish()
        self._selector.unregister(descriptor)
        del self._assemblers[descriptor]


def _supervise_script(
    run: _ScriptRun,
    script: HookScript,
    user: Optional[HookUser],
    script_log: ScriptLog,
    settings: HookRunSettings,
) -> None:
    outcome = _watch_ending_tree_if_interrupted(run, script, settings)
    if outcome is _Outcome.TIMED_OUT:
        raise _end_timed_out_script(run, script, script_log, settings)
    holders = _identify_holders(run) if outcome is _Outcome.OUTPUTS_LEFT_OPEN else []
    left_open = outcome is _Outcome.OUTPUTS_LEFT_OPEN and run.outputs_open
    if left_open:
        _let_go_of_open_outputs(run, script.location, holders, script_log)
    returncode = run.reap()
    # What the script started and left running is the application's, not ours to end.
    run.tree.release_survivors()
    _raise_for_exit(returncode, script.location, user, script_log)
    if left_open and settings.outputs_left_open is OutputsLeftOpenPolicy.FAIL:
        named = ", ".join(f"pid {holder.pid} ({holder.command})" for holder in holders)
        raise _script_failure(
            f"Script at specified location: {script.location} exited but left its output"
            f" open in {named or 'an unknown process'}; redirect the output of background"
            " processes (e.g. `command > /dev/null 2>&1 &`)",
            ErrorCode.OUTPUTS_LEFT_OPEN,
            script.location,
            script_log,
        )


def _watch_ending_tree_if_interrupted(
    run: _ScriptRun, script: HookScript, settings: HookRunSettings
) -> _Outcome:
    try:
        return _watch(run, run.started_at + script.timeout, settings.outputs_left_open_wait_seconds)
    except BaseException:
        # Interrupted (Ctrl-C in codedeploy-local, a full disk ...): leave nothing running.
        if not run.exited():
            run.end_tree(settings.kill_grace_seconds)
        run.reap(_AFTER_KILL_SECONDS)
        raise


def _end_timed_out_script(
    run: _ScriptRun, script: HookScript, script_log: ScriptLog, settings: HookRunSettings
) -> LifecycleEventError:
    """End the whole tree of a script past its timeout; the error to raise for it."""
    location = script.location
    script_log.agent_note(
        f"Script at specified location: {location} did not complete in"
        f" {_seconds_text(script.timeout)} seconds; ending all its processes"
    )
    run.end_tree(settings.kill_grace_seconds)
    if run.outputs_open:
        run.let_go_of_outputs()
    run.reap(_AFTER_KILL_SECONDS)
    return _script_failure(
        f"Script at specified location: {location} failed to complete in"
        f" {_seconds_text(script.timeout)} seconds",
        ErrorCode.SCRIPT_TIMED_OUT,
        location,
        script_log,
    )


def _let_go_of_open_outputs(
    run: _ScriptRun, location: str, holders: List[PipeHolder], script_log: ScriptLog
) -> None:
    """Log who keeps the exited script's outputs open, then stop reading them."""
    described = "; ".join(holder.describe() for holder in holders)
    script_log.agent_note(
        f"Script at specified location: {location} exited, but its output is still"
        f" open in {described or 'an unknown process'}; no longer reading it"
    )
    run.let_go_of_outputs()


def _raise_for_exit(
    returncode: Optional[int], location: str, user: Optional[HookUser], script_log: ScriptLog
) -> None:
    """Refuse a script killed by a signal or ended with a non-zero status."""
    if returncode is not None and returncode < 0:
        raise _script_failure(
            f"{_script_prefix(location, user)} was killed by signal {_signal_name(-returncode)}",
            ErrorCode.SCRIPT_FAILED,
            location,
            script_log,
        )
    if returncode:
        raise _script_failure(
            f"{_script_prefix(location, user)} failed with exit code {returncode}",
            ErrorCode.SCRIPT_FAILED,
            location,
            script_log,
        )


def _watch(run: _ScriptRun, deadline: float, left_open_wait: float) -> _Outcome:
    """Read output until the script and its outputs are done, or time runs out."""
    while True:
        now = time.monotonic()
        exited = run.exited()
        if exited and not run.outputs_open:
            return _Outcome.EXITED
        if exited and run.exited_at is not None:
            left_open_at = min(run.exited_at + left_open_wait, deadline)
            if now >= left_open_at:
                return _Outcome.OUTPUTS_LEFT_OPEN
            run.wait_once(left_open_at)
            continue
        if now >= deadline:
            return _Outcome.TIMED_OUT
        run.wait_once(deadline)


def _identify_holders(run: _ScriptRun) -> List[PipeHolder]:
    """Who keeps the outputs open; a holder that is just closing them gets a moment."""
    own_pid = os.getpid()
    holders = find_pipe_holders(run.pipe_inodes, own_pid)
    recheck_end = time.monotonic() + _HOLDER_RECHECK_SECONDS
    while not holders and run.outputs_open and time.monotonic() < recheck_end:
        run.wait_once(min(recheck_end, time.monotonic() + _EXIT_POLL_SECONDS))
        if run.outputs_open:
            holders = find_pipe_holders(run.pipe_inodes, own_pid)
    return holders


def _with_tail(error: LifecycleEventError, script_log: ScriptLog) -> LifecycleEventError:
    return LifecycleEventError(
        error.message,
        error_code=error.error_code,
        script_name=error.script_name,
        log=script_log.tail(),
    )


def _script_failure(
    message: str, code: ErrorCode, location: str, script_log: ScriptLog
) -> LifecycleEventError:
    """The error of the script at ``location``, with the end of its log."""
    return LifecycleEventError(
        message, error_code=code, script_name=location, log=script_log.tail()
    )


def _script_prefix(location: str, user: Optional[HookUser]) -> str:
    if user is None:
        return f"Script at specified location: {location}"
    return f"Script at specified location: {location} run as user {user.name}"


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return str(number)


def _open_pidfd(pid: int) -> Optional[int]:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the child unreaped, so its pid stays ours until we reap it.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
