"""Containment of one script run: its own process group and, where the host allows, a cgroup.

A hook that times out must end with everything it started, including daemons that called
``setsid()`` and were reparented to init; a hook that succeeds must leave behind what it
started on purpose (the application). A cgroup v2 per script run gives both: nothing can
leave it without privileges, ``cgroup.kill`` ends it atomically, and on success the members
are moved to the agent's own cgroup. A run that ends any other way (timeout, interruption,
an error of ours) has its members killed before the cgroup is removed: no exit path leaves
a hook cgroup behind. The script is born in its cgroup: the agent steps into the cgroup
for the moment it starts the script and steps back out (:meth:`ProcessTree.spawn_inside`),
so the start is a plain ``vfork`` + ``exec`` (no Python code runs in the child, no copy of
the agent's page tables is made) and the script has no instant outside the cgroup.

Where no cgroup can be made (``hook_use_cgroups: false``, a read-only cgroupfs, a host with
cgroup v1 only, no rights) the run falls back to its process group plus tracking of its
descendants and sessions by polling ``/proc``. Polling alone misses a process that lives
between two polls: ``sh -c 'setsid sleep 1000 &'`` forks and exits at once, and its child,
in a new session, would be reparented to init and never seen. So the fallback first makes
the agent a *child subreaper*: every orphan of a hook is reparented to the agent instead of
init and stays visible. The tracker then counts as the run's own, besides the script's
descendants and sessions, every child of the agent that (1) is in a session other than
the agent's (the agent's own helpers, openssl, setfacl, the install's worker, share its
session; a hook and everything it starts never do) and (2) was not already a child of the
agent, or in the session of one, when the run began. (2) protects what earlier hooks
left running on purpose (the application, adopted by the agent when its launcher exited):
a later hook's timeout never touches it. An application that orphans a process in a new
session while a hook runs is the one case attributed to that hook; it is killed only if
that hook times out.

Being a subreaper means reaping: adopted processes that exit stay zombies until their new
parent waits for them. :func:`reap_adopted_orphans` waits only for ended children in a
session other than the agent's, minus the pids the caller still waits for itself (the
script's own process, which the runner reaps), so it never steals the exit status of a
child the agent started (``subprocess`` would read it as 0). The runner calls it while it
tracks a script, the daemon before each poll.

The caller must not reap the script's own process before the last signal was sent: that
keeps its pid, which is also the number of its process group and session, from being reused.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Callable,
    Collection,
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Set,
    Tuple,
    TypeVar,
)

import structlog

from agent.process_control import become_child_subreaper

if TYPE_CHECKING:
    # Imported where a script's processes are looked at: a deployment that runs no hook
    # never pays for psutil's import (a good part of a short run's start-up).
    import psutil

_log = structlog.get_logger(__name__)

CGROUP_NAME_PREFIX = "codedeploy-hook-"
# Pure cgroup v2 hosts mount it here; hybrid hosts (systemd's default for years) one below.
_PREFERRED_CGROUP2_MOUNTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
# A script that forks as fast as we move its members out still ends; we just stop trying.
_RELEASE_ATTEMPTS = 50
_REMOVE_ATTEMPTS = 100
_REMOVE_PAUSE_SECONDS = 0.02
_COMMAND_LINE_CHARACTERS = 200
# Rounds of "find, SIGKILL" in the fallback: each round kills what the last one found forking.
_KILL_ROUNDS = 50
# Attempts at stepping back out of a hook cgroup after starting a script in it.
_LEAVE_ATTEMPTS = 5

_Started = TypeVar("_Started")

# The agent's own moves between cgroups (the warm-up, the steps in and out around a
# script's start) must not interleave: a warm-up that read the agent's cgroup just before
# it stepped into a hook's would otherwise move it back there, or move it out while a
# script is being born. One lock, as the agent's cgroup is one per process.
_OWN_CGROUP_MOVES = threading.Lock()


def find_unified_cgroup_mount(mountinfo_text: str) -> Optional[Tuple[Path, str]]:
    """The cgroup2 mount point in ``/proc/self/mountinfo`` text, with the hierarchy path it shows.

    ``/sys/fs/cgroup`` is preferred, then ``/sys/fs/cgroup/unified``, then any other.
    """
    mounts: Dict[str, str] = {}
    for line in mountinfo_text.splitlines():
        fields, separator, rest = line.partition(" - ")
        if not separator or not rest.split() or rest.split()[0] != "cgroup2":
            continue
        parts = fields.split()
        if len(parts) < 5:
            continue
        mounts.setdefault(_unescape_mount_field(parts[4]), _unescape_mount_field(parts[3]))
    for preferred in _PREFERRED_CGROUP2_MOUNTS:
        if preferred in mounts:
            return Path(preferred), mounts[preferred]
    for mount_point, root in mounts.items():
        return Path(mount_point), root
    return None


def own_cgroup_v2_path(proc_cgroup_text: str) -> Optional[str]:
    """The unified-hierarchy path in ``/proc/<pid>/cgroup`` text (the ``0::`` line)."""
    for line in proc_cgroup_text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def read_own_cgroup_dir() -> Optional[Path]:
    """The folder of this process's own cgroup v2 (reads ``/proc/self``), or None."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
        own = own_cgroup_v2_path(Path("/proc/self/cgroup").read_text(encoding="utf-8"))
    except OSError:
        return None
    found = find_unified_cgroup_mount(mountinfo)
    if found is None or own is None:
        return None
    mount_point, mount_root = found
    if mount_root != "/":
        if own != mount_root and not own.startswith(mount_root.rstrip("/") + "/"):
            return None
        own = own[len(mount_root.rstrip("/")) :]
    directory = mount_point / own.lstrip("/")
    return directory if (directory / "cgroup.procs").is_file() else None


