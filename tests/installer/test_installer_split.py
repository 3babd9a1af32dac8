"""Large trees are planned and copied by two processes: the result is the same as one.

A tree whose top level holds two or more folders is split: every other top-level child
goes to a forked worker, in the plan and in the copy. These tests check what must not
change: the installed tree, the cleanup file and install.json cover every path once,
a conflict in the worker's half refuses the whole install, and a redeployment keeps every
unchanged path whichever process looked at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from agent.application_specification.model import FileExistsBehavior
from agent.installer import InstallError
from tests.support.install_workspace import Entry, Workspace, tree


def _revision(tag: str) -> Dict[str, Entry]:
    entries: Dict[str, Entry] = {}
    for folder in ("a", "b", "c", "d"):
        for index in range(5):
            entries[f"{folder}/sub/file{index}.txt"] = f"{tag} {folder} {index}"
    entries["top.txt"] = tag
    entries["b/link"] = ("link", "sub/file0.txt")
    return entries


def test_split_install_covers_every_path_once(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    workspace.write_revision(_revision("v1"))
    result = workspace.install_all()
    assert result.files_copied == 21
    assert result.symlinks_created == 1
    assert tree(workspace.dest) == tree(workspace.archive)
    cleanup = workspace.cleanup_lines()
    assert len(cleanup) == len(set(cleanup))
    assert set(cleanup) == {str(workspace.dest)} | {
        str(workspace.dest / relative) for relative in tree(workspace.archive)
    }
    copied = [i["destination"] for i in workspace.instructions() if i["type"] == "copy"]
    assert len(copied) == len(set(copied)) == 22


def test_redeployment_keeps_paths_seen_by_either_process(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    workspace.write_revision(_revision("v1"))
    workspace.install_all()
    workspace.write_revision(_revision("v1"))
    again = workspace.install_all()
    assert again.files_copied == 0
    assert again.files_unchanged == 22
    workspace.write_revision(_revision("v2"))
    changed = workspace.install_all()
    assert changed.files_copied == 21
    assert tree(workspace.dest) == tree(workspace.archive)


@pytest.mark.parametrize("folder", ["a", "b", "c", "d"])
def test_a_conflict_in_either_half_refuses_everything(tmp_path: Path, folder: str) -> None:
    workspace = Workspace(tmp_path)
    workspace.write_revision(_revision("v1"))
    foreign = workspace.dest / folder / "sub" / "file3.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("not ours", encoding="utf-8")
    with pytest.raises(InstallError, match=str(foreign)):
        workspace.install_all(behavior=FileExistsBehavior.DISALLOW)
    # Nothing was copied by either process.
    assert tree(workspace.dest) == {
        folder: "dir",
        f"{folder}/sub": "dir",
        f"{folder}/sub/file3.txt": "not ours",
    }
