"""An unpack shared by two processes writes exactly what one process writes.

A bundle file of many small members is unpacked by this process and a forked worker when
this process runs a single thread. These tests build bundles with everything that could
tell the two apart (folders with their own modes and times, a folder its owner cannot write
into, links whose targets the other process writes, a path met twice, a file where a folder
was, names that cannot be written) and compare, member by member, the tree one process
makes with the tree two make, or the error each gives. Forks are counted, so a test that
should share and did not fails.
"""

from __future__ import annotations

import os
import stat
import threading
import zlib
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from agent.deployment_specification.model import BundleType
from agent.forked_share import fork_is_safe
from agent.revision import gunzip_feed
from agent.revision import unpack as unpack_module
from agent.revision.errors import BundleError
from agent.revision.unpack import unpack_bundle_to_disk
from tests.support.archives import (
    MTIME,
    Member,
    file,
    folder,
    hardlink,
    make_tar,
    make_zip,
    symlink,
    tree_snapshot,
)
from tests.support.processes import wait_for_one_thread

APPSPEC = b"version: 0.0\nos: linux\n"
_FORKS: List[int] = []
os.register_at_fork(after_in_parent=lambda: _FORKS.append(1))


@pytest.fixture(autouse=True)
def share_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """Share from the eighth member on, whatever the members' sizes."""
    monkeypatch.setattr(unpack_module, "SHARE_AFTER_MEMBERS", 8)
    monkeypatch.setattr(unpack_module, "SMALL_MEMBER_BYTES", 1 << 40)
    monkeypatch.setattr(unpack_module, "PRESCAN_BYTES", 1 << 40)


def _build(path: Path, kind: str, members: List[Member]) -> Path:
    if kind == "zip":
        return make_zip(path.with_suffix(".zip"), members)
    return make_tar(path.with_suffix(f".{kind}"), members, "gz" if kind == "tgz" else "")


Snapshot = Dict[str, Tuple[str, int, int, str]]


def _snapshot(root: Path) -> Snapshot:
    """Every path under ``root``: its kind, mode, mtime and content (or link target); hard
    links show as the first path of their inode."""
    found: Snapshot = {}
    inodes: Dict[int, str] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            found[relative] = ("link", 0, 0, os.readlink(path))
            continue
        mode, mtime = stat.S_IMODE(info.st_mode), int(info.st_mtime)
        if stat.S_ISDIR(info.st_mode):
            found[relative] = ("dir", mode, mtime, "")
        else:
            first = inodes.setdefault(info.st_ino, relative)
            content = path.read_bytes().decode("latin-1")
            found[relative] = ("file", mode, mtime, f"{first}:{content}")
    return found


def _unpack_both(tmp_path: Path, kind: str, members: List[Member]) -> Tuple[Snapshot, Snapshot]:
    """The tree one process makes of ``members``, and the one two make (which must fork)."""
    bundle = _build(tmp_path / "bundle", kind, members)
    trees: List[Snapshot] = []
    for shares in (1, 2):
        unpack_module.MAX_SHARES = shares
        forks = len(_FORKS)
        archive = tmp_path / f"shares-{shares}" / "deployment-archive"
        archive.parent.mkdir()
        unpack_bundle_to_disk(bundle, BundleType(kind), archive)
        assert len(_FORKS) - forks == shares - 1
        trees.append(_snapshot(archive))
    return trees[0], trees[1]


def _errors_of_both(tmp_path: Path, members: List[Member]) -> Tuple[str, str]:
    """The error one process gives for ``members`` (a tar), and the one two give; neither
    leaves anything behind, nor a process."""
    bundle = _build(tmp_path / "bundle", "tar", members)
    # Copies of this process that other tests keep running (their own workers) are not ours.
    before = set(_forked_children())
    errors: List[str] = []
    for shares in (1, 2):
        unpack_module.MAX_SHARES = shares
        deployment = tmp_path / f"shares-{shares}"
        deployment.mkdir()
        with pytest.raises(BundleError) as caught:
            unpack_bundle_to_disk(bundle, BundleType.TAR, deployment / "deployment-archive")
        assert tree_snapshot(deployment) == set()
        errors.append(str(caught.value).replace(str(deployment), "DEPLOYMENT"))
    assert set(_forked_children()) - before == set()  # every worker was stopped and reaped
    return errors[0], errors[1]


