"""A real systemd booted in a throwaway root, for tests of what runs under systemd.

``boot_systemd_box`` starts ``tests/support/systemd_box_boot.py``, which boots
``/lib/systemd/systemd`` as PID 1 of new PID, mount, cgroup, UTS and IPC namespaces,
chrooted into an overlay whose lower layer is the real ``/`` and whose upper layer is a
tmpfs that exists only in the box's mount namespace. Nothing written inside reaches the real
root; the box's systemd sees only a cgroup of its own, made here under the host's cgroup2
mount and removed at the end. Commands run inside through ``nsenter``; the box ends with
``systemctl poweroff`` (and SIGKILL to its PID 1 when that does not end it in time), and
with the process that booted it, however that one ends.

What a test sees in the box: the real root's files as they are (the overlay's lower layer is
``/``), but ``/tmp`` and ``/run`` are the box's own empty tmpfs, so pytest's tmp folders are
not there: put files in with ``write_file``. The project's checkout (and its virtual
environment) is always there at its real path, even in a clone under ``/tmp``: the box shows
it again through an overlay of its own, so writes to it stay in the box too. The box boots ``basic.target`` and shares the host's network. Commands
run through ``run`` are in a cgroup of the box but in no unit of its systemd; use
``systemd-run`` inside for a command that must be one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, List, Optional, Sequence

from agent.lifecycle_event.process_tree import read_own_cgroup_dir

BOOT_PROGRAM = Path(__file__).with_name("systemd_box_boot.py")
# The checkout the tests run from: commands in the box run its virtual environment's programs.
CHECKOUT = Path(__file__).resolve().parents[2]
SYSTEMD = Path("/lib/systemd/systemd")
BOOT_TIMEOUT_SECONDS = 60.0
POWEROFF_TIMEOUT_SECONDS = 30.0
_POLL_SECONDS = 0.05
_SETTLED_STATES = ("running", "degraded")
# The cgroup, inside the box's, of the commands run in the box through ``SystemdBox.run``.
COMMANDS_CGROUP = "box-commands"


class SystemdBoxError(RuntimeError):
    """The box did not come up, or could not be taken down cleanly."""


def systemd_box_unavailable_reason() -> Optional[str]:
    """Why a systemd box cannot be booted on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "booting a systemd box needs root"
    for program in ("unshare", "nsenter", "mount"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    if not SYSTEMD.is_file():
        return f"{SYSTEMD} is not installed"
    try:
        filesystems = Path("/proc/filesystems").read_text(encoding="utf-8").split()
    except OSError as error:
        return f"cannot read /proc/filesystems: {error}"
    if "overlay" not in filesystems:
        return "the kernel has no overlay file system"
    own_cgroup = read_own_cgroup_dir()
    if own_cgroup is None or not os.access(own_cgroup, os.W_OK):
        return "no writable cgroup2 hierarchy for the box's cgroup"
    return None


@dataclass(frozen=True)
class SystemdBox:
    """A booted box: its PID 1 (as the host numbers it), its cgroup and its boot log."""

    init_pid: int
    marker: str
    cgroup_dir: Path
    boot_log: Path

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        input_text: Optional[str] = None,
        own_network: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Runs ``argv`` inside the box: its namespaces, root and working folder, and the
        cgroup ``COMMANDS_CGROUP`` of the box (so the command finds its own cgroup in the
        box's cgroup2 mount, as a process of the box would). The box shares the host's
        network (servers on the host's loopback are reachable); ``own_network`` runs the
        command in a network namespace of its own with nothing but a loopback that is down,
        to show that it needs no network."""
        self._check_root()
        join = [
            sys.executable,
            str(BOOT_PROGRAM),
            "join",
            str(self.cgroup_dir / COMMANDS_CGROUP),
            "--",
        ]
        enter = [
            "nsenter",
            "-t",
            str(self.init_pid),
            "-p",
            "-m",
            "-u",
            "-i",
            "-C",
            "-r",
            "-w",
            "--",
        ]
        isolate = ["unshare", "--net", "--"] if own_network else []
        return subprocess.run(
            [*join, *enter, *isolate, *argv],
            input=input_text,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            check=False,
        )

    def write_file(self, inside: str, text: str, mode: int = 0o644) -> None:
        """Writes ``text`` to the box's file ``inside`` (parents made as needed).

        The write happens in the box's root, so symbolic links resolve there; the host's
        view of that root (``/proc/<pid>/root``) is not used on purpose: an absolute link
        or a ``..`` met through it resolves against the real root."""
        done = self.run(["install", "-D", "-m", f"{mode:o}", "/dev/stdin", inside], input_text=text)
        if done.returncode != 0:
            raise SystemdBoxError(f"cannot write {inside} in the box: {done.stderr.strip()}")

    def copy_tree_in(self, folder: Path, inside: str) -> Path:
        """Copy the files of ``folder`` (a test's tmp folder, text files) into the box at
        ``inside``, modes kept; returns ``inside``."""
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                relative = path.relative_to(folder).as_posix()
                self.write_file(
                    f"{inside}/{relative}",
                    path.read_text(encoding="utf-8"),
                    mode=path.stat().st_mode & 0o777,
                )
        return Path(inside)

    def read_text(self, inside: str) -> str:
        """The text of the box's file ``inside``, read in the box's root."""
        done = self.run(["cat", "--", inside])
        if done.returncode != 0:
            raise SystemdBoxError(f"cannot read {inside} in the box: {done.stderr.strip()}")
        return done.stdout

    def exists(self, inside: str) -> bool:
        """Whether the box has ``inside`` (a link that resolves to nothing counts as absent)."""
        return self.run(["test", "-e", inside]).returncode == 0

    def systemctl(self, *arguments: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *arguments], timeout=timeout)

    def diagnostics(self) -> str:
        """Failed units, pending jobs and the journal's tail, for an error message."""
        parts: List[str] = []
        for argv in (
            ["systemctl", "--no-pager", "--failed"],
            ["systemctl", "--no-pager", "list-jobs"],
            ["journalctl", "--no-pager", "-n", "40"],
        ):
            try:
                done = self.run(argv, timeout=15)
                parts.append(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
            except (subprocess.TimeoutExpired, SystemdBoxError) as error:
                parts.append(f"$ {' '.join(argv)}\n({error})")
        return "\n".join(parts)

    def _check_root(self) -> None:
        # The marker exists only in the overlay's upper layer: a PID 1 whose root lacks it
        # is not (or no longer) the box's systemd, and nothing may run in its root.
        if not Path(f"/proc/{self.init_pid}/root/{self.marker}").is_file():
            raise SystemdBoxError(f"process {self.init_pid} is not the box's PID 1 in its overlay")


def _read_tail(log: Path) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])


def _read_init_pid_from_proc(unshare_pid: int) -> Optional[int]:
    try:
        children = (
            Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
            .read_text(encoding="ascii")
            .split()
        )
    except OSError:
        return None
    return int(children[0]) if children else None


def _read_comm_from_proc(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _wait_for_systemd(process: subprocess.Popen[bytes], marker: str, log: Path) -> int:
    """The host PID of the box's PID 1 once it is systemd in the overlay."""
    deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemdBoxError(
                f"the box ended during boot (exit {process.returncode}): {log.read_text(encoding='utf-8', errors='replace')}"
            )
        init_pid = _read_init_pid_from_proc(process.pid)
        if (
            init_pid is not None
            and _read_comm_from_proc(init_pid) == "systemd"
            and Path(f"/proc/{init_pid}/root/{marker}").is_file()
        ):
            return init_pid
        time.sleep(_POLL_SECONDS)
    raise SystemdBoxError(f"systemd did not start in the box within {BOOT_TIMEOUT_SECONDS:.0f} s")


def _wait_until_settled(box: SystemdBox, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
    state = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemdBoxError(
                f"the box's systemd ended during boot (exit {process.returncode})"
            )
        state = box.systemctl("is-system-running", timeout=15).stdout.strip()
        if state in _SETTLED_STATES:
            return
        time.sleep(_POLL_SECONDS)
    raise SystemdBoxError(
        f"the box's systemd is {state or 'unreachable'} after {BOOT_TIMEOUT_SECONDS:.0f} s\n"
        f"{box.diagnostics()}\nboot log {box.boot_log}:\n{_read_tail(box.boot_log)}"
    )


def _power_off(box: Optional[SystemdBox], process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None and box is not None:
        with contextlib.suppress(subprocess.TimeoutExpired, SystemdBoxError):
            box.systemctl("poweroff", "--no-block", timeout=15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=POWEROFF_TIMEOUT_SECONDS)
    if process.poll() is None:
        # Killing a PID namespace's first process ends every process of the namespace.
        init_pid = _read_init_pid_from_proc(process.pid)
        if init_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid, signal.SIGKILL)
        try:
            process.wait(timeout=POWEROFF_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def remove_box_cgroup_tree_on_disk(cgroup_dir: Path) -> None:
    """Removes the box's cgroup and the unit cgroups its systemd left, deepest first."""
    deadline = time.monotonic() + 10.0
    while cgroup_dir.exists():
        folders = sorted(
            (path for path in cgroup_dir.rglob("*") if path.is_dir()),
            key=lambda path: len(path.parts),
            reverse=True,
        )
        try:
            for folder in [*folders, cgroup_dir]:
                folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError as error:
            # A cgroup stays busy for a moment after its last process is reaped.
            if time.monotonic() > deadline:
                raise SystemdBoxError(
                    f"cannot remove the box's cgroup {cgroup_dir}: {error}"
                ) from error
            time.sleep(_POLL_SECONDS)


@contextlib.contextmanager
def boot_systemd_box(
    work_dir: Path, shown_folders: Sequence[Path] = (CHECKOUT,)
) -> Iterator[SystemdBox]:
    """Boots a box (``work_dir`` holds its boot log and the empty mount point of its
    tmpfs), waits until its systemd is running or degraded, and takes it down at the end.
    ``shown_folders`` are visible in the box at their real paths even under ``/tmp`` or
    ``/run``, through overlays that keep the box's writes in the box."""
    reason = systemd_box_unavailable_reason()
    if reason is not None:
        raise SystemdBoxError(reason)
    own_cgroup = read_own_cgroup_dir()
    assert own_cgroup is not None
    name = f"systemd-box-{uuid.uuid4().hex}"
    marker = f".{name}"
    cgroup_dir = own_cgroup / name
    state_dir = work_dir / "box-state"
    boot_log = work_dir / "box-boot.log"
    state_dir.mkdir()
    cgroup_dir.mkdir()
    log_file: IO[bytes] = boot_log.open("wb")
    process: Optional[subprocess.Popen[bytes]] = None
    box: Optional[SystemdBox] = None
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                str(BOOT_PROGRAM),
                "enter",
                str(cgroup_dir),
                str(state_dir),
                marker,
                *(str(folder.resolve()) for folder in shown_folders),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        init_pid = _wait_for_systemd(process, marker, boot_log)
        (cgroup_dir / COMMANDS_CGROUP).mkdir()
        box = SystemdBox(init_pid=init_pid, marker=marker, cgroup_dir=cgroup_dir, boot_log=boot_log)
        _wait_until_settled(box, process)
        yield box
    finally:
        if process is not None:
            _power_off(box, process)
        log_file.close()
        remove_box_cgroup_tree_on_disk(cgroup_dir)
        state_dir.rmdir()