class HookCgroup:
    """A cgroup v2 made for one script run, below the agent's own cgroup.

    ``record_file``, when given, names this cgroup for as long as it exists (see
    :func:`end_recorded_hook_cgroup_on_disk`).
    """

    def __init__(self, path: Path, record_file: Optional[Path] = None) -> None:
        self.path = path
        self.parent = path.parent
        self.record_file = record_file

    def add_this_process(self) -> Optional[str]:
        """Move this process (all its threads) into the cgroup; why not, when refused."""
        try:
            _write_own_pid_to(self.path / "cgroup.procs")
        except OSError as error:
            return str(error)
        return None

    def return_this_process_to_parent(self) -> bool:
        """Move this process back to the parent cgroup (the agent's own); False when even
        the last attempt was refused (it was logged)."""
        for attempt in range(1, _LEAVE_ATTEMPTS + 1):
            try:
                _write_own_pid_to(self.parent / "cgroup.procs")
                return True
            except OSError as error:
                if attempt == _LEAVE_ATTEMPTS:
                    _log.error(
                        "cannot move the agent back out of a hook cgroup",
                        cgroup=str(self.path),
                        error=str(error),
                    )
        return False

    def member_pids(self) -> List[int]:
        try:
            text = (self.path / "cgroup.procs").read_text(encoding="ascii")
        except OSError:
            return []
        return [int(word) for word in text.split()]

    def is_populated(self) -> bool:
        try:
            text = (self.path / "cgroup.events").read_text(encoding="ascii")
        except OSError:
            return bool(self.member_pids())
        return "populated 1" in text.splitlines()

    def signal_members(self, signal_number: int) -> None:
        own = os.getpid()
        for pid in self.member_pids():
            if pid != own:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal_number)

    def kill_members(self) -> None:
        """SIGKILL every member, atomically with ``cgroup.kill`` where the kernel has it.

        Never the agent itself: should it have failed to step back out after starting the
        script (see :meth:`return_this_process_to_parent`), members are killed one by one.
        """
        if os.getpid() not in self.member_pids():
            try:
                (self.path / "cgroup.kill").write_text("1", encoding="ascii")
                return
            except OSError:
                pass
        for _ in range(_RELEASE_ATTEMPTS):
            if not set(self.member_pids()) - {os.getpid()}:
                return
            self.signal_members(signal.SIGKILL)

    def release_members_to_parent(self) -> None:
        """Move every member to the parent cgroup, so it outlives this run."""
        target = self.parent / "cgroup.procs"
        for _ in range(_RELEASE_ATTEMPTS):
            members = self.member_pids()
            if not members:
                return
            for pid in members:
                try:
                    target.write_text(str(pid), encoding="ascii")
                except ProcessLookupError:
                    pass
                except OSError as error:
                    _log.debug("cannot move process out of hook cgroup", pid=pid, error=str(error))
        _log.warning("hook cgroup still has members", cgroup=str(self.path))

    def remove(self) -> None:
        """Remove the (empty) cgroup; an exiting member can keep it busy for a moment."""
        for _ in range(_REMOVE_ATTEMPTS):
            try:
                self.path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as error:
                last_error = error
            time.sleep(_REMOVE_PAUSE_SECONDS)
        else:
            # The record stays, so that the next start of an agent tries again.
            _log.warning("cannot remove hook cgroup", cgroup=str(self.path), error=str(last_error))
            return
        if self.record_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.record_file.unlink()


