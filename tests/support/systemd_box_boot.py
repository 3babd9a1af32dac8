"""The program that boots a throwaway systemd for ``tests/support/systemd_box.py``.

It runs in stages, so that the real root can never be the one systemd boots on:

``enter``: moves itself into the box's own cgroup (so the cgroup namespace made next is
rooted there), then becomes ``unshare`` with new PID, mount, cgroup, UTS and IPC
namespaces, whose first process runs stage ``init``.

``join``: moves itself into a cgroup of the box, then execs a command (``nsenter`` into
the box), so that commands run in the box see a cgroup of the box as their own.

``init`` (PID 1 of the new PID namespace, in a private mount namespace): mounts a tmpfs in
the state folder, an overlay on it whose lower layer is ``/``, the API file systems of the
box, masks the units that would touch the real machine, chroots into the overlay, checks
that the root it now sees is the overlay (a marker file that exists only in the overlay's
upper layer, and the overlay's device), and only then execs systemd. Any failed check
aborts with one line on stderr. It only uses the standard library: it runs before the
project's virtual environment matters.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, NoReturn

SYSTEMD = "/lib/systemd/systemd"
_PR_SET_PDEATHSIG = 1

# Units that would touch the real machine (clock, kernel settings and modules, devices,
# network interfaces, the real disk) or wait for devices that never appear in the box;
# each is masked in the overlay before boot.
MASKED_UNITS = (
    "getty@tty1.service",
    "getty.target",
    "serial-getty@ttyS0.service",
    "console-getty.service",
    "systemd-timesyncd.service",
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "modprobe@.service",
    "kmod-static-nodes.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-udevd.service",
    "systemd-journald-audit.socket",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-hwdb-update.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-networkd.service",
    "systemd-networkd-wait-online.service",
    "networking.service",
    "systemd-pstore.service",
    "systemd-random-seed.service",
    "systemd-remount-fs.service",
    "systemd-firstboot.service",
    "systemd-journal-flush.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "postgresql.service",
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "fstrim.timer",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "man-db.timer",
    "systemd-tmpfiles-clean.timer",
)

# Device nodes bound from the host into the box's own /dev (a tmpfs): harmless ones only,
# so nothing in the box can create or change a node of the real /dev.
DEVICE_NODES = ("null", "zero", "full", "random", "urandom", "tty")


def _mount(*argv: str) -> None:
    # stdout stays this program's: the bind of /proc/self/fd/1 below means the boot log.
    done = subprocess.run(["mount", *argv], stderr=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        _abort(f"mount {' '.join(argv)} failed: {done.stderr.strip()}")


def _abort(message: str) -> NoReturn:
    print(f"systemd box: {message}", file=sys.stderr, flush=True)
    raise SystemExit(70)


def enter(cgroup_dir: str, state_dir: str, marker: str, shown: List[str]) -> None:
    """Stage ``enter``: joins the box's cgroup, then becomes unshare running stage ``init``."""
    # The box ends with the test that started it, even one killed outright: this process
    # (soon unshare) gets SIGKILL when its parent dies, and unshare's --kill-child passes
    # that on to the box's PID 1, whose end ends every process of its namespace.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        _abort(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() == 1:
        _abort("the test that started the box has already ended")
    Path(cgroup_dir, "cgroup.procs").write_text(f"{os.getpid()}\n", encoding="ascii")
    os.execvp(  # noqa: S606 - an argument list, no shell, is the point
        "unshare",
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--cgroup",
            "--uts",
            "--ipc",
            "--propagation",
            "private",
            "--kill-child=SIGKILL",
            "--",
            sys.executable,
            os.path.abspath(__file__),
            "init",
            state_dir,
            marker,
            *shown,
        ],
    )


def join(cgroup_dir: str, argv: List[str]) -> None:
    """Moves itself into ``cgroup_dir`` (a cgroup inside the box's), then execs ``argv``."""
    Path(cgroup_dir, "cgroup.procs").write_text(f"{os.getpid()}\n", encoding="ascii")
    os.execvp(argv[0], argv)  # noqa: S606 - an argument list, no shell


def _prepare_dev(merged: Path) -> None:
    dev = merged / "dev"
    _mount("-t", "tmpfs", "-o", "mode=755,nosuid", "box-dev", str(dev))
    for name in DEVICE_NODES:
        (dev / name).touch()
        _mount("--bind", f"/dev/{name}", str(dev / name))
    # systemd writes its boot messages to /dev/console: in the box that is the boot log
    # (this program's stdout) when there is one, never the machine's console.
    (dev / "console").touch()
    stdout_is_file = os.path.isfile(f"/proc/self/fd/{sys.stdout.fileno()}")
    _mount("--bind", "/proc/self/fd/1" if stdout_is_file else "/dev/null", str(dev / "console"))
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ):
        (dev / name).symlink_to(target)
    for name in ("pts", "shm"):
        (dev / name).mkdir()


# The box's own empty file systems: a folder under one of these is hidden in the box unless
# it is shown again.
_BOX_OWN_FOLDERS = (Path("/tmp"), Path("/run"))


