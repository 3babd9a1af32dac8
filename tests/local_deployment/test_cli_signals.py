"""codedeploy-local and signals: at any moment, one line, a status, and nothing left behind.

SIGINT, SIGTERM and SIGHUP end the program the same way (exit 128 plus the signal's
number): during the imports, the early unpack of a local archive, the install's
two-process copy or a hook. The hook's whole tree (found by a unique marker of the
test's own) and its cgroup are gone afterwards; the install's second process dies with
the program even when the program is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import signal
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import List, Optional

import pytest

from agent.lifecycle_event.process_tree import find_unified_cgroup_mount, own_cgroup_v2_path
from tests.support.archives import write_tree
from tests.support.local_agent import LocalAgent
from tests.support.processes import (
    alive,
    catches,
    interrupt_during_imports,
    kill_marked,
    pids_with_marker,
)
from tests.support.waiting import wait_until

# Bounds on waiting for something that happens at once when the code is right.
_WAIT_SECONDS = 30.0


def _children_of(pid: int) -> List[int]:
    children: List[int] = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with_text = Path(task.path, "children").read_text(encoding="ascii")
            children.extend(int(word) for word in with_text.split())
    except OSError:
        pass
    return children


def _cgroup_dir(cgroup_line: str) -> Optional[Path]:
    relative = own_cgroup_v2_path(cgroup_line)
    mount = find_unified_cgroup_mount(Path("/proc/self/mountinfo").read_text(encoding="utf-8"))
    if relative is None or mount is None or mount[1] != "/":
        return None
    return mount[0] / relative.lstrip("/")


@pytest.mark.parametrize(
    ("number", "status"),
    [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)],
)
def test_a_signal_during_a_hook_ends_its_tree_and_cgroup_in_one_line(
    local_agent: LocalAgent, tmp_path: Path, number: int, status: int
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    cgroup_file, started = tmp_path / "hook.cgroup", tmp_path / "started"
    source = write_tree(
        tmp_path / "rev",
        {
            "appspec.yml": "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n"
            "    - location: hooks/start.sh\n      timeout: 300\n",
            "hooks/start.sh": f"""#!/bin/sh
cat /proc/self/cgroup > {cgroup_file}
setsid sh -c 'sleep 600; :' {marker}-grandchild &
sh -c 'sleep 600; : {marker}' &
touch {started}
exec sleep 600
""",
        },
    )
    process = local_agent.start("-l", str(source))
    try:
        assert wait_until(lambda: started.exists() and len(pids_with_marker(marker)) == 2)
        process.send_signal(number)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == status
        assert "Traceback" not in stderr
        reports = [line for line in stderr.splitlines() if "interrupted" in line]
        assert len(reports) == 1 and "interrupted in ApplicationStart" in reports[0]
        assert wait_until(lambda: not pids_with_marker(marker))
        hook_cgroup = _cgroup_dir(cgroup_file.read_text(encoding="utf-8"))
        if hook_cgroup is not None and hook_cgroup.name.startswith("codedeploy-hook-"):
            assert not hook_cgroup.exists()
    finally:
        process.kill()
        process.wait()
        kill_marked(marker)


def test_sigint_during_the_imports_is_one_line_and_130(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    source = write_tree(tmp_path / "rev", {"appspec.yml": "version: 0.0\nos: linux\n"})
    for _ in range(3):
        process = local_agent.start("-l", str(source))
        _, stderr = interrupt_during_imports(process)
        assert process.returncode == 130, stderr
        assert len(stderr.splitlines()) == 1, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr


def _large_archive_with_appspec_last(path: Path) -> Path:
    """A tgz that takes a moment to read through: 256 MiB of zeros, then the appspec."""
    with (
        gzip.open(path, "wb", compresslevel=1) as packed,
        tarfile.open(fileobj=packed, mode="w") as archive,
    ):
        member = tarfile.TarInfo("app/zeros.bin")
        member.size = 256 << 20
        archive.addfile(member, io.BufferedReader(_Zeros(member.size)))  # type: ignore[arg-type]
        appspec = b"version: 0.0\nos: linux\n"
        info = tarfile.TarInfo("appspec.yml")
        info.size = len(appspec)
        archive.addfile(info, io.BytesIO(appspec))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._left)
        buffer[:count] = bytes(count)
        self._left -= count
        return count


def _unpacking(root: Path) -> bool:
    """Whether a revision is being unpacked under the deployment root ``root``."""
    return any(root.glob("*/*/.deployment-archive.partial-*"))


def test_sigint_during_the_early_unpack_of_a_large_archive_is_one_line_and_130(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    bundle = _large_archive_with_appspec_last(tmp_path / "large.tgz")
    process = local_agent.start("-l", str(bundle), "-t", "tgz")
    try:
        assert wait_until(lambda: _unpacking(local_agent.root))
        process.send_signal(signal.SIGINT)
        out, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    # Still before the first command: nothing else was printed, and the deployment's
    # folder (its partial unpack with it) is gone.
    assert out == ""
    assert len(stderr.splitlines()) == 1, stderr
    assert "interrupted before it started" in stderr
    assert not (local_agent.root / "default-local-deployment-group").exists()


def _worker_of(agent_pid: int) -> Optional[int]:
    """The install's second process: a child of the agent in the agent's own session."""
    for child in _children_of(agent_pid):
        try:
            if os.getsid(child) == os.getsid(agent_pid):
                return child
        except OSError:
            continue
    return None


def _held_worker_of(agent_pid: int) -> Optional[int]:
    """A worker of the agent, stopped (SIGSTOP) once it has set itself up; None if none.

    A worker resets its SIGTERM handler once it is armed to die with its parent; stopped
    after that, it cannot finish on its own before its parent is gone.
    """
    worker = _worker_of(agent_pid)
    if worker is None:
        return None
    while alive(worker) and catches(worker, signal.SIGTERM):
        time.sleep(0.0005)
    try:
        os.kill(worker, signal.SIGSTOP)
    except ProcessLookupError:
        return None
    # A helper the agent runs (ldconfig, setfacl) has exec'd another program by now.
    if not alive(worker) or _command_line(worker) != _command_line(agent_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGCONT)
        return None
    return worker


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGTERM])
def test_the_installs_second_process_dies_with_the_program(
    local_agent: LocalAgent, tmp_path: Path, number: int
) -> None:
    files = {
        f"app/{folder}/f{index}.txt": f"{folder} {index}\n"
        for folder in ("a", "b", "c", "d")
        for index in range(1500)
    }
    files["appspec.yml"] = (
        f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {tmp_path / 'www'}\n"
    )
    source = write_tree(tmp_path / "rev", files)
    process = local_agent.start("-l", str(source))
    worker: Optional[int] = None
    try:
        deadline = time.monotonic() + _WAIT_SECONDS
        while worker is None and process.poll() is None and time.monotonic() < deadline:
            worker = _held_worker_of(process.pid)
        assert worker is not None, "the install was never split between two processes"
        process.send_signal(number)
        process.communicate(timeout=60)
        assert process.returncode == (-number if number == signal.SIGKILL else 128 + number)
        assert wait_until(lambda: not alive(worker or 0))
    finally:
        process.kill()
        process.wait()
        if worker is not None and alive(worker):
            os.kill(worker, signal.SIGKILL)


def _long_hook_revision(where: Path, marker: str, cgroup_file: Path, started: Path) -> Path:
    return write_tree(
        where,
        {
            "appspec.yml": "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n"
            "    - location: hooks/start.sh\n      timeout: 300\n",
            "hooks/start.sh": f"""#!/bin/sh