def start_cgroup_migration_warm_up() -> threading.Event:
    """Start, on a thread of its own, the wait that the next hook's move into its cgroup
    would otherwise make on the critical path; returns an event set once it is done.

    Moving a process between cgroups (the agent stepping into a hook's cgroup to start
    its script) takes a kernel lock whose first taking after a quiet while waits for an RCU
    grace period (10 to 20 ms on common hosts; cgroup v2's ``favordynmods`` trades that
    away, but it is the host's choice, not ours); another move within a grace period of
    the last one does not wait. The daemon calls this as soon as a command arrives, so the
    grace period passes while the specification is fetched and checked and the command
    acknowledged. The move itself is of this process into the cgroup it is already in:
    nothing changes. Its failure (no rights, a cgroup that refuses members) is harmless
    and ignored: the hook's own move then waits, as it would have.

    The thread is started without waiting for it to be scheduled, as
    ``threading.Thread.start`` would: on a busy host that wait alone costs the command a
    millisecond or more.
    """
    done = threading.Event()
    _thread.start_new_thread(_warm_up_then_signal, (done,))
    return done


def _warm_up_then_signal(done: threading.Event) -> None:
    try:
        _move_self_into_own_cgroup()
    finally:
        done.set()


def _move_self_into_own_cgroup() -> None:
    """Write this process into the cgroup it is in (reads ``/proc/self``): a move that
    changes nothing, but takes the kernel's migration lock."""
    with _OWN_CGROUP_MOVES:
        cgroup_dir = read_own_cgroup_dir()
        if cgroup_dir is None:
            return
        try:
            _write_own_pid_to(cgroup_dir / "cgroup.procs")
        except OSError as error:
            _log.debug("cgroup warm-up not possible", cgroup=str(cgroup_dir), error=str(error))


def _write_own_pid_to(procs: Path) -> None:
    """Move this process into the cgroup of the ``cgroup.procs`` file ``procs``."""
    descriptor = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
    try:
        # "0" is the writer's own process, so no pid read earlier can have been reused.
        os.write(descriptor, b"0")
    finally:
        os.close(descriptor)


def create_hook_cgroup(record_file: Optional[Path] = None) -> Optional[HookCgroup]:
    """Make a fresh cgroup below ours (touches cgroupfs, and ``record_file`` when given);
    None when the host does not allow it."""
    own = read_own_cgroup_dir()
    if own is None:
        _log.debug("no writable cgroup v2 hierarchy; using process groups")
        return None
    path = own / (CGROUP_NAME_PREFIX + secrets.token_hex(8))
    if record_file is not None:
        # Written before the cgroup exists: a crash at any later moment leaves it named.
        try:
            partial = record_file.with_name(record_file.name + ".partial")
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(f"{path}\n{_owner_of_this_process()}\n", encoding="utf-8")
            partial.replace(record_file)
        except OSError as error:
            _log.warning(
                "cannot record the hook cgroup; using process groups",
                record=str(record_file),
                error=str(error),
            )
            return None
    try:
        path.mkdir()
    except OSError as error:
        _log.debug("cannot create hook cgroup", cgroup=str(path), error=str(error))
        if record_file is not None:
            with contextlib.suppress(OSError):
                record_file.unlink()
        return None
    return HookCgroup(path, record_file)


