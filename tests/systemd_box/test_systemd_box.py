"""The throwaway systemd of ``tests/support/systemd_box.py``: it boots, runs units written into
its root, keeps every write away from the real root (and the real /tmp from its tmpfiles
service), and leaves no mount, process or cgroup behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import List, Sequence, Set

import pytest

from tests.support.systemd_box import (
    BOOT_PROGRAM,
    CHECKOUT,
    SystemdBox,
    boot_systemd_box,
    remove_box_cgroup_tree_on_disk,
    systemd_box_unavailable_reason,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.root


def _read_mount_lines_from_proc() -> Set[str]:
    return set(Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines())


def _pids_in_namespace_from_proc(namespace: str) -> Set[int]:
    """The living processes of a PID namespace (zombies, which hold nothing, are left out:
    when pytest is a child subreaper, as some tests make it, the box's orphans end as
    zombies of pytest)."""
    pids: Set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") != namespace:
                    continue
                state = (entry / "stat").read_text(encoding="utf-8").rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                pids.add(int(entry.name))
    return pids


def _reap_adopted_from_proc(pids: Sequence[int]) -> None:
    """Reaps those of ``pids`` that this process adopted as a subreaper and that ended."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_the_box_boots_to_a_settled_state(systemd_box: SystemdBox) -> None:
    state = systemd_box.systemctl("is-system-running")
    assert state.stdout.strip() in ("running", "degraded"), systemd_box.diagnostics()
    # Its systemd is PID 1 of its own namespace, and its units live under the box's cgroup.
    assert systemd_box.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    assert (systemd_box.cgroup_dir / "init.scope").is_dir()
    # A command run in the box sees a cgroup of the box as its own, in the box's cgroup2.
    assert (
        systemd_box.run(["cat", "/proc/self/cgroup"]).stdout.splitlines()[-1] == "0::/box-commands"
    )
    assert (
        systemd_box.run(["findmnt", "-n", "-o", "FSTYPE", "/sys/fs/cgroup"]).stdout.strip()
        == "cgroup2"
    )


def test_a_unit_written_into_the_box_runs_there(systemd_box: SystemdBox) -> None:
    unit = f"box-probe-{uuid.uuid4().hex[:12]}.service"
    systemd_box.write_file(
        f"/etc/systemd/system/{unit}",
        "[Unit]\nDescription=systemd box probe\n\n[Service]\nExecStart=/bin/sleep infinity\n",
    )
    assert not Path("/etc/systemd/system", unit).exists()
    assert systemd_box.systemctl("daemon-reload").returncode == 0
    started = systemd_box.systemctl("start", unit)
    assert started.returncode == 0, started.stderr + systemd_box.diagnostics()

    assert systemd_box.systemctl("is-active", unit).stdout.strip() == "active"
    status = systemd_box.systemctl("status", unit)
    assert "systemd box probe" in status.stdout
    assert "active (running)" in status.stdout
    assert (
        (systemd_box.cgroup_dir / "system.slice" / unit / "cgroup.procs")
        .read_text(encoding="ascii")
        .split()
    )

    assert systemd_box.systemctl("stop", unit).returncode == 0
    assert systemd_box.systemctl("is-active", unit).stdout.strip() == "inactive"


def test_a_notify_unit_tells_the_box_systemd_it_is_ready(systemd_box: SystemdBox) -> None:
    # The agent's unit is Type=notify: readiness and the STATUS line must reach this systemd.
    unit = f"box-notify-{uuid.uuid4().hex[:12]}.service"
    systemd_box.write_file(
        f"/etc/systemd/system/{unit}",
        "[Service]\nType=notify\nNotifyAccess=all\nExecStart=/bin/sh -c "
        "'echo probe starting; systemd-notify --ready --status=\"probe polling\"; exec sleep infinity'\n",
    )
    assert systemd_box.systemctl("daemon-reload").returncode == 0
    started = systemd_box.systemctl("start", unit)
    assert started.returncode == 0, started.stderr + systemd_box.diagnostics()
    assert 'Status: "probe polling"' in systemd_box.systemctl("status", unit).stdout
    # journald writes what the unit printed on its own time: wait for it, bounded.
    assert wait_until(
        lambda: (
            "probe starting" in systemd_box.run(["journalctl", "--no-pager", "-u", unit]).stdout
        ),
        timeout=10,
    )
    assert systemd_box.systemctl("stop", unit).returncode == 0


def test_a_file_written_inside_does_not_reach_the_real_root(systemd_box: SystemdBox) -> None:
    name = f"box-write-{uuid.uuid4().hex}"
    for folder in ("/etc", "/root", "/var/lib"):
        written = systemd_box.run(["touch", f"{folder}/{name}"])
        assert written.returncode == 0, written.stderr
        assert systemd_box.exists(f"{folder}/{name}")
        assert not Path(folder, name).exists()
    # A file the host writes in the box over an absolute link stays in the box too.
    linked = systemd_box.run(["ln", "-s", f"/etc/{name}-target", f"/root/{name}-link"])
    assert linked.returncode == 0, linked.stderr
    systemd_box.write_file(f"/root/{name}-link", "over a link\n")
    assert systemd_box.read_text(f"/root/{name}-link") == "over a link\n"
    assert not Path("/etc", f"{name}-target").exists()
    assert not Path("/root", f"{name}-link").exists()