def _forked_children() -> List[int]:
    """This process's children that are copies of it (same command line, or ended and not
    reaped with the same name): forked workers. Servers other tests started run other
    programs."""
    own = Path("/proc/self/cmdline").read_bytes()
    own_name = Path("/proc/self/comm").read_text(encoding="utf-8").strip()
    children: List[int] = []
    for task in Path("/proc/self/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    found = []
    for pid in children:
        try:
            name, _, rest = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").partition(") ")
            unreaped = rest.startswith("Z") and name.partition(" (")[2] == own_name
            if unreaped or Path(f"/proc/{pid}/cmdline").read_bytes() == own:
                found.append(pid)
        except OSError:
            continue  # reaped meanwhile
    return found


@pytest.fixture(autouse=True)
def single_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Sharing needs a process that runs one thread: say so rather than test one process twice.
    # (Earlier tests' servers may still be answering their clients: see wait_for_one_thread.)
    wait_for_one_thread()
    assert fork_is_safe(), f"threads running: {threading.enumerate()}"
    monkeypatch.setattr(unpack_module, "MAX_SHARES", 2)
    yield


def _many_files(count: int, folders: int = 10) -> List[Member]:
    members: List[Member] = [file("appspec.yml", APPSPEC)]
    for number in range(folders):
        members.append(folder(f"d{number}", 0o750 + number % 8, mtime=MTIME - 100 * number))
    for number in range(count):
        members.append(
            file(
                f"d{number % folders}/f{number}.txt",
                f"content {number}".encode(),
                0o600 + number % 0o100,
                mtime=MTIME - number,
            )
        )
    return members


def _more_files(prefix: str, count: int = 30) -> List[Member]:
    """Files in folders of their own after the members a test is about, so that both
    processes still have members to write after them."""
    # Folders are members too: a folder made for a file gets the time it was made, which
    # differs from one unpack to the next.
    folders = [folder(f"{prefix}{n}") for n in range(5)]
    return folders + [file(f"{prefix}{n % 5}/g{n}", f"more {n}".encode()) for n in range(count)]


def _name_in_share(share: int, folder_name: str, stem: str) -> str:
    """A member name under ``folder_name`` that the given share writes."""
    # Files go to the share their folder's path hashes to (agent.revision.member_shares).
    assert zlib.crc32(folder_name.encode()) % 2 == share
    return f"{folder_name}/{stem}"


def _folder_of_share(share: int) -> str:
    return next(f"s{n}" for n in range(100) if zlib.crc32(f"s{n}".encode()) % 2 == share)


@pytest.mark.parametrize("kind", ["tar", "tgz", "zip"])
def test_many_files_in_folders_come_out_the_same(tmp_path: Path, kind: str) -> None:
    one, two = _unpack_both(tmp_path, kind, _many_files(300))
    assert one == two
    assert len(one) == 311
    assert one["d3"] == ("dir", 0o753, MTIME - 300, "")


def test_links_whose_targets_the_other_process_writes_come_out_the_same(tmp_path: Path) -> None:
    members = [*_many_files(60), folder("links")]
    for share in (0, 1):
        where = _folder_of_share(share)
        target = _name_in_share(share, where, "target.so")
        members += [folder(where), file(target, f"lib {share}".encode())]
        members += _more_files(f"m{share}-")
        members += [hardlink(f"links/hard{share}", target), symlink(f"links/soft{share}", target)]
    one, two = _unpack_both(tmp_path, "tar", members)
    assert one == two
    assert one["links/hard1"][3].endswith(":lib 1")
    assert one["links/soft0"] == ("link", 0, 0, _name_in_share(0, _folder_of_share(0), "target.so"))


def test_a_folder_its_owner_cannot_write_into_comes_out_the_same(tmp_path: Path) -> None:
    members = _many_files(40)
    members += [folder("locked", 0o555), file("locked/inside.txt", b"x"), *_more_files("m")]
    one, two = _unpack_both(tmp_path, "tgz", members)
    assert one == two
    assert one["locked"][1] == 0o555


