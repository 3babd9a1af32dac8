"""An unprivileged owner of an installed folder plants symlinks; root must never follow them.

Deployment 1 gives ``dest`` to ``nobody`` through ``permissions``. As ``nobody`` (a real
setpriv'd subprocess), the test then moves the installed ``dest/sub`` aside and puts a
symlink to a victim folder in its place. Every later deployment of the group (the same
revision, one without ``sub/file``, OVERWRITE, permissions on ``sub``) must leave the
victim's files alone: the cleanup replay, the reuse comparison, the copy and the
permissions all walk the folders the agent created without following a symlink.

The work area lives in a world-traversable folder of /tmp (pytest's own is root-only).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from agent.application_specification.model import (
    ApplicationSpecification,
    FileExistsBehavior,
    FileMapping,
)
from agent.installer.cleanup import CleanupFileWriter, PathSetBuilder
from agent.installer.copy import copy_entries_on_disk
from agent.installer.instructions import InstructionsFileWriter
from agent.installer.plan import resolve_entries_on_disk
from agent.installer.result import InstallError
from agent.installer.reuse import read_identity_from_os
from tests.support.archives import write_tree
from tests.support.local_agent import LocalAgent, LocalRun

pytestmark = pytest.mark.root


@pytest.fixture
def area() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="cd-planted-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _appspec(dest: Path, extra_permissions: str = "") -> str:
    return f"""version: 0.0
os: linux
files:
  - source: app
    destination: {dest}
