"""The group's cleanup file lists only what the install made, as the AWS agent's does.

A folder of the previous install that still holds something the agent did not install
survives the cleanup replay (its removal fails), so the next install does not make it and
its cleanup file must not list it; otherwise a later deployment would try to remove a
folder that is, by then, the user's.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from tests.support.archives import write_tree
from tests.support.local_agent import LocalAgent

GROUP = "default-local-deployment-group"


def _revision(where: Path, dest: Path) -> Path:
    appspec = f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {dest}\n"
    tree = write_tree(
        where, {"appspec.yml": appspec, "app/sub/file": "file\n", "app/top.txt": "top\n"}
    )
    (tree / "app" / "logs").mkdir()  # empty in the revision: the application writes there
    (tree / "app" / "old").mkdir()
    return tree


def _cleanup_lines(agent: LocalAgent) -> List[str]:
    cleanup = agent.root / "deployment-instructions" / f"{GROUP}-cleanup"
    # Sorted: two processes share the copy of a large tree, so their lines interleave.
    return sorted(cleanup.read_text(encoding="utf-8").splitlines())


def test_folders_holding_foreign_files_are_not_listed_after_a_redeployment(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    revision = _revision(tmp_path / "rev", dest)
    assert local_agent.run("-l", str(revision)).returncode == 0
    assert _cleanup_lines(local_agent) == [
        str(dest),
        f"{dest}/logs",
        f"{dest}/old",
        f"{dest}/sub",
        f"{dest}/sub/file",
        f"{dest}/top.txt",
    ]
    (dest / "logs" / "app.log").write_text("written by the application\n", encoding="utf-8")
    (dest / "sub" / "notes").write_text("put here by hand\n", encoding="utf-8")

    second = local_agent.run("-l", str(revision))

    assert second.returncode == 0, second.stderr
    # dest, logs and sub survived the replay with foreign files in them: not made by this
    # install, so not listed; old and what was copied are.
    assert _cleanup_lines(local_agent) == [f"{dest}/old", f"{dest}/sub/file", f"{dest}/top.txt"]
    assert (dest / "logs" / "app.log").is_file()
    assert (dest / "sub" / "notes").is_file()


def test_a_destination_that_existed_with_a_foreign_file_is_never_listed(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "foreign.txt").write_text("not ours\n", encoding="utf-8")
    revision = _revision(tmp_path / "rev", dest)
    expected = [f"{dest}/logs", f"{dest}/old", f"{dest}/sub", f"{dest}/sub/file", f"{dest}/top.txt"]
    for _ in range(2):
        run = local_agent.run("-l", str(revision))
        assert run.returncode == 0, run.stderr
        assert _cleanup_lines(local_agent) == expected
    assert (dest / "foreign.txt").is_file()


def test_a_folder_gone_from_the_revision_with_foreign_files_keeps_its_parent_unlisted(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    revision = _revision(tmp_path / "rev", dest)
    assert local_agent.run("-l", str(revision)).returncode == 0
    (dest / "old" / "data").write_text("kept by the user\n", encoding="utf-8")
    (revision / "app" / "old").rmdir()

    second = local_agent.run("-l", str(revision))

    assert second.returncode == 0, second.stderr
    assert _cleanup_lines(local_agent) == [
        f"{dest}/logs",
        f"{dest}/sub",
        f"{dest}/sub/file",
        f"{dest}/top.txt",
    ]
    assert (dest / "old" / "data").is_file()
