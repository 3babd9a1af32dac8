"""The Install in a helper process, for a program that runs threads (the daemon).

The install hands half of a large tree to a forked worker (:mod:`agent.installer.split`),
which is only safe in a process with a single thread: the daemon runs its commands on a
scheduler thread, so it runs each Install of a large tree in a helper instead. The helper
is a fresh interpreter (exec'd, so it inherits no thread and no lock another thread held),
carries out exactly one install, with its two processes, and exits. Its start-up (0.15 to
0.2 s of imports) is worth paying only for a tree large enough to split: a tree of fewer
than :data:`HELPER_MIN_ENTRIES` entries is installed in the daemon's own process, in a few
milliseconds. A DownloadBundle still running after :data:`HELPER_AHEAD_AFTER_SECONDS`
starts a helper ahead, so that its start-up runs beside the rest of the download rather
than in front of the Install (a quick download, a small revision, starts none: the helper's
imports would compete with it for the CPU); a helper left waiting for an Install that
never comes leaves after :data:`HELPER_IDLE_SECONDS`; one started ahead for a download
that fails is ended at once, and one for a tree that turns out small by the Install.

What held for the install in the daemon's own process still holds: the kernel kills the
helper when the daemon dies (parent-death signal; a helper whose daemon is already gone
leaves before reading anything), and the helper's worker likewise when the helper dies;
an error is one line with its protocol code; the install's own order (plan and refuse
before anything changes, record each path before creating it) is the same code. The
helper's log events travel back with its answer and are logged by the daemon, with the
command's bound fields. It runs in a session of its own: a Ctrl-C in the daemon's
terminal stops polling, and the Install that runs goes on to its end, as any command does.
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import os
import pickle  # the request and the answer cross a private pipe between our two processes
import select
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import (
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    MutableMapping,
    Optional,
    Sequence,
    Tuple,
)

import structlog

from agent.application_specification.model import ApplicationSpecification, FileExistsBehavior
from agent.deployment_root.layout import DeploymentRoot
from agent.errors import AgentError, ErrorCode
from agent.installer.agent_folders import AgentFolders
from agent.installer.install import install_revision_on_disk
from agent.installer.result import InstallError, InstallResult
from agent.process_control import die_with_parent

log = structlog.get_logger(__name__)

# A helper started ahead waits this long for its Install (hooks may run in between).
HELPER_IDLE_SECONDS = 600.0
# A revision with this many entries (files, folders, links) is installed in a helper: the
# unpack shares a bundle from about as many small members (agent.revision.unpack).
HELPER_MIN_ENTRIES = 512
# A download still running after this long starts the helper ahead.
HELPER_AHEAD_AFTER_SECONDS = 0.1
# The helper's program. Not ``-m``: the classes it pickles must be this module's, not
# ``__main__``'s.
_HELPER_MAIN = (
    "import os, sys\n"
    "from agent.installer.install_process import serve_one_install\n"
    "code = serve_one_install(sys.argv[1:])\n"
    "sys.stderr.flush()\n"
    "os._exit(code)  # the answer is out: no interpreter tear-down for the daemon to wait on\n"
)
# The helper's log events that travel back with its answer (a broken cleanup file could
# warn once per line).
MAX_RELAYED_EVENTS = 200


@dataclass(frozen=True)
class InstallRequest:
    """The arguments of one :func:`install_revision_on_disk` call."""

    spec: ApplicationSpecification
    archive_root: Path
    root: DeploymentRoot
    group_id: str
    file_exists_behavior: FileExistsBehavior
    agent_folders: AgentFolders
    reject_symlink_permission_targets: bool

    def install_on_disk(self) -> InstallResult:
        """Carry out the install in this process."""
        return install_revision_on_disk(
            self.spec,
            self.archive_root,
            self.root,
            self.group_id,
            self.file_exists_behavior,
            self.agent_folders,
            reject_symlink_permission_targets=self.reject_symlink_permission_targets,
        )


@dataclass(frozen=True)
class _Answer:
    """What the helper sends back: the result, or the error's message and code."""

    result: Optional[InstallResult]
    message: str
    error_code: int
    events: Tuple[Dict[str, Any], ...]
    events_dropped: int
    # Processes the install forked to share the work (see agent.installer.split).
    second_processes: int


class InstallHelper:
    """Runs each install in a helper process; keeps at most one helper started ahead.

    Used from the daemon's command thread (and :meth:`close` from any thread).
    """

    def __init__(
        self, python: str = sys.executable, *, min_entries: int = HELPER_MIN_ENTRIES
    ) -> None:
        self._python = python
        self._min_entries = min_entries
        self._lock = threading.Lock()
        self._ready: Optional[subprocess.Popen[bytes]] = None

    @contextlib.contextmanager
    def started_ahead_if_slow(self, seconds: float = HELPER_AHEAD_AFTER_SECONDS) -> Iterator[None]:
        """Start a helper ahead if the block (a download) is still running after
        ``seconds``; end it if the block fails (the install it was for will not come)."""
        timer = threading.Timer(seconds, self.start_ahead)
        timer.daemon = True
        timer.start()
        try:
            yield
        except BaseException:
            timer.cancel()
            timer.join()  # a start it was making is over before the helper is ended
            self.close()
            raise
        finally:
            timer.cancel()

    def start_ahead(self) -> None:
        """Start a helper for the next install, unless one is waiting already."""
        with self._lock:
            if self._ready is not None and self._ready.poll() is None:
                return
            stale, self._ready = self._ready, self._start()
        if stale is not None:
            _end(stale)

    def install_on_disk(self, request: InstallRequest) -> InstallResult:
        """Carry out ``request`` in a helper (the one started ahead, or a new one), or in
        this process when its tree has fewer than ``min_entries`` entries (disk).

        Raises InstallError (or the error the install raised, by its code and message).
        """
        with self._lock:
            helper, self._ready = self._ready, None
        if not has_entries_on_disk(request.archive_root, self._min_entries):
            if helper is not None:
                _end(helper)
            return request.install_on_disk()
        if helper is None or helper.poll() is not None:
            if helper is not None:
                _end(helper)
            helper = self._start()
        try:
            answer = _ask(helper, request)
        finally:
            _end(helper)
        relay_events(answer.events, answer.events_dropped)
        log.info(
            "install ran in a helper process",
            helper_pid=helper.pid,
            second_processes=answer.second_processes,
            succeeded=answer.result is not None,
        )
        if answer.result is None:
            raise InstallError(answer.message, error_code=ErrorCode(answer.error_code))
        return answer.result

    def close(self) -> None:
        """End a helper still waiting (the daemon stops)."""
        with self._lock:
            helper, self._ready = self._ready, None
        if helper is not None:
            _end(helper)

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self._python, "-c", _HELPER_MAIN, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
        )