def end_recorded_hook_cgroup_on_disk(record_file: Path) -> Optional[Path]:
    """Kill every process in the hook cgroup ``record_file`` names, remove it and the record.

    For an agent that starts after a crash: the script that ran then, and all it started,
    must not outlive the command reported as failed. Only a cgroup named as ours
    (``codedeploy-hook-*``, in the cgroup v2 hierarchy) is touched, and only when the
    process that recorded it is gone (another agent's running hook is left alone). Returns
    its path when one was ended.
    """
    try:
        lines = record_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    if not lines:
        return None
    if len(lines) > 1 and _owner_is_alive(lines[1]):
        return None
    path = Path(lines[0].strip())
    mount = _unified_mount_point()
    ended: Optional[Path] = None
    if (
        path.is_absolute()
        and path.name.startswith(CGROUP_NAME_PREFIX)
        and ".." not in path.parts
        and mount is not None
        and mount in path.parents
        and (path / "cgroup.procs").is_file()
    ):
        cgroup = HookCgroup(path)
        for _ in range(_REMOVE_ATTEMPTS):
            cgroup.kill_members()
            if not cgroup.is_populated():
                break
            time.sleep(_REMOVE_PAUSE_SECONDS)
        cgroup.remove()
        ended = path
    if not path.exists():
        with contextlib.suppress(FileNotFoundError):
            record_file.unlink()
    return ended


def _owner_of_this_process() -> str:
    """This process as "pid start-time": a pid alone could be reused after a crash."""
    return f"{os.getpid()} {_start_time_of(os.getpid())}"


def _owner_is_alive(owner: str) -> bool:
    words = owner.split()
    if len(words) != 2 or not words[0].isdigit():
        return False
    return _start_time_of(int(words[0])) == words[1]


def _start_time_of(pid: int) -> str:
    """The start time in ``/proc/<pid>/stat`` (clock ticks after boot), or ""."""
    fields = _stat_fields_after_command(pid)
    # Field 22 of the whole line; the list starts at field 3 (the state).
    return fields[19] if len(fields) > 19 else ""