permissions:
  - object: {dest.parent}
    pattern: "{dest.name}"
    owner: nobody
    type:
      - directory
{extra_permissions}"""


def _revision(where: Path, dest: Path, files: List[str], extra_permissions: str = "") -> Path:
    if where.exists():
        shutil.rmtree(where)
    tree = {"appspec.yml": _appspec(dest, extra_permissions)}
    tree.update({f"app/{name}": f"revision {name}\n" for name in files})
    return write_tree(where, tree)


def _as_nobody(*code_and_args: str) -> None:
    """Run Python code as the unprivileged user nobody, as an attacker on the host would."""
    nobody = pwd.getpwnam("nobody")
    subprocess.run(
        [
            "setpriv",
            f"--reuid={nobody.pw_uid}",
            f"--regid={nobody.pw_gid}",
            "--clear-groups",
            sys.executable,
            "-c",
            *code_and_args,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


_PLANT = """
import os, sys
dest, victim = sys.argv[1], sys.argv[2]
os.rename(os.path.join(dest, "sub"), os.path.join(dest, "moved"))
os.symlink(victim, os.path.join(dest, "sub"))
"""


def _deploy(agent: LocalAgent, revision: Path, behavior: Optional[str] = None) -> LocalRun:
    flags = ["-b", behavior] if behavior else []
    return agent.run("-l", str(revision), "-t", "directory", *flags)


def _victim(area: Path) -> Path:
    victim = area / "victim"
    victim.mkdir()
    (victim / "file").write_text("victim\n", encoding="utf-8")
    (victim / "file").chmod(0o640)
    return victim


@pytest.mark.parametrize(
    ("second", "behavior", "extra_permissions"),
    [
        (["sub/file", "top.txt"], None, ""),  # replay + reuse of the same revision
        (["top.txt"], None, ""),  # sub/file is gone from the revision: replay only
        (["sub/file", "top.txt"], "OVERWRITE", ""),
        (
            ["sub/file", "top.txt"],
            None,
            "  - object: {dest}/sub\n    mode: 0606\n    owner: nobody\n    type:\n      - file\n",
        ),
    ],
    ids=["same-revision", "file-gone", "overwrite", "permissions"],
)
def test_a_planted_symlink_where_the_agent_made_a_folder_is_never_followed(
    local_agent: LocalAgent,
    area: Path,
    second: List[str],
    behavior: Optional[str],
    extra_permissions: str,
) -> None:
    dest = area / "www" / "dest"
    victim = _victim(area)
    first = _deploy(local_agent, _revision(area / "rev", dest, ["sub/file", "top.txt"]))
    assert first.returncode == 0, first.stderr
    assert dest.stat().st_uid == pwd.getpwnam("nobody").pw_uid

    _as_nobody(_PLANT, str(dest), str(victim))
    assert (dest / "sub").is_symlink()

    revision = _revision(
        area / "rev", dest, second, extra_permissions.format(dest=dest) if extra_permissions else ""
    )
    run = _deploy(local_agent, revision, behavior)

    assert (victim / "file").read_text(encoding="utf-8") == "victim\n"
    status = (victim / "file").stat()
    assert (status.st_mode & 0o7777, status.st_uid) == (0o640, 0)
    assert sorted(os.listdir(victim)) == ["file"]
    assert run.returncode == 0, run.stderr
    # The planted link went as a link; the new revision is a real folder again.
    assert not (dest / "sub").is_symlink()
    assert ((dest / "sub" / "file").exists()) == ("sub/file" in second)
    assert (dest / "moved" / "file").read_text(encoding="utf-8") == "revision sub/file\n"
    assert str(dest / "sub") in run.stderr + run.stdout


def test_a_destination_that_was_a_symlink_before_the_first_install_still_works(
    local_agent: LocalAgent, area: Path
) -> None:
    real = area / "srv" / "www"
    real.mkdir(parents=True)
    (area / "var").mkdir()
    (area / "var" / "www").symlink_to(real)
    dest = area / "var" / "www" / "app"
    first = _deploy(local_agent, _revision(area / "rev", dest, ["sub/file", "old.txt"]))
    assert first.returncode == 0, first.stderr
    assert (real / "app" / "sub" / "file").is_file()

    second = _deploy(local_agent, _revision(area / "rev", dest, ["sub/file", "new.txt"]))
    assert second.returncode == 0, second.stderr
    assert sorted(os.listdir(real / "app")) == ["new.txt", "sub"]
    assert (area / "var" / "www").is_symlink()

    third = _deploy(local_agent, _revision(area / "rev", dest, ["new.txt"]))
    assert third.returncode == 0, third.stderr
    assert sorted(os.listdir(real / "app")) == ["new.txt"]


_SWAP_TOOL = """#!/bin/sh
# Stands in front of setfacl; the first time, the owner of {dest} swaps a folder for a
# symlink meanwhile.
[ -L {dest}/b ] || {{ mv {dest}/b {dest}/b-moved && ln -s {victim} {dest}/b; }}
exec {setfacl} "$@"
"""


def _swapping_setfacl(area: Path) -> Tuple[Path, Path, Path]:
    """The installed folder whose ``b`` gets swapped, the victim, the tools folder."""
    # One folder at the top: no second copying process, so the order of the steps is fixed.
    inner = area / "dest" / "w"
    victim = _victim(area)
    tools = area / "tools"
    tools.mkdir()
    real = shutil.which("setfacl")
    assert real is not None
    swap = _SWAP_TOOL.format(dest=inner, victim=victim, setfacl=real)
    (tools / "setfacl").write_text(swap, encoding="utf-8")
    (tools / "setfacl").chmod(0o755)
    return inner, victim, tools


def _deploy_with_tools(
    agent: LocalAgent, area: Path, tools: Path, more_permissions: str
) -> LocalRun:
    """Deploy with the tools first on PATH; permissions entry 1 sets an ACL (the swap)."""
    appspec = f"""version: 0.0
os: linux
files:
  - source: app
    destination: {area}/dest
permissions:
  - object: {area}/dest/w/a
    acls:
      - "u:nobody:r"
{more_permissions}"""
    revision = write_tree(
        area / "rev", {"appspec.yml": appspec, "app/w/a/f": "a\n", "app/w/b/file": "b\n"}
    )
    path = f"{tools}:{os.environ['PATH']}"
    return agent.run("-l", str(revision), "-t", "directory", env={"PATH": path})


def test_permissions_never_follow_a_symlink_planted_while_they_are_applied(
    local_agent: LocalAgent, area: Path
) -> None:
    inner, victim, tools = _swapping_setfacl(area)
    more_permissions = f"""  - object: {inner}/b
    mode: 0606
    owner: nobody
    acls:
      - "u:nobody:rw"
    type:
      - file
