"""Local revisions: a folder copied into deployment-archive/, a file put at bundle.tar."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from agent.revision.errors import BundleError
from agent.revision.fetchers.local import (
    copy_directory_revision_to_disk,
    fetch_local_bundle_to_disk,
)
from agent.revision.unpack import UnpackPolicy
from tests.support.archives import MTIME, tree_snapshot

APPSPEC = "version: 0.0\nos: linux\n"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def revision(tmp_path: Path) -> Path:
    """A revision folder with a script, a private file, folders and symlinks."""
    root = tmp_path / "revision"
    (root / "scripts").mkdir(parents=True)
    (root / "config" / "deep" / "er").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "appspec.yml").write_text(APPSPEC, encoding="utf-8")
    start = root / "scripts" / "start.sh"
    start.write_text("#!/bin/sh\necho started\n", encoding="utf-8")
    start.chmod(0o755)
    conf = root / "config" / "app.conf"
    conf.write_text("secret=1\n", encoding="utf-8")
    conf.chmod(0o640)
    (root / "config" / "deep" / "er" / "leaf.txt").write_bytes(os.urandom(70_000))
    (root / "current").symlink_to("config/app.conf")
    (root / "elsewhere").symlink_to(tmp_path)  # points out: kept as a link, never followed
    os.utime(conf, (MTIME, MTIME))
    (root / "empty").chmod(0o700)
    os.utime(root / "config", (MTIME - 50, MTIME - 50))
    return root


def copy(source: Path, deployment: Path, **options: object) -> Path:
    archive = deployment / "deployment-archive"
    copy_directory_revision_to_disk(source, archive, **options)  # type: ignore[arg-type]
    return archive


def refused(source: Path, deployment: Path, **options: object) -> BundleError:
    before = tree_snapshot(deployment)
    with pytest.raises(BundleError) as caught:
        copy(source, deployment, **options)
    assert tree_snapshot(deployment) == before
    assert "\n" not in str(caught.value)
    return caught.value


def test_a_folder_is_copied_with_modes_mtimes_and_symlinks(
    revision: Path, deployment: Path
) -> None:
    archive = copy(revision, deployment)
    assert tree_snapshot(archive) == tree_snapshot(revision)
    for relative in ("appspec.yml", "scripts/start.sh", "config/deep/er/leaf.txt"):
        assert (archive / relative).read_bytes() == (revision / relative).read_bytes()
    assert stat.S_IMODE((archive / "scripts" / "start.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((archive / "config" / "app.conf").stat().st_mode) == 0o640
    assert stat.S_IMODE((archive / "empty").stat().st_mode) == 0o700
    assert (archive / "config" / "app.conf").stat().st_mtime == MTIME
    assert (archive / "config").stat().st_mtime == MTIME - 50
    assert os.readlink(archive / "current") == "config/app.conf"
    assert (archive / "elsewhere").is_symlink()
    assert os.readlink(archive / "elsewhere") == os.readlink(revision / "elsewhere")
    assert os.listdir(deployment) == ["deployment-archive"]


def test_the_revision_root_is_open_to_hooks_whatever_the_source_mode(
    revision: Path, deployment: Path
) -> None:
    revision.chmod(0o700)
    os.utime(revision, (MTIME, MTIME))
    archive = copy(revision, deployment)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o755
    assert archive.stat().st_mtime == MTIME


def test_a_stale_archive_folder_is_replaced(revision: Path, deployment: Path) -> None:
    stale = deployment / "deployment-archive" / "old"
    stale.mkdir(parents=True)
    archive = copy(revision, deployment)
    assert not (archive / "old").exists()


def test_a_fifo_is_refused(revision: Path, deployment: Path) -> None:
    os.mkfifo(revision / "config" / "pipe")
    error = refused(revision, deployment)
    assert "'config/pipe'" in str(error) and "FIFO" in str(error)


def test_a_socket_is_refused(revision: Path, deployment: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(revision / "app.sock"))
        assert "socket" in str(refused(revision, deployment))
    finally:
        listener.close()


def test_reject_symlinks_policy(revision: Path, deployment: Path) -> None:
    error = refused(revision, deployment, policy=UnpackPolicy(reject_symlinks=True))
    assert "reject_symlinks_in_bundle" in str(error)


@pytest.mark.parametrize(("relative", "mode"), [("scripts/start.sh", 0o4755), ("empty", 0o777)])
def test_reject_unsafe_permissions_policy(
    relative: str, mode: int, revision: Path, deployment: Path
) -> None:
    (revision / relative).chmod(mode)
    policy = UnpackPolicy(reject_unsafe_permissions=True)
    error = refused(revision, deployment, policy=policy)
    assert repr(relative) in str(error)
    archive = copy(revision, deployment)
    assert stat.S_IMODE((archive / relative).stat().st_mode) == mode


def test_max_extraction_size_policy(revision: Path, deployment: Path) -> None:
    error = refused(revision, deployment, policy=UnpackPolicy(max_extraction_size=50_000))
    assert "archive_max_extraction_size" in str(error)
    copy(revision, deployment, policy=UnpackPolicy(max_extraction_size=1_000_000))


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_owners_are_applied_only_when_asked(revision: Path, deployment: Path) -> None:
    os.chown(revision / "config" / "app.conf", 4242, 4343)
    default = copy(revision, deployment) / "config" / "app.conf"
    assert default.stat().st_uid == os.geteuid()
    applied = copy(revision, deployment, policy=UnpackPolicy(apply_ownership=True))
    owned = (applied / "config" / "app.conf").stat()
    assert (owned.st_uid, owned.st_gid) == (4242, 4343)


def test_a_missing_folder_is_refused(tmp_path: Path, deployment: Path) -> None:
    missing = tmp_path / "nowhere"
    assert str(missing) in str(refused(missing, deployment))


def test_a_file_is_not_a_folder_revision(tmp_path: Path, deployment: Path) -> None:
    bundle = tmp_path / "bundle.tgz"
    bundle.write_bytes(b"x")
    assert "not a folder" in str(refused(bundle, deployment))


def test_copying_a_folder_into_itself_is_refused(revision: Path) -> None:
    inside = revision / "config"
    before = tree_snapshot(revision)
    with pytest.raises(BundleError, match="overlap"):
        copy_directory_revision_to_disk(revision, inside / "deployment-archive")
    assert tree_snapshot(revision) == before


def test_a_folder_larger_than_the_free_space_is_refused_before_copying(
    tmp_path: Path, small_disk: Path
) -> None:
    source = tmp_path / "big"
    source.mkdir()
    for index in range(4):
        (source / f"{index}.bin").write_bytes(os.urandom(400_000))
    deployment = small_disk / "d-FULL"
    deployment.mkdir()
    error = refused(source, deployment)
    message = str(error)
    assert message.startswith(f"revision folder {source}, copied into")
    assert "needs 1.5 MiB" in message and f"mounted on {small_disk}" in message
    assert os.listdir(small_disk) == ["d-FULL"]


# --- local bundle files ---------------------------------------------------------------------


def test_a_local_bundle_is_hard_linked_on_the_same_file_system(
    tmp_path: Path, deployment: Path
) -> None:
    location = tmp_path / "app.tgz"
    location.write_bytes(b"bundle bytes")
    bundle = deployment / "bundle.tar"
    fetch_local_bundle_to_disk(location, bundle)
    assert bundle.read_bytes() == b"bundle bytes"
    assert os.path.samefile(location, bundle)
    assert os.listdir(deployment) == ["bundle.tar"]


def test_a_local_bundle_is_copied_across_file_systems(tmp_path: Path, small_disk: Path) -> None:
    location = tmp_path / "app.zip"
    payload = os.urandom(200_000)
    location.write_bytes(payload)
    bundle = small_disk / "bundle.tar"
    fetch_local_bundle_to_disk(location, bundle)
    assert bundle.read_bytes() == payload
    assert not os.path.samefile(location, bundle)
    assert os.listdir(small_disk) == ["bundle.tar"]


def test_a_local_bundle_through_a_symlink_is_fetched(tmp_path: Path, deployment: Path) -> None:
    location = tmp_path / "app.tar"
    location.write_bytes(b"tar bytes")
    alias = tmp_path / "latest.tar"
    alias.symlink_to(location)
    bundle = deployment / "bundle.tar"
    fetch_local_bundle_to_disk(alias, bundle)
    assert not bundle.is_symlink()
    assert bundle.read_bytes() == b"tar bytes"


def test_a_previous_bundle_is_replaced(tmp_path: Path, deployment: Path) -> None:
    (deployment / "bundle.tar").write_bytes(b"old")
    location = tmp_path / "new.tar"
    location.write_bytes(b"new")
    fetch_local_bundle_to_disk(location, deployment / "bundle.tar")
    assert (deployment / "bundle.tar").read_bytes() == b"new"
    assert os.listdir(deployment) == ["bundle.tar"]


def test_fetching_a_bundle_onto_itself_changes_nothing(deployment: Path) -> None:
    bundle = deployment / "bundle.tar"
    bundle.write_bytes(b"same")
    fetch_local_bundle_to_disk(bundle, bundle)
    assert bundle.read_bytes() == b"same"
    assert os.listdir(deployment) == ["bundle.tar"]


@pytest.mark.parametrize("make", ["missing", "folder", "fifo"])
def test_an_unusable_location_is_refused(make: str, tmp_path: Path, deployment: Path) -> None:
    location = tmp_path / "location"
    if make == "folder":
        location.mkdir()
    elif make == "fifo":
        os.mkfifo(location)
    with pytest.raises(BundleError) as caught:
        fetch_local_bundle_to_disk(location, deployment / "bundle.tar")
    assert str(location) in str(caught.value)
    assert os.listdir(deployment) == []


def test_an_unreadable_location_is_refused(tmp_path: Path, deployment: Path) -> None:
    location = tmp_path / "secret.tar"
    location.write_bytes(b"x")
    location.chmod(0)
    bundle = deployment / "bundle.tar"
    if os.geteuid() != 0:
        with pytest.raises(BundleError) as caught:
            fetch_local_bundle_to_disk(location, bundle)
        message = str(caught.value)
    else:
        # root reads any file: the fetch runs in a child that has become nobody.
        message = _as_nobody(lambda: fetch_local_bundle_to_disk(location, bundle))
    assert message == f"cannot read local bundle {location}: Permission denied"
    assert os.listdir(deployment) == []


def _as_nobody(action: Callable[[], None]) -> str:
    """Run ``action`` in a forked child as uid/gid 65534; the BundleError it raised."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            action()
        except BundleError as error:
            os.write(write_end, str(error).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(child, 0)
    return message


def test_a_bundle_larger_than_the_free_space_is_refused_before_copying(
    tmp_path: Path, small_disk: Path
) -> None:
    location = tmp_path / "huge.tgz"
    location.write_bytes(os.urandom(3 * 1024 * 1024))
    with pytest.raises(BundleError, match=r"stored as .*, needs 3\.0 MiB .*, but the filesystem"):
        fetch_local_bundle_to_disk(location, small_disk / "bundle.tar")
    assert os.listdir(small_disk) == []


def test_the_copy_is_not_affected_by_the_umask_of_a_shell(tmp_path: Path) -> None:
    # A revision copied by a child process with a restrictive umask keeps its modes, since
    # modes are set explicitly rather than left to the umask.
    source = tmp_path / "rev"
    source.mkdir()
    (source / "run.sh").write_text("#!/bin/sh\n", encoding="utf-8")
    (source / "run.sh").chmod(0o755)
    target = tmp_path / "out" / "deployment-archive"
    target.parent.mkdir()
    code = (
        "import os, sys; from pathlib import Path; os.umask(0o077);"
        "from agent.revision.fetchers.local import copy_directory_revision_to_disk as c;"
        "c(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(source), str(target)],
        check=True,
        cwd=REPO,
    )
    assert stat.S_IMODE((target / "run.sh").stat().st_mode) == 0o755
