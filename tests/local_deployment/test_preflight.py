"""A local revision that would fail the deployment is refused before ApplicationStop.

Each test deploys a first revision whose ApplicationStop script leaves a marker file,
then a second, broken revision on the same group: it must be refused in one line with
exit status 2 before any command runs, so the marker never appears (the running
application was not stopped) and no deployment folder is left. A local archive is
unpacked once, by the DownloadBundle carried out before ApplicationStop: it is read once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

from tests.support.archives import make_bundle, write_tree
from tests.support.local_agent import LocalAgent, LocalRun

HOOKS = ("ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService")


def _revision(where: Path, marker: Path, hooks: Dict[str, str]) -> Path:
    """A revision whose every script appends its event to ``marker`` when it runs; the
    keys of ``hooks`` are events, the values the script locations."""
    lines = "".join(
        f"  {event}:\n    - location: {location}\n" for event, location in hooks.items()
    )
    files = {"appspec.yml": f"version: 0.0\nos: linux\nhooks:\n{lines}"}
    for location in set(hooks.values()):
        files[location] = f'#!/bin/sh\necho "$LIFECYCLE_EVENT" >> {marker}\n'
    return write_tree(where, files)


def _good(where: Path, marker: Path) -> Path:
    return _revision(where, marker, {event: f"hooks/{event}.sh" for event in HOOKS})


def _deploy(agent: LocalAgent, location: Path, kind: str, *extra: str) -> LocalRun:
    return agent.run("--bundle-location", str(location), "--type", kind, *extra)


@pytest.fixture
def deployed(local_agent: LocalAgent, tmp_path: Path) -> Path:
    """A first deployment on the group; returns the marker its scripts write to."""
    marker = tmp_path / "ran.log"
    first = _deploy(local_agent, _good(tmp_path / "v1", marker), "directory")
    assert first.returncode == 0, first.stderr
    marker.unlink()
    return marker


def _refused(agent: LocalAgent, marker: Path, result: LocalRun, *expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # not even "Starting to execute deployment ..."
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("codedeploy-local: "), result.stderr
    for text in expected:
        assert text in lines[0]
    assert not marker.exists()  # the first revision's ApplicationStop did not run
    group = agent.root / "default-local-deployment-group"
    assert len(list(group.iterdir())) == 1


def _zip_of(source: Path, tmp_path: Path) -> Path:
    return make_bundle(source, tmp_path / "bundle.zip", "zip")


def _tgz_of(source: Path, tmp_path: Path) -> Path:
    return make_bundle(source, tmp_path / "bundle.tgz", "tgz")


@pytest.mark.parametrize(
    ("declared", "pack", "found"),
    [
        ("tgz", _zip_of, "is a zip archive, but the revision says its bundle type is tgz"),
        ("tar", _zip_of, "is a zip archive, but the revision says its bundle type is tar"),
        ("zip", _tgz_of, "is a tar archive compressed with gzip, but the revision says"),
    ],
)
def test_an_archive_of_another_type_is_refused_before_application_stop(
    local_agent: LocalAgent,
    deployed: Path,
    tmp_path: Path,
    declared: str,
    pack: Callable[[Path, Path], Path],
    found: str,
) -> None:
    bundle = pack(_good(tmp_path / "v2", deployed), tmp_path)
    result = _deploy(local_agent, bundle, declared)
    _refused(local_agent, deployed, result, str(bundle), found)


def test_a_truncated_archive_is_refused_before_application_stop(
    local_agent: LocalAgent, deployed: Path, tmp_path: Path
) -> None:
    source = _good(tmp_path / "v2", deployed)
    # Random bytes do not compress: the cut falls inside this member, after the appspec.
    (source / "zz-data.bin").write_bytes(os.urandom(300_000))
    whole = _tgz_of(source, tmp_path).read_bytes()
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(whole[: len(whole) * 2 // 3])
    result = _deploy(local_agent, truncated, "tgz")
    _refused(local_agent, deployed, result, str(truncated), "truncated or corrupt")


@pytest.mark.parametrize("kind", ["directory", "tgz", "zip"])
def test_a_missing_script_of_any_event_that_runs_is_refused(
    local_agent: LocalAgent, deployed: Path, tmp_path: Path, kind: str
) -> None:
    source = _good(tmp_path / "v2", deployed)
    (source / "hooks" / "ValidateService.sh").unlink()
    location = source if kind == "directory" else make_bundle(source, tmp_path / f"b.{kind}", kind)
    result = _deploy(local_agent, location, kind)
    _refused(
        local_agent,
        deployed,
        result,
        "hooks.ValidateService: Script does not exist at specified location:"
        " hooks/ValidateService.sh",
    )


def _link_outside(source: Path) -> None:
    script = source / "hooks" / "ApplicationStart.sh"
    script.unlink()
    script.symlink_to("/bin/true")


def _link_climbing_out(source: Path) -> None:
    (source / "hooks").rename(source / "real")
    (source / "hooks").symlink_to("../elsewhere")


def _folder_instead(source: Path) -> None:
    script = source / "hooks" / "ApplicationStart.sh"
    script.unlink()
    script.mkdir()
    (script / "inside.txt").write_text("x")


@pytest.mark.parametrize("kind", ["directory", "tar"])
@pytest.mark.parametrize(
    ("damage", "found"),
    [
        (
            _link_outside,
            "ApplicationStart: Script location hooks/ApplicationStart.sh leads outside",
        ),
        (_link_climbing_out, "Script location hooks/BeforeInstall.sh leads outside the revision"),
        (_folder_instead, "Script at specified location: hooks/ApplicationStart.sh is not a file"),
    ],
)
def test_a_script_that_is_not_a_file_of_the_revision_is_refused(
    local_agent: LocalAgent,
    deployed: Path,
    tmp_path: Path,
    kind: str,
    damage: Callable[[Path], None],
    found: str,
) -> None:
    source = _good(tmp_path / "v2", deployed)
    damage(source)
    location = source
    if kind == "tar":
        location = tmp_path / "b.tar"
        with tarfile.open(location, "w") as archive:
            for path in sorted(source.rglob("*")):
                archive.add(path, arcname=str(path.relative_to(source)), recursive=False)
    result = _deploy(local_agent, location, kind)
    _refused(local_agent, deployed, result, found)


def test_a_script_for_a_user_this_host_lacks_is_refused(
    local_agent: LocalAgent, deployed: Path, tmp_path: Path
) -> None:
    source = _good(tmp_path / "v2", deployed)
    appspec = source / "appspec.yml"
    appspec.write_text(
        appspec.read_text()
        + "  AfterInstall:\n    - location: hooks/ApplicationStart.sh\n      runas: no-such-user-h6\n"
    )
    result = _deploy(local_agent, source, "directory")
    _refused(local_agent, deployed, result, "hooks.AfterInstall:", "no-such-user-h6")


def test_only_the_scripts_this_run_takes_from_the_new_revision_are_checked(
    local_agent: LocalAgent, deployed: Path, tmp_path: Path
) -> None:
    # The new revision lacks its own ApplicationStop and ApplicationStart scripts: the
    # first runs the previous revision's script, the second is not in --events.
    source = _good(tmp_path / "v2", deployed)
    (source / "hooks" / "ApplicationStop.sh").unlink()
    (source / "hooks" / "ApplicationStart.sh").unlink()
    bundle = make_bundle(source, tmp_path / "b.zip", "zip")
    result = _deploy(
        local_agent, bundle, "zip", "--events", "ApplicationStop,DownloadBundle,ValidateService"
    )
    assert result.returncode == 0, result.stderr
    assert deployed.read_text().split() == ["ApplicationStop", "ValidateService"]


def test_scripts_reached_through_links_inside_the_revision_are_accepted(
    local_agent: LocalAgent, deployed: Path, tmp_path: Path
) -> None:
    source = _good(tmp_path / "v2", deployed)
    shutil.move(source / "hooks", source / "scripts")
    (source / "hooks").symlink_to("scripts")
    start = source / "scripts" / "ApplicationStart.sh"
    start.rename(source / "scripts" / "real-start.sh")
    start.symlink_to("../hooks/./real-start.sh")
    bundle = make_bundle(source, tmp_path / "b.tgz", "tgz")
    result = _deploy(local_agent, bundle, "tgz")
    assert result.returncode == 0, result.stderr
    ran: List[str] = deployed.read_text().split()
    assert ran == ["ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService"]


def test_a_zip_member_the_unpacker_refuses_is_refused_before_application_stop(
    local_agent: LocalAgent, deployed: Path, tmp_path: Path
) -> None:
    bundle = _zip_of(_good(tmp_path / "v2", deployed), tmp_path)
    with zipfile.ZipFile(bundle, "a") as archive:
        archive.writestr("/etc/planted.txt", "owned")
    result = _deploy(local_agent, bundle, "zip")
    _refused(local_agent, deployed, result, "'/etc/planted.txt' has an absolute path")


# inotify(7): the events of one watched file.
_IN_ACCESS, _IN_CLOSE_WRITE, _IN_CLOSE_NOWRITE, _IN_OPEN = 0x1, 0x8, 0x10, 0x20
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


@contextlib.contextmanager
def _opens_that_read(path: Path) -> Iterator[List[bool]]:
    """Watch the file ``path`` (its inode, whatever name it is opened by) while the block
    runs; the list then holds, for each time the file was opened and closed again,
    whether anything was read from it in between."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    sessions: List[bool] = []
    try:
        mask = _IN_ACCESS | _IN_OPEN | _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE
        assert libc.inotify_add_watch(fd, os.fsencode(path), mask) >= 0
        yield sessions
        data = b""
        with contextlib.suppress(BlockingIOError):
            while True:
                data += os.read(fd, 1 << 16)
        read_since_open = False
        offset = 0
        while offset < len(data):
            _wd, event, _cookie, length = _EVENT_HEADER.unpack_from(data, offset)
            offset += _EVENT_HEADER.size + length
            if event & _IN_OPEN:
                read_since_open = False
            if event & _IN_ACCESS:
                read_since_open = True
            if event & (_IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE):
                sessions.append(read_since_open)
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["tgz", "zip"])
def test_a_local_archive_is_read_once(
    local_agent: LocalAgent, deployed: Path, tmp_path: Path, kind: str
) -> None:
    bundle = make_bundle(_good(tmp_path / "v2", deployed), tmp_path / f"b.{kind}", kind)
    with _opens_that_read(bundle) as sessions:
        result = _deploy(local_agent, bundle, kind)
    assert result.returncode == 0, result.stderr
    assert deployed.read_text().split() == list(HOOKS)
    # Opened more than once (looked at, then hard-linked or copied, and unpacked), but
    # its bytes were read during one of those opens only.
    assert sessions.count(True) == 1, sessions
    assert "DownloadBundle was carried out before the first command" in result.stderr


