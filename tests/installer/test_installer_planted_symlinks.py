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
from typing import Iterator, List, Optional

import pytest

from tests.support import LocalAgent, LocalRun, write_tree

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
