"""The appspec's permissions: matching, mode, owner, ACLs, SELinux context, and refusals."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

from agent.application_specification.model import (
    FileMapping,
    ObjectType,
    Permission,
    SelinuxContext,
    SelinuxRange,
)
from agent.installer import InstallError
from tests.support.install_workspace import Workspace, link_tools, mode_of, write_stub_tool

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change owners")
# Found before any test narrows PATH.
GETFACL = shutil.which("getfacl") or "getfacl"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    workspace.write_revision(
        {
            "a.sh": "a",
            "b.txt": "b",
            "sub/c.sh": "c",
            "sub/d.txt": "d",
            "sub/deeper/e.sh": "e",
            "sub/link": ("link", "c.sh"),
        }
    )
    for path in workspace.archive.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return workspace


def test_pattern_matches_direct_children_only(ws: Workspace) -> None:
    permission = Permission(object=str(ws.dest), pattern="*.sh", mode=0o700)
    result = ws.install_all((permission,))

    assert mode_of(ws.dest / "a.sh") == 0o700
    assert mode_of(ws.dest / "b.txt") == 0o644
    assert mode_of(ws.dest / "sub/c.sh") == 0o644
    assert result.permission_paths == 1


def test_except_and_type(ws: Workspace) -> None:
    files = Permission(
        object=str(ws.dest), excepts=("*.txt",), types=(ObjectType.FILE,), mode=0o640
    )
    ws.install_all((files,))

    assert [mode_of(ws.dest / p) for p in ("a.sh", "sub/c.sh", "sub/deeper/e.sh")] == [0o640] * 3
    assert [mode_of(ws.dest / p) for p in ("b.txt", "sub/d.txt")] == [0o644] * 2
    assert mode_of(ws.dest / "sub") == 0o755 & ~_umask()
    # Symlinks are left alone: chmod would act on their target.
    assert (ws.dest / "sub/link").is_symlink()


def test_folders_only_and_never_the_object_itself(ws: Workspace) -> None:
    permission = Permission(object=str(ws.dest), types=(ObjectType.DIRECTORY,), mode=0o750)
    ws.install_all((permission,))

    assert mode_of(ws.dest) == 0o777 & ~_umask()
    assert mode_of(ws.dest / "sub") == 0o750
    assert mode_of(ws.dest / "sub/deeper") == 0o750
    assert mode_of(ws.dest / "a.sh") == 0o644
    chmods = [i for i in ws.instructions() if i["type"] == "chmod"]
    assert chmods == [
        {"type": "chmod", "mode": "750", "file": f"{ws.dest}/sub"},
        {"type": "chmod", "mode": "750", "file": f"{ws.dest}/sub/deeper"},
    ]


def test_only_paths_this_install_created(ws: Workspace) -> None:
    ws.dest.mkdir()
    (ws.dest / "sub").mkdir()
    (ws.dest / "sub/theirs.txt").write_text("t", encoding="utf-8")
    (ws.dest / "sub/theirs.txt").chmod(0o644)
    permission = Permission(object=str(ws.dest), mode=0o600, types=(ObjectType.FILE,))
    ws.install_all((permission,))

    assert mode_of(ws.dest / "sub/theirs.txt") == 0o644
    assert mode_of(ws.dest / "sub/c.sh") == 0o600


@needs_root
def test_owner_and_group(ws: Workspace) -> None:
    nobody = pwd.getpwnam("nobody")
    daemon_group = grp.getgrnam("daemon")
    owners = Permission(object=str(ws.dest / "sub"), owner="nobody", group="daemon")
    ws.install_all((owners,))

    for relative in ("sub/c.sh", "sub/deeper", "sub/deeper/e.sh"):
        status = (ws.dest / relative).lstat()
        assert (status.st_uid, status.st_gid) == (nobody.pw_uid, daemon_group.gr_gid), relative
    assert (ws.dest / "sub").stat().st_uid == 0  # the object itself
    assert (ws.dest / "a.sh").stat().st_uid == 0
    assert {
        "type": "chown",
        "owner": "nobody",
        "group": "daemon",
        "file": f"{ws.dest}/sub/c.sh",
    } in (ws.instructions())


@needs_root
def test_group_only_records_a_null_owner(ws: Workspace) -> None:
    ws.install_all((Permission(object=str(ws.dest / "sub/deeper"), group="nogroup"),))
    assert (ws.dest / "sub/deeper/e.sh").stat().st_gid == grp.getgrnam("nogroup").gr_gid
    chowns = [i for i in ws.instructions() if i["type"] == "chown"]
    assert chowns == [
        {"type": "chown", "owner": None, "group": "nogroup", "file": f"{ws.dest}/sub/deeper/e.sh"}
    ]


@needs_root
def test_order_per_path_is_mode_acl_owner(ws: Workspace) -> None:
    permission = Permission(
        object=str(ws.dest / "sub/deeper"), mode=0o640, acls=("user:nobody:r--",), owner="root"
    )
    ws.install_all((permission,))
    kinds = [i["type"] for i in ws.instructions() if i.get("file") == f"{ws.dest}/sub/deeper/e.sh"]
    assert kinds == ["chmod", "setfacl", "chown"]


@pytest.mark.parametrize(
    ("owner", "group", "named"),
    [("no-such-user-x", None, "user"), (None, "no-such-group-x", "group")],
)
def test_unknown_owner_refuses_before_copying(
    ws: Workspace, owner: Optional[str], group: Optional[str], named: str
) -> None:
    permission = Permission(object=str(ws.dest), owner=owner, group=group)
    with pytest.raises(InstallError, match=rf"permissions entry 1 .*{named} 'no-such-"):
        ws.install_all((permission,))
    assert not ws.dest.exists()


def test_path_matched_twice_is_refused(ws: Workspace) -> None:
    outer = Permission(object=str(ws.dest), mode=0o700)
    inner = Permission(object=str(ws.dest / "sub"), pattern="*.sh", mode=0o750)
    with pytest.raises(InstallError, match=r"sub/c\.sh is matched by two permissions entries"):
        ws.install_all((outer, inner))
    assert not ws.dest.exists()


def test_disjoint_entries_are_fine(ws: Workspace) -> None:
    shell = Permission(object=str(ws.dest / "sub"), pattern="*.sh", mode=0o700)
    text = Permission(object=str(ws.dest / "sub"), pattern="*.txt", mode=0o600)
    ws.install_all((shell, text))
    assert (mode_of(ws.dest / "sub/c.sh"), mode_of(ws.dest / "sub/d.txt")) == (0o700, 0o600)


def test_relative_object_is_refused(ws: Workspace) -> None:
    with pytest.raises(InstallError, match="object must be an absolute path"):
        ws.install_all((Permission(object="relative/path", mode=0o700),))
    assert not ws.dest.exists()


def test_file_object_takes_the_permission_itself(ws: Workspace) -> None:
    target = ws.base / "bin"
    ws.install(
        (FileMapping("a.sh", str(target)),), (Permission(object=str(target / "a.sh"), mode=0o755),)
    )
    assert mode_of(target / "a.sh") == 0o755


@pytest.mark.parametrize(
    "permission_fields",
    [{"pattern": "*.sh"}, {"excepts": ("*.txt",)}, {"acls": ("d:user:nobody:r--",)}],
)
def test_file_object_rules(ws: Workspace, permission_fields: dict) -> None:  # type: ignore[type-arg]
    target = ws.base / "bin"
    permission = Permission(object=str(target / "a.sh"), mode=0o755, **permission_fields)
    with pytest.raises(InstallError, match="permissions entry 1"):
        ws.install((FileMapping("a.sh", str(target)),), (permission,))
    assert not target.exists()


def test_acls_are_applied(ws: Workspace) -> None:
    files = Permission(
        object=str(ws.dest / "sub"), types=(ObjectType.FILE,), acls=("user:nobody:rw-",)
    )
    folders = Permission(
        object=str(ws.dest),
        pattern="sub",
        types=(ObjectType.DIRECTORY,),
        acls=("group:daemon:r-x", "d:group:daemon:r-x"),
    )
    ws.install_all((files, folders))

    assert "user:nobody:rw-" in _getfacl(ws.dest / "sub/c.sh")
    assert "user:nobody:rw-" in _getfacl(ws.dest / "sub/deeper/e.sh")
    assert "user:nobody" not in _getfacl(ws.dest / "a.sh")
    folder_acl = _getfacl(ws.dest / "sub")
    assert "group:daemon:r-x" in folder_acl and "default:group:daemon:r-x" in folder_acl
    assert {"type": "setfacl", "acl": ["user:nobody:rw-"], "file": f"{ws.dest}/sub/c.sh"} in (
        ws.instructions()
    )


def test_acls_block_keeping_on_the_next_install(ws: Workspace) -> None:
    # r-- keeps the mode bits as they were: only the ACL tells this file from a fresh copy.
    ws.install_all((Permission(object=str(ws.dest), pattern="a.sh", acls=("user:nobody:r--",)),))
    assert mode_of(ws.dest / "a.sh") == 0o644
    result = ws.install_all()
    assert "user:nobody" not in _getfacl(ws.dest / "a.sh")
    assert result.files_copied == 1


def test_permissions_of_the_previous_install_do_not_linger(ws: Workspace) -> None:
    files = Permission(object=str(ws.dest), types=(ObjectType.FILE,), mode=0o600)
    folders = Permission(
        object=str(ws.dest), pattern="sub", types=(ObjectType.DIRECTORY,), mode=0o700
    )
    ws.install_all((files, folders))
    assert (mode_of(ws.dest / "b.txt"), mode_of(ws.dest / "sub")) == (0o600, 0o700)

    ws.install_all()

    assert mode_of(ws.dest / "b.txt") == 0o644
    assert mode_of(ws.dest / "sub/deeper/e.sh") == 0o644
    assert mode_of(ws.dest / "sub") == 0o777 & ~_umask()


def test_missing_setfacl_is_explained(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    permission = Permission(object=str(ws.dest), acls=("user:nobody:r--",))
    with pytest.raises(InstallError, match=r"setfacl is not installed.*install the 'acl' package"):
        ws.install_all((permission,))
    assert not ws.dest.exists()


def test_unknown_acl_user_refuses_before_copying(ws: Workspace) -> None:
    permission = Permission(object=str(ws.dest), acls=("user:no-such-user-x:r--",))
    with pytest.raises(InstallError, match="user 'no-such-user-x' does not exist"):
        ws.install_all((permission,))
    assert not ws.dest.exists()


def test_context_uses_semanage_and_restorecon(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools, calls = tmp_path / "tools", tmp_path / "calls.log"
    write_stub_tool(tools, "semanage", calls)
    write_stub_tool(tools, "restorecon", calls)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    context = SelinuxContext(type="httpd_sys_content_t", name="system_u", range=SelinuxRange("s0"))
    permission = Permission(object=str(ws.dest / "sub/deeper"), context=context)
    ws.install_all((permission,))

    e = f"{ws.dest}/sub/deeper/e.sh"
    assert calls.read_text(encoding="utf-8").splitlines() == [
        f"semanage fcontext -a -t httpd_sys_content_t -s system_u -r s0 {e}",
        f"restorecon -v {e}",
    ]
    assert f"semanage\0{e}" in ws.cleanup_file.read_text(encoding="utf-8").splitlines()
    assert {
        "type": "semanage",
        "context": {"user": "system_u", "role": None, "type": "httpd_sys_content_t", "range": "s0"},
        "file": e,
    } in ws.instructions()

    # The next install removes the rule with the previous revision.
    calls.unlink()
    ws.install_all()
    assert calls.read_text(encoding="utf-8").splitlines() == [f"semanage fcontext -d {e}"]
    assert "semanage\0" not in ws.cleanup_file.read_text(encoding="utf-8")


def test_failing_context_tool_is_reported(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools, calls = tmp_path / "tools", tmp_path / "calls.log"
    write_stub_tool(tools, "semanage", calls, exit_code=1)
    write_stub_tool(tools, "restorecon", calls)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    permission = Permission(object=str(ws.dest / "sub"), context=SelinuxContext(type="bad_t"))
    with pytest.raises(InstallError, match=r"permissions entry 1 .*semanage failed on .*/sub/"):
        ws.install_all((permission,))
    # Recorded before the attempt, so the next install removes the rule if it was added.
    assert "semanage\0" in ws.cleanup_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("present", ["semanage", "restorecon"])
def test_missing_context_tools_are_explained(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, present: str
) -> None:
    tools = tmp_path / "tools"
    write_stub_tool(tools, present, tmp_path / "calls.log")
    monkeypatch.setenv("PATH", str(tools))
    permission = Permission(object=str(ws.dest), context=SelinuxContext(type="httpd_sys_content_t"))
    with pytest.raises(InstallError, match="semanage or restorecon is not installed"):
        ws.install_all((permission,))
    assert not ws.dest.exists()


def test_tools_found_on_path(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # setfacl is looked up on PATH, not at a fixed place.
    tools = tmp_path / "tools"
    link_tools(tools, "setfacl")
    monkeypatch.setenv("PATH", str(tools))
    ws.install_all((Permission(object=str(ws.dest), pattern="a.sh", acls=("user:nobody:r--",)),))
    assert "user:nobody:r--" in _getfacl(ws.dest / "a.sh")


def _getfacl(path: Path) -> str:
    completed = subprocess.run(
        [GETFACL, "--omit-header", "--absolute-names", str(path)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return completed.stdout


def _umask() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    raise AssertionError("no umask")


def test_many_paths_are_handled_in_batches(ws: Workspace) -> None:
    ws.write_revision({f"many/f{n:03d}": str(n) for n in range(600)})
    permission = Permission(object=str(ws.dest / "many"), mode=0o640, acls=("user:nobody:r--",))
    result = ws.install_all((permission,))

    assert result.permission_paths == 600
    setfacls = [i["file"] for i in ws.instructions() if i["type"] == "setfacl"]
    assert len(setfacls) == 600 == len(set(setfacls))
    for name in ("f000", "f255", "f256", "f599"):
        assert "user:nobody:r--" in _getfacl(ws.dest / "many" / name), name
        assert mode_of(ws.dest / "many" / name) & 0o707 == 0o600, name
