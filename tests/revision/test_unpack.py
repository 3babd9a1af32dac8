"""unpack_bundle_to_disk: real tar, tgz and zip bundles in, deployment-archive/ out.

Good bundles keep their modes, mtimes and symlinks; a single top-level folder holding the
appspec becomes the root. Every hostile or broken bundle gives a BundleError and leaves
the deployment folder exactly as it was. Every test runs three times: a tgz inflated by
libarchive itself, as a small one is, and inflated by a thread of its own, as a large one
is in the daemon, both in one process; and the unpack shared by two processes, as a bundle
of many small members is in a program that runs a single thread.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable, List

import pytest

from agent.deployment_specification.model import BundleType
from agent.revision import gunzip_feed
from agent.revision import unpack as unpack_module
from agent.revision.errors import BundleError
from agent.revision.unpack import UnpackPolicy, unpack_bundle_to_disk
from tests.support.archives import (
    MTIME,
    Member,
    file,
    folder,
    hardlink,
    make_tar,
    make_zip,
    special,
    symlink,
    tree_snapshot,
)
from tests.support.tmpfs import mounted_tmpfs

APPSPEC = b"version: 0.0\nos: linux\n"

# (bundle type, how to build it)
Builder = Callable[[Path, List[Member]], Path]
KINDS = {
    "tar": lambda path, members: make_tar(path, members),
    "tgz": lambda path, members: make_tar(path, members, "gz"),
    "zip": make_zip,
}


@pytest.fixture(
    autouse=True, params=["inflated by libarchive", "inflated apart", "shared by two processes"]
)
def inflation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which way a bundle is read: a tgz inflated apart, whatever its size (in one process,
    as the daemon does), or the unpack shared with a forked worker from the second member on,
    whatever the members' sizes (see tests/revision/test_unpack_shared.py)."""
    if request.param == "inflated apart":
        monkeypatch.setattr(gunzip_feed, "FEED_MIN_BYTES", 0)
        monkeypatch.setattr(unpack_module, "MAX_SHARES", 1)
    elif request.param == "shared by two processes":
        monkeypatch.setattr(unpack_module, "SHARE_AFTER_MEMBERS", 1)
        monkeypatch.setattr(unpack_module, "SMALL_MEMBER_BYTES", 1 << 40)
        monkeypatch.setattr(unpack_module, "PRESCAN_BYTES", 1 << 40)
    else:
        monkeypatch.setattr(unpack_module, "MAX_SHARES", 1)
    return str(request.param)


def build(kind: str, deployment: Path, members: List[Member]) -> Path:
    # The bundle sits outside the deployment folder, so that folder starts empty.
    bundle = deployment.parent / f"bundle-{kind}.{kind}"
    return KINDS[kind](bundle, members)


def unpack(bundle: Path, kind: str, deployment: Path, **options: object) -> Path:
    archive = deployment / "deployment-archive"
    unpack_bundle_to_disk(bundle, BundleType(kind), archive, **options)  # type: ignore[arg-type]
    return archive


def refused(bundle: Path, kind: str, deployment: Path, **options: object) -> BundleError:
    """Unpack must fail with a one-line BundleError and leave the deployment folder as it was."""
    before = tree_snapshot(deployment)
    with pytest.raises(BundleError) as caught:
        unpack(bundle, kind, deployment, **options)
    assert tree_snapshot(deployment) == before
    assert "\n" not in str(caught.value)
    return caught.value