def _show_folders(state: Path, merged: Path, shown: List[str]) -> None:
    """Makes each folder of ``shown`` that the box's /tmp or /run hides visible at the same
    path: an overlay with the real folder as its lower layer, so that nothing the box writes
    there reaches the real folder."""
    for number, folder in enumerate(shown):
        real = Path(folder)
        if not real.is_absolute() or not real.is_dir():
            _abort(f"folder to show {folder} is not an absolute path to a folder")
        if not any(real == own or own in real.parents for own in _BOX_OWN_FOLDERS):
            continue  # the overlay of / shows it already
        inside = merged / real.relative_to("/")
        # The parents keep the real ones' modes: a service that runs as another user reaches
        # the folder in the box exactly when it would outside.
        for parent in reversed([real, *real.parents]):
            target = merged / parent.relative_to("/")
            if not target.exists():
                target.mkdir()
                os.chmod(target, os.stat(parent).st_mode & 0o7777)
        upper, work = state / f"shown-{number}-upper", state / f"shown-{number}-work"
        upper.mkdir()
        work.mkdir()
        _mount(
            "-t",
            "overlay",
            "-o",
            f"lowerdir={real},upperdir={upper},workdir={work}",
            f"box-shown-{number}",
            str(inside),
        )


def _mask_units(merged: Path) -> None:
    units = merged / "etc" / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        path = units / unit
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to("/dev/null")


def init(state_dir: str, marker: str, shown: List[str]) -> None:
    """Stage ``init`` (PID 1 of the box): builds the overlay root, checks it, execs systemd."""
    if os.getpid() != 1:
        _abort("stage init must run as PID 1 of a new PID namespace")
    if Path("/", marker).exists():
        _abort(f"marker {marker} exists on the real root; refusing to boot")
    state = Path(state_dir)
    _mount("-t", "tmpfs", "-o", "mode=700", "box-state", str(state))
    upper, work, merged = state / "upper", state / "work", state / "merged"
    for folder in (upper, work, merged):
        folder.mkdir()
    (upper / marker).write_text("systemd box overlay\n", encoding="ascii")
    _mount(
        "-t",
        "overlay",
        "-o",
        f"lowerdir=/,upperdir={upper},workdir={work}",
        "box-root",
        str(merged),
    )
    overlay_device = os.stat(merged).st_dev
    _mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", str(merged / "proc"))
    # Kernel settings are machine-wide: the box may read them, never change them.
    for path in ("sys", "sysrq-trigger"):
        if not (merged / "proc" / path).exists():
            continue
        _mount("--bind", str(merged / "proc" / path), str(merged / "proc" / path))
        _mount("-o", "remount,bind,ro", str(merged / "proc" / path))
    _mount("--bind", "/sys", str(merged / "sys"))
    _mount("-o", "remount,bind,ro,nosuid,nodev,noexec", str(merged / "sys"))
    # The cgroup namespace is rooted at the box's own cgroup: this cgroup2 shows only it.
    _mount("-t", "cgroup2", "-o", "nosuid,nodev,noexec", "cgroup2", str(merged / "sys/fs/cgroup"))
    _prepare_dev(merged)
    _mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "box-run", str(merged / "run"))
    _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "box-tmp", str(merged / "tmp"))
    _show_folders(state, merged, shown)
    _mask_units(merged)
    # Tells systemd it runs in a container: no kernel reboot, no console takeover, and the
    # units that have ConditionVirtualization=!container stay off.
    (merged / "run" / "systemd").mkdir()
    (merged / "run" / "systemd" / "container").write_text("systemd-box\n", encoding="ascii")

    os.chroot(merged)
    os.chdir("/")
    if not Path("/", marker).is_file() or os.stat("/").st_dev != overlay_device:
        _abort("the root after chroot is not the overlay; refusing to boot")
    environment = {"container": "systemd-box", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    # basic.target, not multi-user.target: the services the host enables for itself (a
    # database, sshd) would start in the box and listen on the host's network, which the box
    # shares so that tests reach servers on the host's loopback.
    argv: List[str] = [SYSTEMD, "--system", "--unit=basic.target"]
    if os.environ.get("SYSTEMD_BOX_DRY_RUN") == "1":
        # Every step above ran; show what the box sees in place of booting.
        argv = ["/bin/cat", "/proc/1/cgroup", f"/{marker}"]
    os.execve(argv[0], argv, environment)  # noqa: S606 - an argument list, no shell


def main(argv: List[str]) -> None:
    if len(argv) >= 4 and argv[0] == "enter":
        enter(argv[1], argv[2], argv[3], argv[4:])
    elif len(argv) >= 3 and argv[0] == "init":
        init(argv[1], argv[2], argv[3:])
    elif len(argv) >= 4 and argv[0] == "join" and argv[2] == "--":
        join(argv[1], argv[3:])
    else:
        _abort(
            "usage: systemd_box_boot.py enter CGROUP STATE MARKER [SHOWN...]"
            " | init STATE MARKER [SHOWN...]"
            " | join CGROUP -- ARGV..."
        )


if __name__ == "__main__":
    main(sys.argv[1:])