def _stat_fields_after_command(pid: int) -> List[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return text.rsplit(")", 1)[-1].split()


def _unified_mount_point() -> Optional[Path]:
    try:
        found = find_unified_cgroup_mount(Path("/proc/self/mountinfo").read_text(encoding="utf-8"))
    except OSError:
        return None
    return None if found is None else found[0]


@dataclass(frozen=True)
class AdoptedBefore:
    """The agent's children in other sessions when a run began, and their sessions.

    They (and anything else in their sessions) belong to earlier runs: to the application,
    not to the run that starts now.
    """

    processes: Mapping[int, float]
    sessions: FrozenSet[int]

    @classmethod
    def read_from_proc(cls) -> AdoptedBefore:
        import psutil

        own_session = _session_of(0)
        processes: Dict[int, float] = {}
        sessions: Set[int] = set()
        for pid in _own_child_pids():
            session = _session_of(pid)
            if session is None or session == own_session:
                continue
            with contextlib.suppress(psutil.Error):
                processes[pid] = psutil.Process(pid).create_time()
                sessions.add(session)
        return cls(processes, frozenset(sessions))

    def includes(self, process: psutil.Process, session: int) -> bool:
        import psutil

        if session in self.sessions:
            return True
        started = self.processes.get(process.pid)
        try:
            return started is not None and started == process.create_time()
        except psutil.Error:
            return False


def reap_adopted_orphans(keep: Collection[int] = ()) -> int:
    """Wait for the ended children of this process that a subreaper adopted; how many.

    Only children in a session other than ours are waited for (the agent's own helpers
    share its session, and their exit status belongs to whoever started them), and never
    those in ``keep``. Reads ``/proc``.
    """
    own_session = _session_of(0)
    reaped = 0
    for pid in _own_child_pids():
        if pid in keep or not _is_zombie(pid):
            continue
        session = _session_of(pid)
        if session is None or session == own_session:
            continue
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped += 1
    return reaped


class DescendantTracker:
    """Everything a script started, found by parentage and by session, kept across reparenting.

    Polled while the script runs: a process is ours when its parent is ours or when it is in
    a session of ours, so a grandchild that called ``setsid()`` is known from the moment its
    parent is seen, and stays known after that parent died and init adopted it.
    """

    def __init__(self, root_pid: int, earlier: Optional[AdoptedBefore] = None) -> None:
        import psutil

        self._own_pid = os.getpid()
        self._own_session = _session_of(0)
        self._root_pid = root_pid
        self._earlier = earlier
        self._known: Dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            self._known[root_pid] = psutil.Process(root_pid)
        self._sessions: Set[int] = {root_pid}

    def refresh(self) -> None:
        """Look for new members (reads ``/proc``)."""
        import psutil

        self._forget_ended()
        if self._earlier is not None:
            reap_adopted_orphans(keep=(self._root_pid,))
        candidates: List[Tuple[psutil.Process, Optional[int]]] = []
        for process in psutil.process_iter(["ppid"]):
            if process.pid != self._own_pid and process.pid not in self._known:
                candidates.append((process, process.info.get("ppid")))
        changed = True
        while changed:
            changed = False
            for process, parent_pid in candidates:
                if process.pid in self._known:
                    continue
                if (
                    parent_pid in self._known
                    or _session_of(process.pid) in self._sessions
                    or (parent_pid == self._own_pid and self._adopted_during_run(process))
                ):
                    self._known[process.pid] = process
                    changed = True
        sessions = {self._root_pid}
        for pid in self._known:
            session = _session_of(pid)
            if session is not None and session != self._own_session:
                sessions.add(session)
        self._sessions = sessions

    def signal_all(self, signal_number: int) -> None:
        import psutil

        self.refresh()
        for process in list(self._known.values()):
            # psutil refuses to signal a pid that was reused by another process.
            with contextlib.suppress(psutil.Error, OSError):
                process.send_signal(signal_number)

    def kill_all(self) -> None:
        """SIGKILL everything, again and again while something forks as fast as we kill."""
        for _ in range(_KILL_ROUNDS):
            self.signal_all(signal.SIGKILL)
            if self.all_gone():
                return

    def all_gone(self) -> bool:
        self.refresh()
        return not any(_is_alive(process) for process in self._known.values())

    def _adopted_during_run(self, process: psutil.Process) -> bool:
        """A child of the agent that is an orphan of this run (see the module's text)."""
        if self._earlier is None or process.pid == self._root_pid:
            return False
        session = _session_of(process.pid)
        if session is None or session == self._own_session:
            return False
        return not self._earlier.includes(process, session)

    def _forget_ended(self) -> None:
        for pid, process in list(self._known.items()):
            if pid != self._root_pid and not _is_alive(process):
                del self._known[pid]


class ProcessTree:
    """Everything one script run started: a cgroup when possible, its process group, tracking."""

    def __init__(self, cgroup: Optional[HookCgroup]) -> None:
        self._cgroup = cgroup
        self._tracker: Optional[DescendantTracker] = None
        self._root_pid: Optional[int] = None
        self._earlier: Optional[AdoptedBefore] = None
        self._keep_survivors = False
        if cgroup is None:
            self._prepare_fallback()

    @classmethod
    def create_on_host(cls, use_cgroups: bool, record_file: Optional[Path] = None) -> ProcessTree:
        """A tree for the next script; makes its cgroup when asked and allowed."""
        return cls(create_hook_cgroup(record_file) if use_cgroups else None)

    def _prepare_fallback(self) -> None:
        # Before the script starts, so that none of its orphans can reach init.
        if become_child_subreaper():
            self._earlier = AdoptedBefore.read_from_proc()
        else:
            _log.warning("cannot become a child subreaper; a hook's orphans may escape it")

    @property
    def uses_cgroup(self) -> bool:
        return self._cgroup is not None

    @property
    def tracks_descendants(self) -> bool:
        return self._tracker is not None

    def spawn_inside(self, spawn: Callable[[], _Started]) -> _Started:
        """Call ``spawn`` (which starts the script) with this process inside the run's
        cgroup, so that the script is born in it; step back out before returning.

        Nothing else of the agent starts a process meanwhile: one command runs at a time,
        and the agent's other moves wait (:data:`_OWN_CGROUP_MOVES`). When the cgroup
        refuses the agent, the run falls back to its process group and tracking.
        """
        cgroup = self._cgroup
        if cgroup is None:
            return spawn()
        with _OWN_CGROUP_MOVES:
            try:
                refusal = cgroup.add_this_process()
                if refusal is None:
                    return spawn()
            finally:
                # Also after a refusal or an interrupt: the move may have happened.
                cgroup.return_this_process_to_parent()
        _log.debug("cannot start the script in its cgroup; using process groups", error=refusal)
        self.abandon_cgroup()
        return spawn()

    def abandon_cgroup(self) -> None:
        """Give up the cgroup (the script could not start in it) and fall back to tracking."""
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        self._prepare_fallback()

    def attach(self, pid: int) -> None:
        """The script's own process was started; begin following it."""
        self._root_pid = pid
        if self._cgroup is None:
            self._tracker = DescendantTracker(pid, self._earlier)

    def refresh(self) -> None:
        if self._tracker is not None:
            self._tracker.refresh()

    def signal_all(self, signal_number: int) -> None:
        """Send a signal to every process of the run."""
        if self._cgroup is not None:
            self._cgroup.signal_members(signal_number)
        if self._root_pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(self._root_pid, signal_number)
        if self._tracker is not None:
            self._tracker.signal_all(signal_number)

    def kill_all(self) -> None:
        if self._cgroup is not None:
            self._cgroup.kill_members()
        self.signal_all(signal.SIGKILL)
        if self._tracker is not None:
            self._tracker.kill_all()

    def all_gone(self) -> bool:
        if self._cgroup is not None:
            return not self._cgroup.is_populated()
        if self._tracker is not None:
            return self._tracker.all_gone()
        return True

    def release_survivors(self) -> None:
        """Let what the script left running live on beyond this run."""
        self._keep_survivors = True
        if self._cgroup is not None:
            self._cgroup.release_members_to_parent()

    def close(self) -> None:
        """End the run: what is left is killed unless :meth:`release_survivors` kept it,
        then the cgroup is removed. Safe to call again after an interruption."""
        if not self._keep_survivors and self._root_pid is not None and not self.all_gone():
            self.kill_all()
        if self._cgroup is not None:
            if self._cgroup.is_populated():
                if self._keep_survivors:
                    self._cgroup.release_members_to_parent()
                else:
                    self._cgroup.kill_members()
            self._cgroup.remove()
            self._cgroup = None


@dataclass(frozen=True)
class PipeHolder:
    """A process that has one of a script's output pipes open."""

    pid: int
    command: str
    streams: Tuple[str, ...]

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command}) holding {' and '.join(self.streams)}"