def test_a_path_met_twice_keeps_the_last_one_as_one_process_does(tmp_path: Path) -> None:
    members = _many_files(40)
    members += [file("d1/f1.txt", b"second", 0o640), *_more_files("m")]
    one, two = _unpack_both(tmp_path, "tar", members)
    assert one == two
    assert one["d1/f1.txt"] == ("file", 0o640, MTIME, "d1/f1.txt:second")


def test_a_folder_replacing_a_file_comes_out_the_same(tmp_path: Path) -> None:
    members = _many_files(40)
    members += [file("was-a-file", b"x"), *_more_files("m"), file("was-a-file/now", b"y")]
    members += _more_files("n")
    one, two = _unpack_both(tmp_path, "tar", members)
    # The folder made for "now" has the time it was made: another second, maybe.
    made_once, made_twice = one.pop("was-a-file"), two.pop("was-a-file")
    assert made_once[0] == "dir" and made_once[:2] == made_twice[:2]
    assert one == two


def test_a_member_refused_late_gives_the_same_error(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    members = [*_many_files(40), symlink("out", str(outside)), file("out/evil", b"x")]
    members += _more_files("m")
    one, two = _errors_of_both(tmp_path, members)
    assert one == two
    assert "'out/evil'" in one
    assert os.listdir(outside) == []


@pytest.mark.parametrize("share", [0, 1])
def test_a_member_that_cannot_be_written_gives_the_same_error(tmp_path: Path, share: int) -> None:
    # A name longer than any file system allows fails in whichever process writes it.
    where = _folder_of_share(share)
    members = [*_many_files(40), file(_name_in_share(share, where, "x" * 300), b"x")]
    members += _more_files("m")
    one, two = _errors_of_both(tmp_path, members)
    assert one == two
    assert "cannot unpack member" in one and "Can't create" in one


def test_a_bundle_of_big_members_is_not_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small enough for the look before the unpack, too big on average once 8 are read.
    monkeypatch.setattr(unpack_module, "SMALL_MEMBER_BYTES", 1000)
    bundle = _build(
        tmp_path / "bundle",
        "tgz",
        [file(f"f{n}", os.urandom(2000)) for n in range(20)],
    )
    forks = len(_FORKS)
    unpack_bundle_to_disk(bundle, BundleType.TGZ, tmp_path / "deployment-archive")
    assert len(_FORKS) == forks
    assert len(os.listdir(tmp_path / "deployment-archive")) == 20


def test_a_process_running_threads_unpacks_alone(tmp_path: Path) -> None:
    bundle = _build(tmp_path / "bundle", "tar", _many_files(100))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        forks = len(_FORKS)
        unpack_bundle_to_disk(bundle, BundleType.TAR, tmp_path / "deployment-archive")
        assert len(_FORKS) == forks
    finally:
        stop.set()
        other.join()
    assert len(_snapshot(tmp_path / "deployment-archive")) == 111


def test_a_large_tgz_of_big_members_is_inflated_by_a_thread_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unpack_module, "SMALL_MEMBER_BYTES", 1000)
    monkeypatch.setattr(unpack_module, "PRESCAN_BYTES", 8000)
    monkeypatch.setattr(gunzip_feed, "FEED_MIN_BYTES", 0)
    started: List[int] = []

    class CountedFeed(gunzip_feed.GunzipFeed):
        def start(self) -> int:
            started.append(1)
            return super().start()

    monkeypatch.setattr(unpack_module, "GunzipFeed", CountedFeed)
    payloads = {f"f{n}": os.urandom(2000) for n in range(20)}
    members = [file(name, data) for name, data in payloads.items()]
    bundle = _build(tmp_path / "bundle", "tgz", members)
    forks = len(_FORKS)
    unpack_bundle_to_disk(bundle, BundleType.TGZ, tmp_path / "deployment-archive")
    assert (len(_FORKS) - forks, len(started)) == (0, 1)
    for name, data in payloads.items():
        assert (tmp_path / "deployment-archive" / name).read_bytes() == data