"""
    run = _deploy_with_tools(local_agent, area, tools, more_permissions)
    assert (inner / "b").is_symlink(), run.stderr
    status = (victim / "file").stat()
    assert (status.st_mode & 0o7777, status.st_uid) == (0o640, 0)
    assert not [name for name in os.listxattr(victim / "file") if "posix_acl" in name]
    # The file the install made got its permissions, in the folder it was moved to.
    moved = (inner / "b-moved" / "file").stat()
    # (The group bits show the ACL mask.)
    assert (moved.st_mode & 0o7707, moved.st_uid) == (0o606, pwd.getpwnam("nobody").pw_uid)
    acl = subprocess.run(
        ["getfacl", "-p", str(inner / "b-moved" / "file")], capture_output=True, text=True
    )
    assert "user:nobody:rw-" in acl.stdout
    assert run.returncode == 0, run.stderr


_PLANT_NEW = """
import os, sys
os.symlink(sys.argv[2], os.path.join(sys.argv[1], "new"))
"""


@pytest.mark.parametrize("behavior", [None, "OVERWRITE"])
def test_a_symlink_planted_by_a_user_below_an_installed_folder_refuses_the_install(
    local_agent: LocalAgent, area: Path, behavior: Optional[str]
) -> None:
    dest = area / "www" / "dest"
    victim = _victim(area)
    first = _deploy(local_agent, _revision(area / "rev", dest, ["sub/file"]))
    assert first.returncode == 0, first.stderr

    _as_nobody(_PLANT_NEW, str(dest), str(victim))
    run = _deploy(local_agent, _revision(area / "rev", dest, ["sub/file", "new/file"]), behavior)

    assert run.returncode == 1
    assert f"{dest}/new is a symlink owned by uid {pwd.getpwnam('nobody').pw_uid}" in run.stderr
    assert (victim / "file").read_text(encoding="utf-8") == "victim\n"
    assert sorted(os.listdir(victim)) == ["file"]
    # Refused while planning: the previous revision is still in place.
    assert (dest / "sub" / "file").is_file()


def test_an_administrators_symlink_below_an_installed_folder_is_installed_through(
    local_agent: LocalAgent, area: Path
) -> None:
    dest = area / "www" / "dest"
    storage = area / "efs" / "storage"
    storage.mkdir(parents=True)
    first = _deploy(local_agent, _revision(area / "rev", dest, ["sub/file"]))
    assert first.returncode == 0, first.stderr
    (dest / "storage").symlink_to(storage)  # made by root, as an administrator would

    second = _deploy(local_agent, _revision(area / "rev", dest, ["sub/file", "storage/x"]))
    assert second.returncode == 0, second.stderr
    assert (storage / "x").read_text(encoding="utf-8") == "revision storage/x\n"

    third = _deploy(local_agent, _revision(area / "rev", dest, ["sub/file"]))
    assert third.returncode == 0, third.stderr
    assert os.listdir(storage) == []
    assert (dest / "storage").is_symlink()


def _reject_symlink_targets(agent: LocalAgent) -> None:
    with agent.config.open("a", encoding="utf-8") as config:
        config.write(":reject_symlink_permission_targets: true\n")


def _symlinked_object_revision(area: Path) -> Tuple[Path, Path]:
    real = area / "srv" / "www"
    real.mkdir(parents=True)
    (area / "www").symlink_to(real)
    appspec = f"""version: 0.0
os: linux
files:
  - source: app
    destination: {area}/www/app
permissions:
  - object: {area}/www
    mode: 0604
    type:
      - file
"""
    return write_tree(area / "rev", {"appspec.yml": appspec, "app/file": "f\n"}), real


@pytest.mark.parametrize("reject", [False, True])
def test_reject_symlink_permission_targets_refuses_an_object_behind_a_symlink(
    local_agent: LocalAgent, area: Path, reject: bool
) -> None:
    revision, real = _symlinked_object_revision(area)
    if reject:
        _reject_symlink_targets(local_agent)
    run = _deploy(local_agent, revision)
    if not reject:
        assert run.returncode == 0, run.stderr
        assert (real / "app" / "file").stat().st_mode & 0o7777 == 0o604
        return
    assert run.returncode == 1
    assert (
        f"permissions entry 1 (object '{area}/www'): {area}/www is a symlink and"
        " reject_symlink_permission_targets is set" in run.stderr
    )
    assert not (real / "app").exists()  # refused while planning


@pytest.mark.parametrize("reject", [False, True])
def test_reject_symlink_permission_targets_refuses_a_matched_symlink(
    local_agent: LocalAgent, area: Path, reject: bool
) -> None:
    dest = area / "dest"
    appspec = f"""version: 0.0