cat /proc/self/cgroup > {cgroup_file}
setsid sh -c 'sleep 600; :' {marker} > /dev/null 2>&1 &
touch {started}
exec sleep 600
""",
        },
    )


@pytest.mark.root
def test_the_next_run_ends_a_hook_cgroup_that_a_sigkill_left_and_spares_a_live_one(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    marker, live_marker = f"marker-{uuid.uuid4().hex}", f"marker-{uuid.uuid4().hex}"
    cgroup_file, started = tmp_path / "killed.cgroup", tmp_path / "killed.started"
    live_cgroup_file, live_started = tmp_path / "live.cgroup", tmp_path / "live.started"
    killed = local_agent.start(
        "-l", str(_long_hook_revision(tmp_path / "a", marker, cgroup_file, started))
    )
    live: Optional[subprocess.Popen[str]] = None
    try:
        assert wait_until(lambda: started.exists() and bool(pids_with_marker(marker)))
        hook_cgroup = _cgroup_dir(cgroup_file.read_text(encoding="utf-8"))
        if hook_cgroup is None or not hook_cgroup.name.startswith("codedeploy-hook-"):
            pytest.skip("this host does not let us create a cgroup v2")
        killed.kill()
        killed.wait()
        # What SIGKILL leaves: the hook's tree, in its cgroup.
        assert hook_cgroup.is_dir() and pids_with_marker(marker)

        live = local_agent.start(
            "-l",
            str(_long_hook_revision(tmp_path / "b", live_marker, live_cgroup_file, live_started)),
            "-g",
            "another-group",
        )
        assert wait_until(lambda: live_started.exists() and bool(pids_with_marker(live_marker)))
        assert wait_until(lambda: not pids_with_marker(marker))
        assert not hook_cgroup.exists()

        # A third run while the second one's hook runs leaves that hook alone.
        empty = write_tree(tmp_path / "c", {"appspec.yml": "version: 0.0\nos: linux\n"})
        assert local_agent.run("-l", str(empty), "-g", "third-group").returncode == 0
        assert pids_with_marker(live_marker)
        live.send_signal(signal.SIGTERM)
        assert live.wait(timeout=60) == 143
    finally:
        for process in (killed, live):
            if process is not None:
                process.kill()
                process.wait()
        kill_marked(marker)
        kill_marked(live_marker)
