"""Install of whole revisions: layout, cleanup file, install log, conflicts and recovery."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from agent.application_specification.model import (
    ApplicationSpecification,
    FileExistsBehavior,
    FileMapping,
)
from agent.installer import InstallError
from agent.installer.cleanup import read_previous_install_from_disk
from agent.installer.plan import PlannedReuse, check_plan_on_disk, resolve_entries_on_disk
from agent.installer.reuse import read_identity_from_os
from tests.support.install_workspace import Workspace, mode_of, tree


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def test_first_install_lays_out_files_and_records_them(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "A", "sub/b.txt": "B", "sub/link": ("link", "b.txt")})
    result = ws.install_all()

    assert tree(ws.dest) == {"a.txt": "A", "sub": "dir", "sub/b.txt": "B", "sub/link": "link:b.txt"}
    d = str(ws.dest)
    assert ws.cleanup_file.read_bytes() == (
        f"{d}\n{d}/a.txt\n{d}/sub\n{d}/sub/b.txt\n{d}/sub/link\n".encode()
    )
    a = str(ws.archive)
    assert ws.instructions() == [
        {"type": "mkdir", "directory": d},
        {"type": "copy", "source": f"{a}/a.txt", "destination": f"{d}/a.txt"},
        {"type": "mkdir", "directory": f"{d}/sub"},
        {"type": "copy", "source": f"{a}/sub/b.txt", "destination": f"{d}/sub/b.txt"},
        {"type": "copy", "source": f"{a}/sub/link", "destination": f"{d}/sub/link"},
    ]
    assert (result.files_copied, result.symlinks_created, result.directories_created) == (2, 1, 2)
    assert result.paths_retained == 0
    assert not list(ws.root.instructions_dir.glob("*.partial"))


def test_second_install_replaces_the_first(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "A", "gone.txt": "G", "sub/b.txt": "B", "old/c.txt": "C"})
    ws.install_all()
    ws.write_revision({"a.txt": "A2", "sub/new.txt": "N"})
    result = ws.install_all()

    assert tree(ws.dest) == {"a.txt": "A2", "sub": "dir", "sub/new.txt": "N"}
    d = str(ws.dest)
    # Folders the first install made and the second still needs stay listed first.
    assert sorted(ws.cleanup_lines()) == sorted([d, f"{d}/sub", f"{d}/a.txt", f"{d}/sub/new.txt"])
    assert ws.cleanup_lines()[:2] == [d, f"{d}/sub"]
    assert [(i["type"], i.get("destination", i.get("directory"))) for i in ws.instructions()] == [
        ("mkdir", d),
        ("copy", f"{d}/a.txt"),
        ("mkdir", f"{d}/sub"),
        ("copy", f"{d}/sub/new.txt"),
    ]
    assert result.previous_paths_removed == 5  # a.txt (changed), gone.txt, b.txt, old, c.txt


def test_same_revision_twice_keeps_identical_files_in_place(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "A", "sub/b.txt": "B", "sub/link": ("link", "b.txt")})
    ws.install_all()
    inode = (ws.dest / "sub/b.txt").stat().st_ino
    first_log = ws.instructions()
    first_cleanup = ws.cleanup_lines()

    result = ws.install_all()

    assert (ws.dest / "sub/b.txt").stat().st_ino == inode
    assert (result.files_unchanged, result.directories_kept, result.files_copied) == (3, 2, 0)
    assert result.previous_paths_removed == 0
    assert ws.instructions() == first_log
    assert ws.cleanup_lines() == first_cleanup


def test_rebuilt_revision_keeps_unchanged_files_and_takes_their_new_times(ws: Workspace) -> None:
    ws.write_revision({"same.txt": "S", "link": ("link", "same.txt"), "changed.txt": "C1"})
    ws.install_all()
    inode = (ws.dest / "same.txt").stat().st_ino
    # A rebuilt bundle: same bytes, new times everywhere.
    ws.write_revision({"same.txt": "S", "link": ("link", "same.txt"), "changed.txt": "C2"})
    for name in ("same.txt", "link", "changed.txt"):
        os.utime(
            ws.archive / name, ns=(2_000_000_000_000, 2_000_000_000_000), follow_symlinks=False
        )

    result = ws.install_all()

    assert (ws.dest / "same.txt").stat().st_ino == inode
    for name in ("same.txt", "link", "changed.txt"):
        assert (ws.dest / name).lstat().st_mtime_ns == 2_000_000_000_000, name
    assert tree(ws.dest) == {"same.txt": "S", "link": "link:same.txt", "changed.txt": "C2"}
    assert (result.files_unchanged, result.files_copied) == (2, 1)


def test_kept_candidate_with_other_content_is_rewritten(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "AAAA"})
    ws.install_all()
    installed = ws.dest / "a.txt"
    stamp = installed.stat().st_mtime_ns
    # Same size and time as the new revision's file, other bytes.
    ws.write_revision({"a.txt": "BBBB"})
    os.utime(ws.archive / "a.txt", ns=(stamp, stamp))
    os.utime(installed, ns=(stamp, stamp))

    result = ws.install_all()

    assert installed.read_text(encoding="utf-8") == "BBBB"
    assert (result.files_copied, result.files_unchanged) == (1, 0)
    assert ws.cleanup_lines().count(str(installed)) == 1


def test_modes_and_times_are_kept(ws: Workspace) -> None:
    ws.write_revision({"run.sh": "#!/bin/sh\n", "secret": "s"})
    (ws.archive / "run.sh").chmod(0o751)
    (ws.archive / "secret").chmod(0o600)
    os.utime(ws.archive / "secret", ns=(1_000_000_000, 1_500_000_000_123))
    ws.install_all()

    assert mode_of(ws.dest / "run.sh") == 0o751
    assert mode_of(ws.dest / "secret") == 0o600
    assert (ws.dest / "secret").stat().st_mtime_ns == 1_500_000_000_123


def test_symlinks_are_recreated_never_followed(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.txt").write_text("P", encoding="utf-8")
    ws.write_revision(
        {
            "to-dir": ("link", str(outside)),
            "dangling": ("link", "nowhere/at/all"),
            "rel": ("link", "../x"),
        }
    )
    result = ws.install_all()

    assert tree(ws.dest) == {
        "to-dir": f"link:{outside}",
        "dangling": "link:nowhere/at/all",
        "rel": "link:../x",
    }
    assert result.symlinks_created == 3
    assert f"{ws.dest}/to-dir/private.txt" not in ws.cleanup_lines()


def test_file_source_goes_to_destination_basename(ws: Workspace) -> None:
    ws.write_revision({"config/app.conf": "conf", "config/other": "o"})
    deep = ws.base / "etc" / "app" / "conf.d"
    ws.install((FileMapping("config/app.conf", str(deep)),))

    assert tree(ws.base / "etc") == {
        "app": "dir",
        "app/conf.d": "dir",
        "app/conf.d/app.conf": "conf",
    }
    assert ws.cleanup_lines() == [
        str(ws.base / "etc"),
        str(ws.base / "etc/app"),
        str(deep),
        str(deep / "app.conf"),
    ]


def test_created_folders_go_when_empty_and_existing_folders_stay(ws: Workspace) -> None:
    opt = ws.base / "opt"
    opt.mkdir()
    (opt / "foreign.txt").write_text("F", encoding="utf-8")
    ws.write_revision({"app/one/x.txt": "X", "app/two/y.txt": "Y"})
    ws.install((FileMapping("app", str(opt / "app")),))
    assert str(opt) not in ws.cleanup_lines()
    # Something foreign lands in a folder the install created: that folder must stay.
    (opt / "app" / "two" / "mine.txt").write_text("M", encoding="utf-8")

    ws.write_revision({"other.txt": "O"})
    ws.install((FileMapping("other.txt", str(ws.base / "elsewhere")),))

    assert tree(opt) == {
        "foreign.txt": "F",
        "app": "dir",
        "app/two": "dir",
        "app/two/mine.txt": "M",
    }


@pytest.mark.parametrize("behavior", list(FileExistsBehavior))
def test_existing_foreign_file(ws: Workspace, behavior: FileExistsBehavior) -> None:
    ws.write_revision({"a.txt": "A1", "keep.txt": "K1"})
    ws.install_all()
    previous_cleanup = ws.cleanup_file.read_bytes()
    previous_log = ws.install_file.read_bytes()
    (ws.dest / "foreign.txt").write_text("theirs", encoding="utf-8")
    ws.write_revision({"a.txt": "A2", "foreign.txt": "ours", "new.txt": "N"})

    if behavior is FileExistsBehavior.DISALLOW:
        with pytest.raises(InstallError) as raised:
            ws.install_all(behavior=behavior)
        message = str(raised.value)
        assert f"{ws.dest}/foreign.txt" in message and "DISALLOW" in message
        assert "OVERWRITE" in message and "\n" not in message
        # Refused: nothing copied, the previous revision untouched.
        assert tree(ws.dest) == {"a.txt": "A1", "keep.txt": "K1", "foreign.txt": "theirs"}
        assert ws.cleanup_file.read_bytes() == previous_cleanup
        assert ws.install_file.read_bytes() == previous_log
        return

    result = ws.install_all(behavior=behavior)
    expected = "ours" if behavior is FileExistsBehavior.OVERWRITE else "theirs"
    assert tree(ws.dest) == {"a.txt": "A2", "foreign.txt": expected, "new.txt": "N"}
    recorded = f"{ws.dest}/foreign.txt" in ws.cleanup_lines()
    assert recorded is (behavior is FileExistsBehavior.OVERWRITE)
    assert result.paths_retained == (1 if behavior is FileExistsBehavior.RETAIN else 0)
    assert result.files_overwritten == (1 if behavior is FileExistsBehavior.OVERWRITE else 0)


def test_overwrite_replaces_a_foreign_symlink_without_following_it(ws: Workspace) -> None:
    target = ws.base / "target.txt"
    target.write_text("T", encoding="utf-8")
    ws.dest.mkdir()
    os.symlink(target, ws.dest / "a.txt")
    ws.write_revision({"a.txt": "A"})
    ws.install_all(behavior=FileExistsBehavior.OVERWRITE)

    assert not (ws.dest / "a.txt").is_symlink()
    assert (ws.dest / "a.txt").read_text(encoding="utf-8") == "A"
    assert target.read_text(encoding="utf-8") == "T"


def test_two_sources_for_one_destination(ws: Workspace) -> None:
    ws.write_revision({"one/x.txt": "1", "two/x.txt": "2"})
    spec = (
        FileMapping("one/x.txt", str(ws.dest)),
        FileMapping("two/x.txt", str(ws.dest)),
    )
    with pytest.raises(
        InstallError, match=r"same destination .*/dest/x\.txt.*files entry 1.*files entry 2"
    ):
        ws.install(spec)
    assert not ws.dest.exists()


def test_two_folders_with_a_common_file(ws: Workspace) -> None:
    ws.write_revision({"one/sub/x.txt": "1", "one/a": "a", "two/sub/x.txt": "2", "two/b": "b"})
    spec = (FileMapping("one", str(ws.dest)), FileMapping("two", str(ws.dest)))
    with pytest.raises(InstallError, match=r"same destination .*/dest/sub/x\.txt"):
        ws.install(spec)
    assert not ws.dest.exists()


def test_folders_that_merge_are_fine(ws: Workspace) -> None:
    ws.write_revision({"one/sub/x.txt": "1", "two/sub/y.txt": "2"})
    ws.install((FileMapping("one", str(ws.dest)), FileMapping("two", str(ws.dest))))
    assert tree(ws.dest) == {"sub": "dir", "sub/x.txt": "1", "sub/y.txt": "2"}
    assert ws.cleanup_lines().count(f"{ws.dest}/sub") == 1


def test_file_where_a_created_folder_goes(ws: Workspace) -> None:
    ws.write_revision({"one/sub": "a file named sub", "two/inner.txt": "I"})
    spec = (
        FileMapping("one/sub", str(ws.dest)),
        FileMapping("two", str(ws.dest / "sub")),
    )
    with pytest.raises(InstallError, match="a file for one files entry and a folder for another"):
        ws.install(spec)
    assert not ws.dest.exists()


def test_existing_file_where_a_folder_goes(ws: Workspace) -> None:
    ws.dest.mkdir()
    (ws.dest / "sub").write_text("foreign", encoding="utf-8")
    ws.write_revision({"sub/x.txt": "X"})
    with pytest.raises(InstallError, match=r"/dest/sub must be a folder"):
        ws.install_all(behavior=FileExistsBehavior.OVERWRITE)


def test_missing_source_names_the_entry(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "A"})
    with pytest.raises(InstallError, match=r"files entry 2 \(source 'nope/x'.*does not exist"):
        ws.install((FileMapping("a.txt", str(ws.dest)), FileMapping("nope/x", str(ws.dest))))
    assert not ws.dest.exists()


@pytest.mark.parametrize("source", ["../outside", "sub/../../outside", "escape/secret.txt"])
def test_source_leaving_the_revision(ws: Workspace, source: str) -> None:
    ws.write_revision({"sub/x": "x", "escape": ("link", str(ws.base / "outside"))})
    (ws.base / "outside").mkdir()
    (ws.base / "outside" / "secret.txt").write_text("S", encoding="utf-8")
    with pytest.raises(InstallError, match="leaves the revision folder"):
        ws.install((FileMapping(source, str(ws.dest)),))
    assert not ws.dest.exists()


def test_destination_inside_the_deployment_root_is_refused(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "A"})
    with pytest.raises(InstallError, match="inside the agent's deployment root"):
        ws.install((FileMapping("/", str(ws.root.path / "somewhere")),))


def test_crashed_install_leaves_a_usable_cleanup_file(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "A"})
    ws.dest.mkdir()
    (ws.dest / "left.txt").write_text("from the crashed install", encoding="utf-8")
    (ws.dest / "half.txt").write_text("foreign", encoding="utf-8")
    ws.root.instructions_dir.mkdir(parents=True)
    d = str(ws.dest)
    # The crashed install recorded dest, left.txt and a path it never created; the last
    # line lost its newline, so it does not count.
    ws.cleanup_file.write_bytes(
        f"{d}\n{d}/left.txt\n{d}/never-created\n{d}/ghost/deeper\n{d}/half.txt".encode()
    )

    ws.install_all()

    assert tree(ws.dest) == {"a.txt": "A", "half.txt": "foreign"}
    # dest stays for the foreign half.txt, so this install did not make it: not listed.
    assert ws.cleanup_lines() == [f"{d}/a.txt"]


def test_deleting_the_cleanup_file_by_hand_does_not_wedge(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "A", "b.txt": "B"})
    ws.install_all()
    ws.cleanup_file.unlink()

    # The files are now foreign: DISALLOW explains which one is in the way.
    with pytest.raises(InstallError, match=rf"{ws.dest}/a\.txt already exists"):
        ws.install_all()
    result = ws.install_all(behavior=FileExistsBehavior.OVERWRITE)
    assert result.files_overwritten == 2
    assert tree(ws.dest) == {"a.txt": "A", "b.txt": "B"}
    # dest itself existed before this install, so it is not listed.
    assert ws.cleanup_lines() == [f"{ws.dest}/a.txt", f"{ws.dest}/b.txt"]


def test_previous_file_replaced_by_a_folder_and_back(ws: Workspace) -> None:
    ws.write_revision({"thing": "file"})
    ws.install_all()
    ws.write_revision({"thing/inside.txt": "I"})
    ws.install_all()
    assert tree(ws.dest) == {"thing": "dir", "thing/inside.txt": "I"}
    ws.write_revision({"thing": "file again"})
    ws.install_all()
    assert tree(ws.dest) == {"thing": "file again"}


def test_previous_folder_with_foreign_content_cannot_become_a_file(ws: Workspace) -> None:
    ws.write_revision({"thing/inside.txt": "I"})
    ws.install_all()
    (ws.dest / "thing" / "theirs.txt").write_text("T", encoding="utf-8")
    ws.write_revision({"thing": "file"})
    with pytest.raises(InstallError, match=r"thing must be replaced by a file.*theirs\.txt"):
        ws.install_all()
    assert (ws.dest / "thing" / "inside.txt").exists()


def test_files_with_a_line_break_in_the_name_are_refused(ws: Workspace) -> None:
    ws.write_revision({"bad\nname": "x"})
    with pytest.raises(InstallError, match="line break"):
        ws.install_all()
    assert not ws.dest.exists()


def test_no_files_section_still_removes_the_previous_revision(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "A"})
    ws.install_all()
    result = ws.install(())
    assert not ws.dest.exists()
    assert result.previous_paths_removed == 2
    assert ws.cleanup_file.read_bytes() == b""
    assert ws.instructions() == []


def test_groups_are_independent(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "A"})
    ws.install_all()
    other = ws.base / "other-dest"
    ws.install((FileMapping("/", str(other)),), group="group-2")
    ws.install_all()
    assert tree(other) == {"a.txt": "A"}
    assert tree(ws.dest) == {"a.txt": "A"}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to keep owners")
def test_owners_are_kept_as_root_even_in_a_setgid_folder(ws: Workspace) -> None:
    nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    daemon = grp.getgrnam("daemon").gr_gid
    ws.write_revision(
        {"theirs.txt": "T", "ours.txt": "O", "link": ("link", "ours.txt"), "sub/x": "X"}
    )
    os.chown(ws.archive / "theirs.txt", nobody, nogroup)
    os.chown(ws.archive / "link", nobody, nogroup, follow_symlinks=False)
    ws.dest.mkdir()
    os.chown(ws.dest, 0, daemon)
    ws.dest.chmod(0o2775)

    ws.install_all()

    def owner(name: str) -> tuple:  # type: ignore[type-arg]
        status = (ws.dest / name).lstat()
        return status.st_uid, status.st_gid

    assert owner("theirs.txt") == (nobody, nogroup)
    assert owner("ours.txt") == (0, 0)
    assert owner("link") == (nobody, nogroup)
    assert owner("sub") == (0, daemon)  # a new folder takes the set-group-ID folder's group
    result = ws.install_all()
    assert (result.files_unchanged, result.files_copied, result.directories_kept) == (4, 0, 1)


def test_special_files_in_the_revision_are_refused(ws: Workspace) -> None:
    ws.write_revision({"a.txt": "A"})
    os.mkfifo(ws.archive / "pipe")
    with pytest.raises(InstallError, match=r"pipe in the revision is neither a file"):
        ws.install_all()
    assert not ws.dest.exists()


def _plan_again(ws: Workspace) -> PlannedReuse:
    """The plan of installing the workspace's revision over its last install."""
    spec = ApplicationSpecification(files=(FileMapping("/", str(ws.dest)),))
    entries = resolve_entries_on_disk(spec, ws.archive, ws.root.path)
    previous = read_previous_install_from_disk(ws.cleanup_file, key=os.urandom(16))
    return check_plan_on_disk(
        entries, (), previous, FileExistsBehavior.DISALLOW, read_identity_from_os()
    )