def has_entries_on_disk(root: Path, count: int) -> bool:
    """Whether the tree under ``root`` holds at least ``count`` entries; reads no more
    folders than it takes to find them (disk)."""
    if count <= 0:
        return True
    pending = [str(root)]
    seen = 0
    while pending:
        try:
            listing = os.scandir(pending.pop())
        except OSError:
            continue  # the install itself reports what it cannot read
        with listing:
            for entry in listing:
                seen += 1
                if seen >= count:
                    return True
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
    return False


def _ask(helper: subprocess.Popen[bytes], request: InstallRequest) -> _Answer:
    """Send the request, read the answer to its end (the helper then exits)."""
    assert helper.stdin is not None and helper.stdout is not None
    try:
        helper.stdin.write(_pickled(request))
        helper.stdin.close()
    except BrokenPipeError:
        pass  # the helper is gone: its wait status says why, below
    reply = helper.stdout.read()
    status = helper.wait()
    if status == 0 and reply:
        answer = pickle.loads(reply)  # noqa: S301 - written by our own helper
        if isinstance(answer, _Answer):
            return answer
    how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
    raise InstallError(f"the install's helper process ended abnormally ({how})")


def _pickled(value: object) -> bytes:
    """``value`` pickled; the appspec's read-only mappings travel as such."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _reduce_mapping_proxy}
    pickler.dump(value)
    return buffer.getvalue()


def _reduce_mapping_proxy(proxy: MappingProxyType[Any, Any]) -> Tuple[Any, ...]:
    return (read_only_mapping, (dict(proxy),))


def read_only_mapping(items: Dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """Rebuilds a pickled read-only mapping (the type itself cannot be pickled by name)."""
    return MappingProxyType(items)


def _end(helper: subprocess.Popen[bytes]) -> None:
    """Kill (when still running) and reap a helper, closing our ends of its pipes."""
    if helper.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            helper.kill()
    for stream in (helper.stdin, helper.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    helper.wait()


def relay_events(events: Sequence[Mapping[str, Any]], dropped: int) -> None:
    """Log the helper's events here, where the command's fields are bound."""
    for event in events:
        fields = dict(event)
        level = str(fields.pop("level", "info"))
        text = str(fields.pop("event", ""))
        getattr(log, level if level in _LEVELS else "info")(text, **fields)
    if dropped:
        log.warning("more install log events not shown", count=dropped)


_LEVELS = frozenset({"debug", "info", "warning", "error", "critical"})


class _KeptEvents:
    """A structlog processor that keeps each event for the answer and drops it."""

    def __init__(self) -> None:
        self.events: List[Dict[str, Any]] = []
        self.dropped = 0

    def __call__(self, _logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        if len(self.events) < MAX_RELAYED_EVENTS:
            record = {name: _plain(value) for name, value in event.items()}
            record.setdefault("level", method)
            self.events.append(record)
        else:
            self.dropped += 1
        raise structlog.DropEvent


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def serve_one_install(argv: Sequence[str]) -> int:  # pragma: no cover - the helper process
    """The helper: wait for one request on stdin, install, answer on stdout, exit."""
    die_with_parent(int(argv[0]))
    # The answer has stdout to itself: anything printed by accident goes to stderr.
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    forks: List[int] = []
    # This process only ever forks for the install's split (subprocess does not call
    # at-fork hooks): the count tells the daemon's log whether the install shared its work.
    os.register_at_fork(after_in_parent=lambda: forks.append(1))
    readable, _, _ = select.select([0], [], [], HELPER_IDLE_SECONDS)
    if not readable:
        return 0
    with os.fdopen(0, "rb") as requests:
        data = requests.read()
    if not data:
        return 0  # the daemon ended us before asking anything
    kept = _KeptEvents()
    structlog.configure(processors=[kept])
    request: InstallRequest = pickle.loads(data)  # noqa: S301 - written by the daemon
    result: Optional[InstallResult] = None
    try:
        result = request.install_on_disk()
        message, code = "", int(ErrorCode.SUCCEEDED)
    except AgentError as error:
        message, code = error.message, int(error.error_code)
    except Exception as error:  # a bug of ours: one line for the report, nothing lost
        detail = " ".join(str(error).split())
        message = f"unexpected {type(error).__name__} in the install's helper process: {detail}"
        code = int(ErrorCode.UNKNOWN_ERROR)
    answer = _Answer(result, message, code, tuple(kept.events), kept.dropped, len(forks))
    with os.fdopen(answer_fd, "wb") as out:
        out.write(_pickled(answer))
    return 0