# --- good bundles -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_bundle_keeps_contents_modes_mtimes_and_symlinks(kind: str, deployment: Path) -> None:
    bundle = build(
        kind,
        deployment,
        [
            file("appspec.yml", APPSPEC),
            folder("scripts", 0o750, mtime=MTIME - 1000),
            file("scripts/start.sh", b"#!/bin/sh\necho hi\n", 0o755),
            file("config/app.conf", b"secret=1\n", 0o640),
            folder("empty", 0o700),
            symlink("current", "config/app.conf"),
            symlink("elsewhere", "/opt/somewhere/else"),
        ],
    )
    archive = unpack(bundle, kind, deployment)

    assert (archive / "appspec.yml").read_bytes() == APPSPEC
    start = archive / "scripts" / "start.sh"
    assert stat.S_IMODE(start.stat().st_mode) == 0o755
    assert os.access(start, os.X_OK)
    conf = archive / "config" / "app.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert conf.stat().st_mtime == MTIME
    scripts = archive / "scripts"
    assert stat.S_IMODE(scripts.stat().st_mode) == 0o750
    assert scripts.stat().st_mtime == MTIME - 1000
    assert stat.S_IMODE((archive / "empty").stat().st_mode) == 0o700
    assert os.readlink(archive / "current") == "config/app.conf"
    assert os.readlink(archive / "elsewhere") == "/opt/somewhere/else"
    assert (archive / "current").read_bytes() == b"secret=1\n"
    # The folder the revision lives in is reachable by hooks that run as other users.
    assert stat.S_IMODE(archive.stat().st_mode) == 0o755
    assert os.listdir(deployment) == ["deployment-archive"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_large_members_arrive_intact(kind: str, deployment: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    bundle = build(kind, deployment, [file("appspec.yml", APPSPEC), file("blob.bin", payload)])
    archive = unpack(bundle, kind, deployment)
    digest = hashlib.sha256((archive / "blob.bin").read_bytes()).hexdigest()
    assert digest == hashlib.sha256(payload).hexdigest()


def test_hard_links_inside_the_bundle_are_kept(deployment: Path) -> None:
    bundle = build(
        "tar",
        deployment,
        [file("appspec.yml", APPSPEC), file("lib/a.so", b"elf"), hardlink("lib/b.so", "lib/a.so")],
    )
    archive = unpack(bundle, "tar", deployment)
    first, second = (archive / "lib" / "a.so").stat(), (archive / "lib" / "b.so").stat()
    assert (first.st_ino, first.st_nlink) == (second.st_ino, 2)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_names_are_kept_byte_for_byte(kind: str, deployment: Path) -> None:
    bundle = build(kind, deployment, [file("appspec.yml", APPSPEC), file("données/été.txt", b"x")])
    archive = unpack(bundle, kind, deployment)
    assert (archive / "données" / "été.txt").read_bytes() == b"x"


def test_a_tar_made_from_dot_unpacks_at_the_root(deployment: Path) -> None:
    bundle = build(
        "tgz",
        deployment,
        [folder("./", 0o700), file("./appspec.yml", APPSPEC), file("./scripts/run.sh", b"", 0o755)],
    )
    archive = unpack(bundle, "tgz", deployment)
    assert sorted(os.listdir(archive)) == ["appspec.yml", "scripts"]
    # The archive's "./" does not lock hooks that run as other users out of the revision.
    assert stat.S_IMODE(archive.stat().st_mode) == 0o755


def test_a_gzipped_tar_declared_tar_is_accepted(deployment: Path) -> None:
    # GitHub tarballs are gzipped and come with the bundle type tar; GNU tar takes them.
    bundle = build("tgz", deployment, [file("appspec.yml", APPSPEC)])
    assert (unpack(bundle, "tar", deployment) / "appspec.yml").exists()


def test_a_stale_archive_folder_is_replaced(deployment: Path) -> None:
    stale = deployment / "deployment-archive"
    (stale / "old").mkdir(parents=True)
    (stale / "old" / "left-over.txt").write_text("stale", encoding="utf-8")
    bundle = build("tgz", deployment, [file("appspec.yml", APPSPEC)])
    archive = unpack(bundle, "tgz", deployment)
    assert os.listdir(archive) == ["appspec.yml"]


def test_an_empty_tar_gives_an_empty_archive_folder(deployment: Path) -> None:
    bundle = build("tar", deployment, [])
    assert os.listdir(unpack(bundle, "tar", deployment)) == []


# --- the single top-level folder ----------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_single_top_level_folder_with_the_appspec_becomes_the_root(
    kind: str, deployment: Path
) -> None:
    bundle = build(
        kind,
        deployment,
        [
            folder("my-app-1.2"),
            file("my-app-1.2/appspec.yml", APPSPEC),
            file("my-app-1.2/scripts/start.sh", b"#!/bin/sh\n", 0o755),
        ],
    )
    archive = unpack(bundle, kind, deployment)
    assert sorted(os.listdir(archive)) == ["appspec.yml", "scripts"]
    assert stat.S_IMODE((archive / "scripts" / "start.sh").stat().st_mode) == 0o755
    assert os.listdir(deployment) == ["deployment-archive"]


def test_the_appspec_yaml_fallback_also_marks_the_root(deployment: Path) -> None:
    bundle = build("zip", deployment, [file("app/appspec.yaml", APPSPEC), file("app/x", b"")])
    assert sorted(os.listdir(unpack(bundle, "zip", deployment))) == ["appspec.yaml", "x"]


def test_a_custom_appspec_name_marks_the_root(deployment: Path) -> None:
    bundle = build("tar", deployment, [file("app/deploy.yml", APPSPEC), file("app/x", b"")])
    archive = unpack(bundle, "tar", deployment, appspec_filename="deploy.yml")
    assert sorted(os.listdir(archive)) == ["deploy.yml", "x"]


def test_appspec_yaml_does_not_mark_the_root_for_a_custom_name(deployment: Path) -> None:
    bundle = build("tar", deployment, [file("app/appspec.yaml", APPSPEC)])
    archive = unpack(bundle, "tar", deployment, appspec_filename="deploy.yml")
    assert os.listdir(archive) == ["app"]


def test_a_top_level_folder_without_the_appspec_stays(deployment: Path) -> None:
    bundle = build("tgz", deployment, [file("app/readme.txt", b"hello")])
    assert os.listdir(unpack(bundle, "tgz", deployment)) == ["app"]


def test_two_top_level_entries_stay(deployment: Path) -> None:
    bundle = build("tgz", deployment, [file("app/appspec.yml", APPSPEC), file("notes.txt", b"x")])
    assert sorted(os.listdir(unpack(bundle, "tgz", deployment))) == ["app", "notes.txt"]


def test_a_top_level_symlink_to_a_folder_is_not_made_the_root(deployment: Path) -> None:
    outside = deployment.parent / "outside"
    outside.mkdir()
    (outside / "appspec.yml").write_bytes(APPSPEC)
    bundle = build("tar", deployment, [symlink("app", str(outside))])
    archive = unpack(bundle, "tar", deployment)
    assert os.listdir(archive) == ["app"]
    assert (archive / "app").is_symlink()


# --- hostile bundles ----------------------------------------------------------------------


def test_zip_member_climbing_out_with_dotdot_is_refused(deployment: Path) -> None:
    bundle = build("zip", deployment, [file("appspec.yml", APPSPEC), file("../../evil", b"x")])
    error = refused(bundle, "zip", deployment)
    assert "'../../evil'" in str(error) and str(bundle) in str(error)
    assert not (deployment.parent.parent / "evil").exists()
    assert not (deployment / "evil").exists()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_absolute_member_is_refused(kind: str, deployment: Path, tmp_path: Path) -> None:
    target = tmp_path / "absolute-evil"
    bundle = build(kind, deployment, [file("appspec.yml", APPSPEC), file(str(target), b"x")])
    error = refused(bundle, kind, deployment)
    assert "absolute path" in str(error)
    assert not target.exists()


def test_dotdot_in_the_middle_of_a_tar_name_is_refused(deployment: Path) -> None:
    bundle = build("tgz", deployment, [file("a/../../../escaped", b"x")])
    refused(bundle, "tgz", deployment)
    assert not (deployment.parent / "escaped").exists()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_writing_through_a_symlink_that_points_out_is_refused(
    kind: str, deployment: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    bundle = build(
        kind,
        deployment,
        [file("appspec.yml", APPSPEC), symlink("link", str(outside)), file("link/evil", b"x")],
    )
    error = refused(bundle, kind, deployment)
    assert "'link/evil'" in str(error) and "'link'" in str(error)
    assert os.listdir(outside) == []


def test_writing_through_a_relative_symlink_that_points_out_is_refused(
    deployment: Path,
) -> None:
    bundle = build(
        "tar",
        deployment,
        [symlink("up", "../.."), folder("up/planted"), file("up/planted/evil", b"x")],
    )
    refused(bundle, "tar", deployment)
    assert not (deployment.parent / "planted").exists()


def test_a_file_replacing_a_symlink_does_not_write_to_its_target(
    deployment: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original", encoding="utf-8")
    bundle = build(
        "tar",
        deployment,
        [symlink("config", str(victim)), file("config", b"overwritten")],
    )
    archive = unpack(bundle, "tar", deployment)
    assert victim.read_text(encoding="utf-8") == "original"
    assert not (archive / "config").is_symlink()
    assert (archive / "config").read_bytes() == b"overwritten"


@pytest.mark.parametrize("target", ["/etc/passwd", "../x", "a/../../x"])
def test_hard_link_out_of_the_bundle_is_refused(target: str, deployment: Path) -> None:
    bundle = build("tar", deployment, [file("appspec.yml", APPSPEC), hardlink("h", target)])
    error = refused(bundle, "tar", deployment)
    assert "hard link" in str(error)


def test_hard_link_through_a_symlink_is_refused(deployment: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("s", encoding="utf-8")
    bundle = build(
        "tar", deployment, [symlink("link", str(outside)), hardlink("grab", "link/secret")]
    )
    refused(bundle, "tar", deployment)
    assert secret.stat().st_nlink == 1


@pytest.mark.parametrize("kind", ["chardev", "blockdev", "fifo"])
def test_special_files_are_refused(kind: str, deployment: Path) -> None:
    bundle = build("tgz", deployment, [file("appspec.yml", APPSPEC), special("dev/thing", kind)])
    error = refused(bundle, "tgz", deployment)
    assert "'dev/thing'" in str(error)


def test_a_member_name_with_a_newline_gives_a_one_line_message(deployment: Path) -> None:
    bundle = build("tar", deployment, [file("line\nbreak/../../x", b"x")])
    assert "\\n" in str(refused(bundle, "tar", deployment))


# --- policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reject_symlinks_policy(kind: str, deployment: Path) -> None:
    members = [file("appspec.yml", APPSPEC), symlink("current", "appspec.yml")]
    bundle = build(kind, deployment, members)
    error = refused(bundle, kind, deployment, policy=UnpackPolicy(reject_symlinks=True))
    assert "reject_symlinks_in_bundle" in str(error)
    assert (unpack(bundle, kind, deployment) / "current").is_symlink()


@pytest.mark.parametrize(
    ("member", "word"),
    [
        (file("bin/tool", b"x", 0o4755), "setuid"),
        (file("bin/tool", b"x", 0o2755), "setgid"),
        (file("data/shared", b"x", 0o666), "world-writable"),
        (folder("tmp", 0o1777), "world-writable"),
    ],
)
def test_reject_unsafe_permissions_policy(member: Member, word: str, deployment: Path) -> None:
    bundle = build("tgz", deployment, [file("appspec.yml", APPSPEC), member])
    policy = UnpackPolicy(reject_unsafe_permissions=True)
    error = refused(bundle, "tgz", deployment, policy=policy)
    assert word in str(error) and "reject_unsafe_permissions_in_bundle" in str(error)
    # Without the policy the same bundle unpacks.
    assert (unpack(bundle, "tgz", deployment) / member.name).exists()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_max_extraction_size_policy(kind: str, deployment: Path) -> None:
    members = [file("appspec.yml", b"x" * 100), file("data.bin", b"y" * 900)]
    bundle = build(kind, deployment, members)
    error = refused(bundle, kind, deployment, policy=UnpackPolicy(max_extraction_size=999))
    assert "archive_max_extraction_size" in str(error) and "'data.bin'" in str(error)
    archive = unpack(bundle, kind, deployment, policy=UnpackPolicy(max_extraction_size=1000))
    assert (archive / "data.bin").stat().st_size == 900


def _zip_with_unknown_sizes(path: Path, payload: bytes) -> Path:
    """A zip whose members declare no size (streamed, with data descriptors) and whose
    end record is damaged, so that it can only be read as a stream."""

    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, chunk: bytes) -> int:  # type: ignore[override]
            self.data += chunk
            return len(chunk)

    stream = Unseekable()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("appspec.yml", "w") as member:
            member.write(APPSPEC)
        with archive.open("data.bin", "w") as member:
            member.write(payload)
    raw = stream.data
    end = raw.rfind(b"PK\x05\x06")
    raw[end + 3] = 0x07
    path.write_bytes(bytes(raw))
    return path


def test_max_extraction_size_counts_bytes_of_members_without_a_declared_size(
    deployment: Path,
) -> None:
    payload = os.urandom(300_000)
    bundle = _zip_with_unknown_sizes(deployment.parent / "streamed.zip", payload)
    error = refused(bundle, "zip", deployment, policy=UnpackPolicy(max_extraction_size=100_000))
    assert "archive_max_extraction_size" in str(error)
    archive = unpack(bundle, "zip", deployment, policy=UnpackPolicy(max_extraction_size=10**6))
    assert (archive / "data.bin").read_bytes() == payload


def test_a_zip_member_larger_than_it_declares_is_refused(deployment: Path) -> None:
    bundle = build("zip", deployment, [file("big.txt", b"A" * 100_000)])
    raw = bytearray(bundle.read_bytes())
    # Claim 10 bytes, in the local header and in the central directory.
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    raw[local + 22 : local + 26] = (10).to_bytes(4, "little")
    raw[central + 24 : central + 28] = (10).to_bytes(4, "little")
    bundle.write_bytes(bytes(raw))
    refused(bundle, "zip", deployment)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_archive_owners_are_applied_only_when_asked(deployment: Path) -> None:
    member = Member("owned.txt", "file", b"x", 0o644, uid=4242, gid=4343)
    bundle = build("tar", deployment, [member])
    default = unpack(bundle, "tar", deployment) / "owned.txt"
    assert (default.stat().st_uid, default.stat().st_gid) == (os.geteuid(), os.getegid())
    applied = unpack(bundle, "tar", deployment, policy=UnpackPolicy(apply_ownership=True))
    owned = (applied / "owned.txt").stat()
    assert (owned.st_uid, owned.st_gid) == (4242, 4343)


# --- broken bundles -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_truncated_bundle_is_refused(kind: str, deployment: Path) -> None:
    bundle = build(kind, deployment, [file("appspec.yml", APPSPEC), file("d", os.urandom(200_000))])
    data = bundle.read_bytes()
    bundle.write_bytes(data[: len(data) // 2])
    error = refused(bundle, kind, deployment)
    assert str(bundle) in str(error)


def _tar_of_three_files(deployment: Path) -> bytes:
    members = [file("appspec.yml", APPSPEC), file("a.bin", os.urandom(5000)), file("b.txt", b"b")]
    return make_tar(deployment.parent / "three.tar", members).read_bytes()


def test_a_tgz_cut_where_its_tar_stream_looks_whole_is_refused(deployment: Path) -> None:
    plain = _tar_of_three_files(deployment)
    with tarfile.open(fileobj=io.BytesIO(plain)) as archive:
        last = archive.getmembers()[-1]
    # The tar stream up to the last member's header, then the gzip data simply stops: no
    # end of the deflate stream, no CRC, no size. The members before it look complete.
    deflate = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    cut = deflate.compress(plain[: last.offset]) + deflate.flush(zlib.Z_SYNC_FLUSH)
    bundle = deployment.parent / "cut.tgz"
    bundle.write_bytes(cut)
    error = refused(bundle, "tgz", deployment)
    assert str(bundle) in str(error) and "truncated" in str(error)


def test_gzip_members_one_after_the_other_are_one_bundle(deployment: Path) -> None:
    plain = _tar_of_three_files(deployment)
    bundle = deployment.parent / "two-members.tgz"
    bundle.write_bytes(gzip.compress(plain[:3000]) + gzip.compress(plain[3000:]))
    archive = unpack(bundle, "tgz", deployment)
    assert sorted(os.listdir(archive)) == ["a.bin", "appspec.yml", "b.txt"]
    assert (archive / "b.txt").read_bytes() == b"b"


@pytest.mark.parametrize(
    "trailer", [bytes(1024), b"not gzip" * 10, b"\x1f\x8bXXXXXXXXXXXX", b"\x1f"]
)
def test_bytes_after_the_last_gzip_member_are_ignored(trailer: bytes, deployment: Path) -> None:
    bundle = deployment.parent / "trailer.tgz"
    bundle.write_bytes(gzip.compress(_tar_of_three_files(deployment)) + trailer)
    archive = unpack(bundle, "tgz", deployment)
    assert sorted(os.listdir(archive)) == ["a.bin", "appspec.yml", "b.txt"]


def test_a_large_tgz_is_inflated_apart_and_arrives_intact(deployment: Path) -> None:
    payload = os.urandom(3 << 20)  # does not compress: the tgz is over the threshold
    bundle = build("tgz", deployment, [file("appspec.yml", APPSPEC), file("data.bin", payload)])
    with bundle.open("rb") as opened:
        assert gunzip_feed.inflating_apart_pays(opened.fileno())
    archive = unpack(bundle, "tgz", deployment)
    assert (archive / "data.bin").read_bytes() == payload


def test_garbage_is_refused_with_what_libarchive_said(deployment: Path) -> None:
    bundle = deployment.parent / "garbage.tgz"
    bundle.write_bytes(b"this is not an archive at all" * 100)
    error = refused(bundle, "tgz", deployment)
    assert str(bundle) in str(error) and "Unrecognized archive format" in str(error)


def test_an_empty_file_is_refused(deployment: Path) -> None:
    bundle = deployment.parent / "empty.zip"
    bundle.write_bytes(b"")
    assert "empty" in str(refused(bundle, "zip", deployment))


def test_a_missing_bundle_is_refused(deployment: Path) -> None:
    bundle = deployment / "bundle.tar"
    assert str(bundle) in str(refused(bundle, "tar", deployment))


@pytest.mark.parametrize(
    ("built", "declared", "found"),
    [
        ("tar", "zip", "a tar archive"),
        ("tgz", "zip", "compressed with gzip"),
        ("zip", "tar", "a zip archive"),
        ("zip", "tgz", "a zip archive"),
    ],
)
def test_a_bundle_of_another_type_than_declared_is_refused(
    built: str, declared: str, found: str, deployment: Path
) -> None:
    bundle = build(built, deployment, [file("appspec.yml", APPSPEC)])
    error = refused(bundle, declared, deployment)
    assert found in str(error) and f"bundle type is {declared}" in str(error)


def test_the_directory_type_is_not_an_archive(deployment: Path) -> None:
    bundle = build("tar", deployment, [file("appspec.yml", APPSPEC)])
    refused(bundle, "directory", deployment)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_bundle_larger_than_the_free_space_is_refused_and_leaves_nothing(
    kind: str, small_disk: Path
) -> None:
    deployment = small_disk / "d-FULL"
    deployment.mkdir()
    members = [file("appspec.yml", APPSPEC)] + [
        file(f"data/{index}.bin", os.urandom(400_000)) for index in range(4)
    ]
    bundle = KINDS[kind](small_disk.parent / f"big.{kind}", members)
    error = refused(bundle, kind, deployment)
    message = str(error)
    assert message.startswith(f"bundle {bundle}, unpacked into {deployment / 'deployment-archive'}")
    assert f"the filesystem mounted on {small_disk} has" in message
    # The refusal comes from the sizes the bundle declares, before the disk fills up.
    assert "disk is full" not in message
    assert os.listdir(small_disk) == ["d-FULL"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_bundle_with_more_files_than_free_inodes_is_refused(kind: str, tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "few-inodes", "8m", inodes=200) as mount_point:
        deployment = mount_point / "d-INODES"
        deployment.mkdir()
        members = [file("appspec.yml", APPSPEC)] + [
            file(f"empty/{index}", b"") for index in range(400)
        ]
        bundle = KINDS[kind](tmp_path / f"many.{kind}", members)
        error = refused(bundle, kind, deployment)
        assert "files and folders, but the filesystem mounted on" in str(error)
        assert "free inodes" in str(error)
        assert os.listdir(mount_point) == ["d-INODES"]


def test_a_tgz_packed_from_a_real_tree_unpacks(deployment: Path) -> None:
    source = deployment.parent / "src" / "app"
    (source / "scripts").mkdir(parents=True)
    (source / "appspec.yml").write_bytes(APPSPEC)
    (source / "scripts" / "go.sh").write_text("#!/bin/sh\n", encoding="utf-8")
    (source / "scripts" / "go.sh").chmod(0o755)
    bundle = deployment.parent / "real.tgz"
    with tarfile.open(bundle, "w:gz") as archive:
        archive.add(source, arcname="app")
    archive_dir = unpack(bundle, "tgz", deployment)
    assert os.access(archive_dir / "scripts" / "go.sh", os.X_OK)


def test_a_name_that_is_not_utf8_is_kept_as_bytes(deployment: Path) -> None:
    bundle = deployment.parent / "latin1.tar"
    with tarfile.open(
        bundle, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as archive:
        info = tarfile.TarInfo(os.fsdecode(b"caf\xe9.txt"))
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    archive_dir = unpack(bundle, "tar", deployment)
    assert os.listdir(os.fsencode(archive_dir)) == [b"caf\xe9.txt"]
