"""Old deployment folders moved to the root's trash and removed there by a child process:
out of the deployment's way, unless the filesystem needs their space at once."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from agent.deployment_root.layout import DeploymentRoot
from agent.deployment_root.retention import prune_old_deployments_on_disk
from agent.deployment_root.trash import TRASH_DIR, DeploymentTrash, held_bytes_on_disk
from tests.support.checkout import REPO
from tests.support.local_agent import LocalAgent
from tests.support.tmpfs import mounted_tmpfs


def _old_deployment(root: DeploymentRoot, name: str, age: int, payload: bytes) -> Path:
    folder = root.deployment_dir("g", name).path
    archive = folder / "deployment-archive" / "app"
    archive.mkdir(parents=True)
    for index in range(20):
        (archive / f"file-{index}").write_bytes(payload)
    os.utime(folder, (1_000_000 + age, 1_000_000 + age))
    return folder


def test_a_pruned_folder_goes_to_the_trash_and_the_child_removes_it(tmp_path: Path) -> None:
    root = DeploymentRoot(tmp_path)
    oldest = _old_deployment(root, "d-000000001", 1, b"x" * 4096)
    kept = _old_deployment(root, "d-000000002", 2, b"y")
    current = root.deployment_dir("g", "d-current")
    current.path.mkdir()
    trash = DeploymentTrash(tmp_path)
    assert prune_old_deployments_on_disk(root, "g", current, max_revisions=2, trash=trash) == 1
    assert not oldest.exists() and kept.exists()
    trash.wait()
    assert list((tmp_path / TRASH_DIR).iterdir()) == []
    assert sorted(p.name for p in root.group_dir("g").iterdir()) == [kept.name, "d-current"]


def test_what_an_earlier_run_left_in_the_trash_is_removed_at_the_next_start(
    tmp_path: Path,
) -> None:
    left = tmp_path / TRASH_DIR / "d-000000007.0badcafe" / "deployment-archive"
    left.mkdir(parents=True)
    (left / "big").write_bytes(b"z" * 100_000)
    (left / "link").symlink_to("/etc/hostname")
    trash = DeploymentTrash(tmp_path)
    trash.start_emptying()
    trash.wait()
    assert list((tmp_path / TRASH_DIR).iterdir()) == []
    assert Path("/etc/hostname").exists()


def test_a_folder_is_removed_at_once_when_its_space_is_needed(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", "8m") as disk:
        root = DeploymentRoot(disk / "root")
        oldest = _old_deployment(root, "d-000000001", 1, b"x" * 100_000)  # 2 MB
        current = root.deployment_dir("g", "d-current")
        current.path.mkdir()
        # 8 MiB, 5% kept free: after this file less is usable than the old folder holds.
        (disk / "filler").write_bytes(b"f" * (5 * 1024 * 1024))
        assert held_bytes_on_disk(oldest) >= 2_000_000
        trash = DeploymentTrash(root.path)
        assert prune_old_deployments_on_disk(root, "g", current, 1, trash=trash) == 1
        assert not oldest.exists()
        assert not (root.path / TRASH_DIR).exists()


def test_the_child_says_in_one_line_what_it_could_not_remove(tmp_path: Path) -> None:
    trash = tmp_path / TRASH_DIR
    stuck = trash / "d-000000003.00000000" / "mounted"
    stuck.mkdir(parents=True)
    (trash / "d-000000004.00000000" / "a").mkdir(parents=True)
    with mounted_tmpfs(stuck / "here", "1m") as mount_point:
        (mount_point / "inside").write_bytes(b"i")
        child = subprocess.run(
            [sys.executable, "-m", "agent.deployment_root.trash", str(trash)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=False,
        )
        assert child.returncode == 1
        assert child.stderr.count("\n") == 1, child.stderr
        assert f"{mount_point}: Device or resource busy" in child.stderr
        # Everything else went; the mount point's folder stays, its content is gone.
        assert sorted(p.name for p in trash.iterdir()) == ["d-000000003.00000000"]
        assert list(mount_point.iterdir()) == []


def test_codedeploy_local_prunes_through_the_trash_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    revision = tmp_path / "revision"
    revision.mkdir()
    (revision / "appspec.yml").write_text("version: 0.0\nos: linux\n", encoding="utf-8")
    sample_bundle = tmp_path / "revision.tgz"
    with tarfile.open(sample_bundle, "w:gz") as bundle:
        bundle.add(revision / "appspec.yml", arcname="appspec.yml")
    agent = LocalAgent.configured(tmp_path / "agent")
    with agent.config.open("a", encoding="utf-8") as config:
        config.write(":max_revisions: 1\n")
    # The last successful deployment is never pruned: the third run prunes the first.
    runs = [agent.run("-l", str(sample_bundle), "-t", "tgz") for _ in range(3)]
    assert [run.returncode for run in runs] == [0, 0, 0], runs[-1].stderr
    assert "old deployment folder moved to the trash" in runs[2].stderr
    assert [run.deployment_dir.exists() for run in runs] == [False, True, True]
    assert list((agent.root / TRASH_DIR).iterdir()) == []