@pytest.mark.parametrize("kind", ["directory", "tgz"])
def test_events_written_before_download_bundle_run_nothing_of_the_new_revision(
    local_agent: LocalAgent, deployed: Path, tmp_path: Path, kind: str
) -> None:
    hooks = {event: f"hooks/{event}.sh" for event in HOOKS}
    hooks["SmokeTest"] = "hooks/SmokeTest.sh"
    source = _revision(tmp_path / "v2", deployed, hooks)
    location = source if kind == "directory" else make_bundle(source, tmp_path / "b.tgz", kind)
    result = _deploy(
        local_agent,
        location,
        kind,
        "--events",
        "SmokeTest,BeforeInstall,DownloadBundle,Install,SmokeTest,ValidateService",
    )
    assert result.returncode == 0, result.stderr
    # Before DownloadBundle the new revision provides no script, unpacked early or not.
    assert deployed.read_text().split() == ["SmokeTest", "ValidateService"]


def test_a_refused_archive_prunes_none_of_the_groups_folders(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    # With max_revisions 2, a third deployment that got as far as DownloadBundle would
    # remove the oldest folder; one refused in the pre-flight must leave both in place.
    local_agent.config.write_text(
        local_agent.config.read_text(encoding="utf-8") + ":max_revisions: 2\n", encoding="utf-8"
    )
    marker = tmp_path / "ran.log"
    for number in (1, 2):
        run = _deploy(local_agent, _good(tmp_path / f"v{number}", marker), "directory")
        assert run.returncode == 0, run.stderr
    group = local_agent.root / "default-local-deployment-group"
    before = sorted(path.name for path in group.iterdir())
    assert len(before) == 2
    marker.unlink()
    source = _good(tmp_path / "v3", marker)
    (source / "hooks" / "ValidateService.sh").unlink()
    result = _deploy(local_agent, _tgz_of(source, tmp_path), "tgz")
    assert result.returncode == 2, result.stderr
    assert not marker.exists()
    assert sorted(path.name for path in group.iterdir()) == before