def _mount_options(box: SystemdBox, target: str) -> List[str]:
    found = box.run(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", target])
    assert found.returncode == 0, found.stderr
    fstype, options = found.stdout.split()
    return [fstype, *options.split(",")]


def test_the_box_cannot_change_the_machine(systemd_box: SystemdBox) -> None:
    # Kernel settings and /sys are machine-wide: read-only in the box.
    assert "ro" in _mount_options(systemd_box, "/proc/sys")
    assert "ro" in _mount_options(systemd_box, "/sys")
    same = Path("/proc/sys/vm/swappiness").read_text(encoding="ascii").strip()
    written = systemd_box.run(["sysctl", "-q", "-w", f"vm.swappiness={same}"])
    assert written.returncode != 0
    # /dev is the box's own tmpfs, and the host name its own.
    assert _mount_options(systemd_box, "/dev")[0] == "tmpfs"
    name = f"box-{uuid.uuid4().hex[:8]}"
    assert systemd_box.run(["hostname", name]).returncode == 0
    assert systemd_box.run(["hostname"]).stdout.strip() == name
    assert socket.gethostname() != name


def _interfaces(proc_net_dev: str) -> Set[str]:
    return {line.split(":")[0].strip() for line in proc_net_dev.splitlines()[2:]}


def test_a_command_can_run_in_the_box_without_any_network(systemd_box: SystemdBox) -> None:
    shared = systemd_box.run(["cat", "/proc/net/dev"])
    assert _interfaces(shared.stdout) == _interfaces(
        Path("/proc/net/dev").read_text(encoding="utf-8")
    )
    isolated = systemd_box.run(["cat", "/proc/net/dev"], own_network=True)
    assert isolated.returncode == 0, isolated.stderr
    assert _interfaces(isolated.stdout) == {"lo"}


def test_the_boot_stage_refuses_to_run_outside_a_new_pid_namespace(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BOOT_PROGRAM), "init", str(tmp_path), ".no-marker"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 70
    assert done.stderr.strip() == "systemd box: stage init must run as PID 1 of a new PID namespace"
    assert list(tmp_path.iterdir()) == []


def test_a_box_leaves_the_host_as_it_found_it(tmp_path: Path) -> None:
    reason = systemd_box_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    host_tmp_marker = Path("/tmp", f"systemd-box-host-marker-{uuid.uuid4().hex}")
    host_tmp_marker.write_text("kept\n", encoding="utf-8")
    # A folder of the host's /tmp the box is asked to show, as a checkout cloned under /tmp is.
    shown = tmp_path / "shown"
    shown.mkdir()
    (tmp_path / "work").mkdir()
    (shown / "kept.txt").write_text("from the host\n", encoding="utf-8")
    mounts_before = _read_mount_lines_from_proc()
    try:
        with boot_systemd_box(tmp_path / "work", shown_folders=(CHECKOUT, shown)) as box:
            namespace = os.readlink(f"/proc/{box.init_pid}/ns/pid")
            # The box's tmpfiles service has run: it emptied the box's /tmp, not the host's.
            setup = box.systemctl("is-active", "systemd-tmpfiles-setup.service")
            assert setup.stdout.strip() == "active"
            assert not box.exists(str(host_tmp_marker))
            assert _pids_in_namespace_from_proc(namespace)
            # The shown folders are there, and what the box writes in them stays in the box.
            assert box.exists(str(CHECKOUT / "pyproject.toml"))
            assert box.read_text(str(shown / "kept.txt")) == "from the host\n"
            box.write_file(str(shown / "kept.txt"), "from the box\n")
            box.write_file(str(shown / "new.txt"), "new in the box\n")
            assert box.read_text(str(shown / "kept.txt")) == "from the box\n"
            assert (shown / "kept.txt").read_text(encoding="utf-8") == "from the host\n"
            assert not (shown / "new.txt").exists()
        assert host_tmp_marker.read_text(encoding="utf-8") == "kept\n"
        assert _read_mount_lines_from_proc() == mounts_before
        assert _pids_in_namespace_from_proc(namespace) == set()
        assert not box.cgroup_dir.exists()
        assert not (tmp_path / "work" / "box-state").exists()
    finally:
        host_tmp_marker.unlink()


def test_a_box_ends_with_the_process_that_booted_it_even_when_killed(tmp_path: Path) -> None:
    reason = systemd_box_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    booter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from tests.support.systemd_box import boot_systemd_box\n"
            "with boot_systemd_box(Path(sys.argv[1])) as box:\n"
            "    print(box.init_pid, box.cgroup_dir, flush=True)\n"
            "    time.sleep(120)\n",
            str(tmp_path),
        ],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    init_pid, cgroup_dir, namespace, unshare_pids = 0, "", "", []
    try:
        assert booter.stdout is not None
        init_pid_text, cgroup_dir = booter.stdout.readline().split()
        init_pid = int(init_pid_text)
        namespace = os.readlink(f"/proc/{init_pid}/ns/pid")
        assert _pids_in_namespace_from_proc(namespace)
        children = Path(f"/proc/{booter.pid}/task/{booter.pid}/children").read_text(
            encoding="ascii"
        )
        unshare_pids = [int(pid) for pid in children.split()]
        booter.kill()
        booter.wait()
        assert wait_until(lambda: not _pids_in_namespace_from_proc(namespace), timeout=10)
    finally:
        booter.kill()
        booter.wait()
        # When the box outlived its booter (the failure this test looks for), end it here.
        if namespace and init_pid in _pids_in_namespace_from_proc(namespace):
            os.kill(init_pid, signal.SIGKILL)
            wait_until(lambda: not _pids_in_namespace_from_proc(namespace), timeout=10)
        _reap_adopted_from_proc([init_pid, *unshare_pids])
        if cgroup_dir:
            remove_box_cgroup_tree_on_disk(Path(cgroup_dir))
