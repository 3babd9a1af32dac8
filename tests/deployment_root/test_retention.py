"""Retention of deployment folders and the markers of the deployment root."""

from __future__ import annotations

import os
from pathlib import Path

from agent.deployment_root.layout import DeploymentDir, DeploymentRoot
from agent.deployment_root.retention import prune_old_deployments_on_disk


def _deployments(root: DeploymentRoot, group: str, count: int) -> list[Path]:
    folders = []
    for number in range(count):
        folder = root.deployment_dir(group, f"d-{number:09d}").path
        (folder / "deployment-archive").mkdir(parents=True)
        os.utime(folder, (1_000_000 + number, 1_000_000 + number))  # oldest first
        folders.append(folder)
    return folders


def test_keeps_max_revisions_counting_the_current_one(tmp_path: Path) -> None:
    root = DeploymentRoot(tmp_path)
    old = _deployments(root, "g", 6)
    current = root.deployment_dir("g", "d-current")
    current.path.mkdir()
    removed = prune_old_deployments_on_disk(root, "g", current, max_revisions=3)
    assert removed == 4
    assert sorted(p.name for p in root.group_dir("g").iterdir()) == [
        old[4].name,
        old[5].name,
        "d-current",
    ]


def test_never_removes_the_last_successful_deployment(tmp_path: Path) -> None:
    root = DeploymentRoot(tmp_path)
    old = _deployments(root, "g", 4)
    root.write_last_successful_marker("g", DeploymentDir(old[0]))  # the oldest one
    current = root.deployment_dir("g", "d-current")
    current.path.mkdir()
    prune_old_deployments_on_disk(root, "g", current, max_revisions=2)
    remaining = sorted(p.name for p in root.group_dir("g").iterdir())
    assert remaining == [old[0].name, "d-current"]


def test_other_groups_and_a_missing_group_are_left_alone(tmp_path: Path) -> None:
    root = DeploymentRoot(tmp_path)
    other = _deployments(root, "other", 3)
    assert (
        prune_old_deployments_on_disk(root, "missing", root.deployment_dir("missing", "d-x"), 1)
        == 0
    )
    assert all(p.exists() for p in other)


def test_markers_hold_the_path_without_newline_and_survive_a_missing_file(tmp_path: Path) -> None:
    root = DeploymentRoot(tmp_path)
    assert root.read_last_successful_deployment_dir("g") is None
    folder = root.deployment_dir("g", "d-1")
    root.write_most_recent_marker("g", folder)
    root.write_last_successful_marker("g", folder)
    assert root.most_recent_marker("g").read_bytes() == os.fsencode(folder.path)
    assert root.read_most_recent_deployment_dir("g") == folder
    assert root.read_last_successful_deployment_dir("g") == folder
    assert sorted(p.name for p in root.instructions_dir.iterdir()) == [
        "g_last_successful_install",
        "g_most_recent_install",
    ]
