"""Containment without cgroups: the agent adopts every orphan of a hook and ends it.

Two real fallback paths are run end to end with ``codedeploy-local``: ``hook_use_cgroups:
false``, and a host where no cgroup v2 hierarchy is mounted (the agent runs in a mount
namespace of its own with the cgroup2 mount removed, as on a cgroup-v1-only host). A hook
whose helper forks a process in a new session and exits at once (faster than any poll)
must not outlive its timeout; what an earlier hook started on purpose must outlive it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest

from agent.lifecycle_event.process_tree import find_unified_cgroup_mount, reap_adopted_orphans
from agent.process_control import become_child_subreaper
from tests.support.archives import write_tree
from tests.support.checkout import REPO
from tests.support.local_agent import LocalAgent, LocalRun
from tests.support.processes import alive, kill_marked, pids_with_marker
from tests.support.waiting import wait_until


@pytest.fixture
def marker() -> Iterator[str]:
    name = f"marker-{uuid.uuid4().hex}"
    yield name
    kill_marked(name)


def _unshared_prefix() -> List[str]:
    """Run the agent where no cgroup v2 hierarchy is mounted (a private mount namespace)."""
    mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    found = find_unified_cgroup_mount(mountinfo)
    if found is None:
        return []
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("cannot make a mount namespace here")
    # The umount happens in the namespace only; the host keeps its cgroup mount.
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        'umount -l "$0" && exec "$@"',
        str(found[0]),
    ]


def _run_agent(agent: LocalAgent, how: str, *arguments: str) -> LocalRun:
    prefix = _unshared_prefix() if how == "no cgroup2 mounted" else []
    if how == "hook_use_cgroups false":
        with agent.config.open("a", encoding="utf-8") as config:
            config.write(":hook_use_cgroups: false\n")
    return agent.run(*arguments, prefix=prefix, timeout=180, env={"PYTHONPATH": str(REPO)})


FALLBACKS = [
    "hook_use_cgroups false",
    pytest.param("no cgroup2 mounted", marks=pytest.mark.root),
]


@pytest.mark.parametrize("how", FALLBACKS)
def test_a_quick_fork_and_setsid_does_not_escape_the_timeout(
    local_agent: LocalAgent, tmp_path: Path, marker: str, how: str
) -> None:
    cgroup_file = tmp_path / "hook.cgroup"
    source = write_tree(
        tmp_path / "rev",
        {
            "appspec.yml": "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n"
            "    - location: hooks/start.sh\n      timeout: 2\n",
            # The helper shell forks and exits at once: its child, in a session of its
            # own, is an orphan before any poll could see its parent.
            "hooks/start.sh": f"""#!/bin/sh
cat /proc/self/cgroup > {cgroup_file}
sh -c "setsid sh -c 'sleep 600; :' {marker} &"
exec sleep 600
""",
        },
    )
    result = _run_agent(local_agent, how, "-l", str(source))
    assert result.returncode == 1, result.stderr
    assert "failed to complete in 2 seconds" in result.stderr
    # The fallback path indeed: the script ran in no cgroup of its own.
    assert "codedeploy-hook-" not in cgroup_file.read_text(encoding="utf-8")
    assert wait_until(lambda: not pids_with_marker(marker)), pids_with_marker(marker)


@pytest.mark.parametrize("how", FALLBACKS)
def test_what_an_earlier_hook_started_outlives_a_later_timeout(
    local_agent: LocalAgent, tmp_path: Path, marker: str, how: str
) -> None:
    source = write_tree(
        tmp_path / "rev",
        {
            "appspec.yml": "version: 0.0\nos: linux\nhooks:\n"
            "  ApplicationStart:\n    - location: hooks/start.sh\n"
            "  ValidateService:\n    - location: hooks/validate.sh\n      timeout: 2\n",
            # The application: started through a helper that exits, so the agent adopts it.
            "hooks/start.sh": f"""#!/bin/sh
sh -c "setsid sh -c 'sleep 600; :' {marker}-application > /dev/null 2>&1 &"
""",
            "hooks/validate.sh": f"""#!/bin/sh
sh -c "setsid sh -c 'sleep 600; :' {marker}-validate &"
exec sleep 600
""",
        },
    )
    result = _run_agent(local_agent, how, "-l", str(source))
    assert result.returncode == 1, result.stderr
    assert "failed to complete in 2 seconds" in result.stderr
    assert wait_until(lambda: not pids_with_marker(f"{marker}-validate"))
    assert len(pids_with_marker(f"{marker}-application")) == 1


def test_reaping_adopted_orphans_leaves_the_agents_own_children_alone(marker: str) -> None:
    assert become_child_subreaper()
    own = subprocess.Popen(["sh", "-c", "exit 3"])
    # An orphan in a session of its own, adopted by this process when its parent exits.
    subprocess.run(
        ["sh", "-c", f"setsid sh -c 'exit 0; : {marker}' &"],
        check=True,
    )

    def adopted_zombies() -> List[int]:
        children = Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()
        return [
            int(pid)
            for pid in children
            if int(pid) != own.pid and not alive(int(pid)) and os.getsid(int(pid)) != os.getsid(0)
        ]

    assert wait_until(lambda: bool(adopted_zombies()) and not alive(own.pid))
    assert reap_adopted_orphans() >= 1
    assert adopted_zombies() == []
    # The agent's own child keeps its exit status for whoever waits for it.
    assert own.wait(timeout=10) == 3