os: linux
files:
  - source: app
    destination: {dest}
permissions:
  - object: {dest}
    mode: 0600
    type:
      - file
"""
    revision = write_tree(area / "rev", {"appspec.yml": appspec, "app/file": "f\n"})
    (revision / "app" / "link").symlink_to("file")
    if reject:
        _reject_symlink_targets(local_agent)
    run = _deploy(local_agent, revision)
    if not reject:
        assert run.returncode == 0, run.stderr
        assert (dest / "link").is_symlink()
        return
    assert run.returncode == 1
    assert f"{dest}/link is a symlink matched by permissions entry 1" in run.stderr
    assert not dest.exists()


def test_reject_symlink_permission_targets_refuses_a_symlink_planted_while_applying(
    local_agent: LocalAgent, area: Path
) -> None:
    _reject_symlink_targets(local_agent)
    inner, victim, tools = _swapping_setfacl(area)
    more_permissions = f"""  - object: {inner}
    pattern: "b"
    mode: 0700
    type:
      - directory
  - object: {inner}/b
    mode: 0606
    type:
      - file
"""
    run = _deploy_with_tools(local_agent, area, tools, more_permissions)
    assert run.returncode == 1
    assert f"{inner}/b is a symlink" in run.stderr
    assert "reject_symlink_permission_targets is set" in run.stderr
    status = (victim / "file").stat()
    assert (status.st_mode & 0o7777, status.st_uid) == (0o640, 0)
    assert victim.stat().st_mode & 0o777 == 0o755


def test_the_copy_never_enters_a_symlink_where_the_previous_install_made_a_folder(
    tmp_path: Path,
) -> None:
    # The replay removes such a link as a link; one planted after it, while the copy
    # runs, must stop the copy rather than send files through it.
    archive = write_tree(tmp_path / "rev", {"sub/file": "new\n"})
    dest = tmp_path / "dest"
    dest.mkdir()
    victim = _victim(tmp_path)
    (dest / "sub").symlink_to(victim)
    spec = ApplicationSpecification(files=(FileMapping("/", str(dest)),))
    entries = resolve_entries_on_disk(spec, archive, tmp_path / "root")
    key = os.urandom(16)
    made = PathSetBuilder(key)
    for path in (dest, dest / "sub", dest / "sub" / "file"):
        made.add(str(path))
    with (
        CleanupFileWriter(tmp_path / "cleanup") as cleanup,
        InstructionsFileWriter(tmp_path / "install.json") as steps,
        pytest.raises(InstallError, match="sub is a symlink where this agent made a folder"),
    ):
        copy_entries_on_disk(
            entries,
            FileExistsBehavior.OVERWRITE,
            PathSetBuilder(key).build(),
            made.build(),
            read_identity_from_os(),
            cleanup,
            steps,
        )
    assert (victim / "file").read_text(encoding="utf-8") == "victim\n"
    assert sorted(os.listdir(victim)) == ["file"]


def test_the_copy_never_follows_a_revision_folder_swapped_for_a_symlink_after_the_plan(
    tmp_path: Path,
) -> None:
    # The plan found a real folder at the entry's source; a symlink put in its place before
    # the copy starts must not make the copy read another folder of the host.
    archive = write_tree(tmp_path / "rev", {"app/file": "revision\n"})
    dest = tmp_path / "dest"
    victim = _victim(tmp_path)
    spec = ApplicationSpecification(files=(FileMapping("app", str(dest)),))
    entries = resolve_entries_on_disk(spec, archive, tmp_path / "root")
    shutil.rmtree(archive / "app")
    (archive / "app").symlink_to(victim)
    key = os.urandom(16)
    with (
        CleanupFileWriter(tmp_path / "cleanup") as cleanup,
        InstructionsFileWriter(tmp_path / "install.json") as steps,
        pytest.raises(InstallError, match=f"cannot open {archive / 'app'}"),
    ):
        copy_entries_on_disk(
            entries,
            FileExistsBehavior.DISALLOW,
            PathSetBuilder(key).build(),
            PathSetBuilder(key).build(),
            read_identity_from_os(),
            cleanup,
            steps,
        )
    assert os.listdir(dest) == []