def test_the_plan_tells_when_the_previous_install_already_holds_every_path(
    ws: Workspace,
) -> None:
    # Then nothing new takes room, and the install does not measure it.
    ws.write_revision({"a.txt": "A", "sub/b.txt": "B", "sub/link": ("link", "b.txt")})
    ws.install_all()
    assert _plan_again(ws).everything_kept

    ws.write_revision({"a.txt": "A", "sub/b.txt": "B", "sub/link": ("link", "b.txt"), "c": "C"})
    assert not _plan_again(ws).everything_kept
    ws.write_revision({"a.txt": "A", "sub/b.txt": "B2", "sub/link": ("link", "b.txt")})
    assert not _plan_again(ws).everything_kept
    ws.write_revision({"a.txt": "A", "sub/b.txt": "B", "sub/link": ("link", "b.txt"), "new": None})
    assert not _plan_again(ws).everything_kept


def test_the_plan_keeps_nothing_of_a_folder_left_holding_a_foreign_file(ws: Workspace) -> None:
    ws.write_revision({"sub/b.txt": "B"})
    ws.install_all()
    (ws.dest / "sub" / "foreign.txt").write_text("F", encoding="utf-8")

    planned = _plan_again(ws)

    # The folder stays (its removal fails) but is not the install's own any more.
    assert str(ws.dest / "sub") not in planned.kept
    assert not planned.everything_kept
