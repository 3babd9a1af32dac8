"""The one tree copy, through both of its callers: a folder revision copied into
``deployment-archive/`` and an install into its destination.

Each guarantee of :mod:`agent.filesystem.tree_copy` is checked on real files through both
paths: modes (set-id bits included, after the owner is given), times to the nanosecond,
owners as root, holes of sparse files, symlinks recreated and never followed, and a FIFO
that never hangs the copy.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from typing import Callable, Dict

import pytest

from agent.application_specification.model import (
    ApplicationSpecification,
    FileExistsBehavior,
    FileMapping,
)
from agent.deployment_root.layout import DeploymentRoot
from agent.errors import AgentError
from agent.installer import install_revision_on_disk
from agent.revision.bundle import UnpackPolicy
from agent.revision.fetchers.local import copy_directory_revision_to_disk
from tests.support.archives import write_tree

# Copies the folder given first; returns where the copy is.
Copy = Callable[[Path], Path]

HOLE = 8 << 20
DATA_AT = 5 << 20


def _copy_revision(tmp_path: Path) -> Copy:
    def copy(source: Path) -> Path:
        archive = tmp_path / "deployment" / "deployment-archive"
        archive.parent.mkdir(exist_ok=True)
        # Owners of the source are kept only when asked, as the installer keeps them as root.
        copy_directory_revision_to_disk(source, archive, policy=UnpackPolicy(apply_ownership=True))
        return archive

    return copy


def _install(tmp_path: Path) -> Copy:
    def copy(source: Path) -> Path:
        destination = tmp_path / "installed"
        spec = ApplicationSpecification(files=(FileMapping("/", str(destination)),))
        root = DeploymentRoot(tmp_path / "root")
        install_revision_on_disk(spec, source, root, "group", FileExistsBehavior.DISALLOW)
        return destination

    return copy


_CALLERS: Dict[str, Callable[[Path], Copy]] = {
    "revision-folder": _copy_revision,
    "install": _install,
}


@pytest.fixture(params=sorted(_CALLERS))
def copy(request: pytest.FixtureRequest, tmp_path: Path) -> Copy:
    make: Callable[[Path], Copy] = _CALLERS[request.param]
    return make(tmp_path)


def test_modes_and_times_are_the_sources(copy: Copy, tmp_path: Path) -> None:
    source = write_tree(tmp_path / "rev", {"run.sh": "#!/bin/sh\n", "secret": "s", "d/inner": "i"})
    modes = {"run.sh": 0o751, "secret": 0o400, "d/inner": 0o1644}
    for name, mode in modes.items():
        (source / name).chmod(mode)
    os.utime(source / "secret", ns=(1_000_000_000, 1_500_000_000_123))
    (source / "link").symlink_to("secret")
    os.utime(source / "link", ns=(1_000_000_000, 1_400_000_000_456), follow_symlinks=False)

    copied = copy(source)

    for name, mode in modes.items():
        assert stat.S_IMODE((copied / name).stat().st_mode) == mode, name
    assert (copied / "secret").stat().st_mtime_ns == 1_500_000_000_123
    assert (copied / "link").lstat().st_mtime_ns == 1_400_000_000_456


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another owner needs root")
def test_owners_are_kept_and_set_id_bits_survive_the_change_of_owner(
    copy: Copy, tmp_path: Path
) -> None:
    nobody = pwd.getpwnam("nobody")
    source = write_tree(tmp_path / "rev", {"theirs": "t", "ours": "o"})
    os.chown(source / "theirs", nobody.pw_uid, nobody.pw_gid)
    # chown clears set-id bits: the mode must be applied after the owner.
    (source / "theirs").chmod(0o6755)
    (source / "link").symlink_to("theirs")
    os.chown(source / "link", nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)

    copied = copy(source)

    theirs = (copied / "theirs").stat()
    assert (theirs.st_uid, theirs.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(theirs.st_mode) == 0o6755
    assert (copied / "ours").stat().st_uid == 0
    link = (copied / "link").lstat()
    assert (link.st_uid, link.st_gid) == (nobody.pw_uid, nobody.pw_gid)


def test_a_sparse_file_keeps_its_holes(copy: Copy, tmp_path: Path) -> None:
    source = write_tree(tmp_path / "rev", {"small": "s"})
    with (source / "sparse.bin").open("wb") as handle:
        handle.truncate(HOLE)
        handle.seek(DATA_AT)
        handle.write(b"the only data")

    copied = copy(source) / "sparse.bin"

    assert copied.stat().st_size == HOLE
    assert copied.stat().st_blocks * 512 < 1 << 20
    with copied.open("rb") as handle:
        handle.seek(DATA_AT - 2)
        assert handle.read(17) == b"\0\0the only data\0\0"


def test_symlinks_are_recreated_and_never_followed(copy: Copy, tmp_path: Path) -> None:
    victim = write_tree(tmp_path / "victim", {"private": "p"})
    source = write_tree(tmp_path / "rev", {"sub/file": "f"})
    (source / "out").symlink_to(victim)
    (source / "sub" / "up").symlink_to("../out/private")
    (source / "dangling").symlink_to("nowhere/at/all")

    copied = copy(source)

    assert os.readlink(copied / "out") == str(victim)
    assert os.readlink(copied / "sub" / "up") == "../out/private"
    assert os.readlink(copied / "dangling") == "nowhere/at/all"
    assert sorted(os.listdir(victim)) == ["private"]
    assert sorted(os.listdir(copied)) == ["dangling", "out", "sub"]


def test_a_fifo_is_refused_without_hanging_the_copy(copy: Copy, tmp_path: Path) -> None:
    source = write_tree(tmp_path / "rev", {"a": "a"})
    os.mkfifo(source / "pipe")
    with pytest.raises(AgentError, match="pipe"):
        copy(source)
