"""Finding the cgroup v2 hierarchy, the holders of a pipe, and a hook cgroup's life cycle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from agent.lifecycle_event.process_tree import (
    ProcessTree,
    create_hook_cgroup,
    find_pipe_holders,
    find_unified_cgroup_mount,
    own_cgroup_v2_path,
)

HYBRID_MOUNTINFO = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
28 26 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory
"""

PURE_MOUNTINFO = """\
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
90 35 0:30 / /tmp/other\\040place rw,relatime - cgroup2 cgroup2 rw
"""


def test_the_unified_hierarchy_is_found_on_hybrid_and_pure_hosts() -> None:
    assert find_unified_cgroup_mount(HYBRID_MOUNTINFO) == (Path("/sys/fs/cgroup/unified"), "/")
    assert find_unified_cgroup_mount(PURE_MOUNTINFO) == (Path("/sys/fs/cgroup"), "/")
    assert find_unified_cgroup_mount(PURE_MOUNTINFO.splitlines()[1]) == (
        Path("/tmp/other place"),
        "/",
    )
    assert find_unified_cgroup_mount(HYBRID_MOUNTINFO.splitlines()[3]) is None


def test_own_cgroup_is_the_unified_line() -> None:
    text = "12:memory:/x\n1:name=systemd:/system.slice/a.service\n0::/system.slice/a.service\n"
    assert own_cgroup_v2_path(text) == "/system.slice/a.service"
    assert own_cgroup_v2_path("4:memory:/x\n") is None


@pytest.fixture
def sleeper_on_pipe() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    read_end, write_end = os.pipe()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; print('ready', flush=True); time.sleep(60)",
            "pipe-holder-marker",
        ],
        stdout=write_end,
        stderr=write_end,
        stdin=subprocess.DEVNULL,
    )
    os.close(write_end)
    # Popen returns once the exec has begun, and the kernel shows the new command line
    # only a moment later: the child's first line says it is running.
    # (An unbuffered stdout, PYTHONUNBUFFERED, writes the line's end on its own.)
    first_line = b""
    while not first_line.endswith(b"\n"):
        chunk = os.read(read_end, 6 - len(first_line))
        assert chunk, "the pipe holder exited before it said it was ready"
        first_line += chunk
    assert first_line == b"ready\n"
    try:
        yield child, read_end
    finally:
        child.kill()
        child.wait()
        os.close(read_end)


def test_pipe_holders_are_named_with_their_command_line(
    sleeper_on_pipe: tuple[subprocess.Popen[bytes], int],
) -> None:
    child, read_end = sleeper_on_pipe
    inode = os.fstat(read_end).st_ino
    holders = find_pipe_holders({inode: "stdout"}, os.getpid())
    assert [holder.pid for holder in holders] == [child.pid]
    assert "pipe-holder-marker" in holders[0].command
    assert holders[0].streams == ("stdout",)
    assert f"pid {child.pid} (" in holders[0].describe()
    # We hold the read end ourselves, and are left out as asked.
    assert os.getpid() in [h.pid for h in find_pipe_holders({inode: "stdout"}, -1)]


def test_a_hook_cgroup_releases_its_members_to_the_parent_and_goes_away() -> None:
    probe = create_hook_cgroup()
    if probe is None:
        pytest.skip("this host does not let us create a cgroup v2")
    probe.remove()

    tree = ProcessTree.create_on_host(use_cgroups=True)
    assert tree.uses_cgroup
    child = tree.spawn_inside(lambda: subprocess.Popen(["sleep", "60"], start_new_session=True))
    try:
        tree.attach(child.pid)
        cgroup_line = Path(f"/proc/{child.pid}/cgroup").read_text(encoding="utf-8")
        hook_path = own_cgroup_v2_path(cgroup_line)
        assert hook_path is not None and "codedeploy-hook-" in hook_path
        tree.release_survivors()
        tree.close()
        moved = own_cgroup_v2_path(Path(f"/proc/{child.pid}/cgroup").read_text(encoding="utf-8"))
        assert moved is not None and "codedeploy-hook-" not in moved
        assert child.poll() is None
        mount = find_unified_cgroup_mount(Path("/proc/self/mountinfo").read_text(encoding="utf-8"))
        assert mount is not None
        assert not (mount[0] / hook_path.lstrip("/")).exists()
    finally:
        child.kill()
        child.wait()
        tree.close()


WARM_UP_PROBE = """
import sys
from pathlib import Path
from agent.lifecycle_event.process_tree import start_cgroup_migration_warm_up
before = Path("/proc/self/cgroup").read_text(encoding="utf-8")
start_cgroup_migration_warm_up().wait(timeout=60)
after = Path("/proc/self/cgroup").read_text(encoding="utf-8")
sys.stdout.write("same" if after == before else "moved:" + after)
"""


def test_the_cgroup_warm_up_leaves_the_process_where_it_is() -> None:
    # The warm-up moves the agent into the cgroup it is in; run inside a cgroup of its
    # own (as a daemon under systemd is), it must stay there, not land in a parent.
    tree = ProcessTree.create_on_host(use_cgroups=True)
    if not tree.uses_cgroup:
        tree.close()
        pytest.skip("this host does not let us create a cgroup v2")
    try:
        probe = tree.spawn_inside(
            lambda: subprocess.Popen(
                [sys.executable, "-c", WARM_UP_PROBE],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        stdout, stderr = probe.communicate(timeout=60)
    finally:
        tree.close()
    assert probe.returncode == 0, stderr
    assert stdout == "same"


SELF_IN_HOOK_CGROUP_PROBE = """
import os, subprocess, sys
from pathlib import Path
from agent.lifecycle_event.process_tree import create_hook_cgroup, own_cgroup_v2_path
cgroup = create_hook_cgroup()
assert cgroup is not None
assert cgroup.add_this_process() is None
child = subprocess.Popen(["sleep", "60"])
cgroup.kill_members()
child.wait(timeout=30)
assert cgroup.return_this_process_to_parent()
cgroup.remove()
own = own_cgroup_v2_path(Path("/proc/self/cgroup").read_text(encoding="utf-8"))
sys.stdout.write(f"{child.returncode} {'codedeploy-hook-' in own} {cgroup.path.exists()}")
"""


def test_killing_a_hook_cgroup_spares_the_agent_inside_it(tmp_path: Path) -> None:
    # The agent steps into a script's cgroup to start it; were it still inside when the
    # run ends, the members are killed one by one, never the agent.
    probe_cgroup = create_hook_cgroup()
    if probe_cgroup is None:
        pytest.skip("this host does not let us create a cgroup v2")
    probe_cgroup.remove()
    probe = subprocess.run(
        [sys.executable, "-c", SELF_IN_HOOK_CGROUP_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout == f"{-signal.SIGKILL} False False"