def find_pipe_holders(pipes: Mapping[int, str], exclude_pid: int) -> List[PipeHolder]:
    """Processes with a descriptor on one of ``pipes`` (inode -> stream name); reads ``/proc``."""
    targets = {f"pipe:[{inode}]": name for inode, name in pipes.items()}
    holders: List[PipeHolder] = []
    try:
        entries = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return holders
    for name in sorted(entries, key=int):
        pid = int(name)
        if pid == exclude_pid:
            continue
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        streams: Set[str] = set()
        for descriptor in descriptors:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{descriptor}")
            except OSError:
                continue
            if link in targets:
                streams.add(targets[link])
        if streams:
            holders.append(
                PipeHolder(pid, _command_line(pid), tuple(sorted(streams, reverse=True)))
            )
    return holders


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        words = [word.decode("utf-8", "replace") for word in raw.split(b"\0") if word]
        if not words:
            words = ["[" + Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip() + "]"]
    except OSError:
        return "unknown command"
    command = " ".join(words)
    if len(command) > _COMMAND_LINE_CHARACTERS:
        command = command[: _COMMAND_LINE_CHARACTERS - 3] + "..."
    return command


def _session_of(pid: int) -> Optional[int]:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _own_child_pids() -> List[int]:
    """The pids of this process's children, from every thread's ``children`` list."""
    pids: List[int] = []
    read = False
    with contextlib.suppress(OSError):
        for task in os.scandir("/proc/self/task"):
            with contextlib.suppress(OSError):
                text = Path(task.path, "children").read_text(encoding="ascii")
                pids.extend(int(word) for word in text.split())
                read = True
    if read:
        return pids
    # Kernels built without CONFIG_PROC_CHILDREN: look at every process's parent.
    import psutil

    with contextlib.suppress(psutil.Error):
        return [child.pid for child in psutil.Process().children()]
    return pids


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields_after_command(pid)
    return bool(fields) and fields[0] == "Z"


def _is_alive(process: psutil.Process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _unescape_mount_field(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as three octal digits.
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field
