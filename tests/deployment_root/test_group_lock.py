"""The daemon's hold on a group's lock across the commands of a deployment (real files).

Another open file description of the same lock file stands for another process: flock
locks of two descriptions conflict even within one process.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.deployment_root.group_lock import (
    DaemonGroupLocks,
    GroupBusyError,
    group_lock_file,
    lock_group_for_deployment_on_disk,
    lock_group_on_disk,
    read_lock_holder_from_disk,
)
from agent.deployment_root.layout import DeploymentRoot

EVENTS = ("ApplicationStop", "DownloadBundle", "Install", "ApplicationStart", "AllowTraffic")


def _free(root: DeploymentRoot, group: str = "g1") -> bool:
    try:
        lock = lock_group_on_disk(root, group, wait_seconds=0, on_wait=lambda _: None)
    except GroupBusyError:
        return False
    lock.release()
    return True


@pytest.fixture
def root(tmp_path: Path) -> DeploymentRoot:
    return DeploymentRoot(tmp_path / "root")


def test_held_from_the_first_command_to_the_last_host_event(root: DeploymentRoot) -> None:
    locks = DaemonGroupLocks(root, wait_seconds=0)
    for command in EVENTS[:-2]:
        locks.hold_for_command("g1", "d-AAAAAAAAA")
        assert not _free(root)
        locks.command_finished("g1", command, failed=False, lifecycle_events=EVENTS)
        assert not _free(root)
    assert read_lock_holder_from_disk(group_lock_file(root, "g1")).deployment_id == "d-AAAAAAAAA"
    locks.hold_for_command("g1", "d-AAAAAAAAA")
    # AllowTraffic is the service's own: ApplicationStart is the last command to come.
    locks.command_finished("g1", "ApplicationStart", failed=False, lifecycle_events=EVENTS)
    assert _free(root)


def test_a_failed_command_lets_go(root: DeploymentRoot) -> None:
    locks = DaemonGroupLocks(root, wait_seconds=0)
    locks.hold_for_command("g1", "d-AAAAAAAAA")
    locks.command_finished("g1", "Install", failed=True, lifecycle_events=EVENTS)
    assert _free(root)


def test_the_next_deployment_of_the_group_takes_the_lock_over(root: DeploymentRoot) -> None:
    locks = DaemonGroupLocks(root, wait_seconds=0)
    locks.hold_for_command("g1", "d-AAAAAAAAA")
    locks.command_finished("g1", "Install", failed=False, lifecycle_events=None)
    locks.hold_for_command("g1", "d-BBBBBBBBB")
    assert not _free(root)
    holder = read_lock_holder_from_disk(group_lock_file(root, "g1"))
    assert holder.deployment_id == "d-BBBBBBBBB" and holder.program == "codedeploy-agent"


def test_an_idle_deployment_lets_go_at_the_next_poll(root: DeploymentRoot) -> None:
    locks = DaemonGroupLocks(root, wait_seconds=0, idle_release_seconds=0)
    locks.hold_for_command("g1", "d-AAAAAAAAA")
    locks.command_finished("g1", "Install", failed=False, lifecycle_events=None)
    assert not _free(root)
    locks.release_idle_locks()
    assert _free(root)


def test_a_command_waits_for_codedeploy_local_until_cancelled(root: DeploymentRoot) -> None:
    local = lock_group_for_deployment_on_disk(
        root, "g1", "d-LLLLLLLLL-local", "codedeploy-local", wait_seconds=0, on_wait=print
    )
    stop = threading.Event()
    locks = DaemonGroupLocks(root, wait_seconds=600)
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(GroupBusyError) as raised:
        locks.hold_for_command("g1", "d-AAAAAAAAA", cancelled=stop.is_set)
    assert "d-LLLLLLLLL-local (codedeploy-local, pid" in raised.value.message
    local.release()
    locks.hold_for_command("g1", "d-AAAAAAAAA", cancelled=stop.is_set)
    assert not _free(root)


def test_a_bounded_wait_ends_with_one_line_naming_the_holder(root: DeploymentRoot) -> None:
    local = lock_group_for_deployment_on_disk(
        root, "g1", "d-LLLLLLLLL-local", "codedeploy-local", wait_seconds=0, on_wait=print
    )
    with pytest.raises(
        GroupBusyError, match=r"still being deployed by deployment d-LLLLLLLLL-local"
    ):
        DaemonGroupLocks(root, wait_seconds=0.3).hold_for_command("g1", "d-AAAAAAAAA")
    local.release()
