"""codedeploy-local and the disk: holes stay holes, and nothing is written that cannot fit.

A sparse file deploys without its holes becoming blocks, in the revision's copy and in
the install. A bundle that would not fit in the free space of the deployment root's
filesystem (a tgz of zeros, a zip bomb), or an install that would not fit on its
destination's filesystem, is refused in one line before anything is written, and
leaves nothing behind. The small filesystems are tmpfs mounts (root only).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Iterator, List

import pytest

from tests.support.archives import make_bundle, write_tree
from tests.support.local_agent import LocalAgent, LocalRun
from tests.support.s3_servers import LOCAL_AGENT_ENV, serve_bundle_from_moto
from tests.support.tmpfs import mounted_tmpfs

HOLE_SIZE = 1 << 30  # 1 GiB
DATA_OFFSET = 5_000_000
DATA = b"the only data of a sparse file"


def appspec(destination: Path) -> str:
    return f"version: 0.0\nos: linux\nfiles:\n  - source: data\n    destination: {destination}\n"


def deploy(agent: LocalAgent, bundle: Path, kind: str) -> LocalRun:
    return agent.run("--bundle-location", str(bundle), "--type", kind)


def one_line_failure(run: LocalRun, command: str) -> str:
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    failures = [line for line in lines if line.startswith("Deployment d-")]
    assert len(failures) == 1, run.stderr
    assert f"failed in {command}: " in failures[0]
    return failures[0]


def one_line_refusal(run: LocalRun) -> str:
    """A local archive's DownloadBundle runs before the first command: what it refuses
    is one line and exit 2, before anything ran."""
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("codedeploy-local: "), run.stderr
    return lines[0]


def no_deployment_left(root: Path) -> bool:
    """Whether the group has no deployment folder under ``root`` (its first deployment
    was refused: the group's folder is gone too)."""
    return not (root / "default-local-deployment-group").exists()


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def leftovers(folder: Path) -> List[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.fixture
def small_root(tmp_path: Path) -> Iterator[LocalAgent]:
    """A codedeploy-local whose deployment root is on an 8 MiB tmpfs."""
    with mounted_tmpfs(tmp_path / "small-root", "8m") as mount_point:
        yield LocalAgent.configured(tmp_path / "agent", root=mount_point / "root")


@pytest.mark.parametrize("kind", ["tar", "directory"])
def test_a_sparse_file_keeps_its_holes_in_the_revision_and_the_install(
    kind: str, local_agent: LocalAgent, tmp_path: Path
) -> None:
    install = tmp_path / "install"
    source = write_tree(tmp_path / "revision", {"appspec.yml": appspec(install)})
    (source / "data").mkdir()
    sparse = source / "data" / "sparse.bin"
    with sparse.open("wb") as handle:
        handle.truncate(HOLE_SIZE)
        handle.seek(DATA_OFFSET)
        handle.write(DATA)
    bundle = source
    if kind == "tar":
        bundle = tmp_path / "sparse.tar"
        subprocess.run(["tar", "--sparse", "-cf", str(bundle), "-C", str(source), "."], check=True)
        assert bundle.stat().st_size < 100_000

    run = deploy(local_agent, bundle, kind)

    assert run.returncode == 0, run.stderr
    for copy in (
        run.deployment_dir / "deployment-archive" / "data" / "sparse.bin",
        install / "sparse.bin",
    ):
        assert copy.stat().st_size == HOLE_SIZE
        assert allocated(copy) < 1 << 20, copy
        with copy.open("rb") as handle:
            handle.seek(DATA_OFFSET - 4)
            assert handle.read(len(DATA) + 8) == b"\0" * 4 + DATA + b"\0" * 4


def test_a_tgz_of_zeros_larger_than_the_free_space_is_refused_before_unpacking(
    small_root: LocalAgent, tmp_path: Path
) -> None:
    bundle = tmp_path / "zeros.tgz"
    content = appspec(tmp_path / "install").encode()
    with tarfile.open(bundle, "w:gz") as archive:
        info = tarfile.TarInfo("appspec.yml")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
        info = tarfile.TarInfo("data/zeros.bin")
        info.size = 64 << 20
        with open("/dev/zero", "rb") as zeros:
            archive.addfile(info, zeros)
    assert bundle.stat().st_size < 1 << 20

    run = deploy(small_root, bundle, "tgz")

    line = one_line_refusal(run)
    assert f"bundle {bundle}, unpacked into " in line and "/deployment-archive," in line
    assert "needs at least 64.0 MiB" in line
    assert f"the filesystem mounted on {tmp_path / 'small-root'} has " in line
    assert no_deployment_left(tmp_path / "small-root" / "root")


def test_a_zip_bomb_is_refused_from_its_central_directory(
    small_root: LocalAgent, tmp_path: Path
) -> None:
    bundle = tmp_path / "bomb.zip"
    block = b"\0" * (1 << 20)
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("appspec.yml", appspec(tmp_path / "install"))
        for index in range(4):
            with archive.open(f"data/zeros-{index}.bin", "w", force_zip64=True) as member:
                for _ in range(64):
                    member.write(block)
    # More than a thousand times its own size once unpacked.
    assert bundle.stat().st_size * 1000 < 256 << 20

    run = deploy(small_root, bundle, "zip")

    line = one_line_refusal(run)
    assert "unpacked into" in line and "needs 256.0 MiB" in line
    assert no_deployment_left(tmp_path / "small-root" / "root")


def random_bundle(tmp_path: Path, size: int) -> Path:
    source = write_tree(tmp_path / "random", {"appspec.yml": appspec(tmp_path / "install")})
    (source / "data").mkdir()
    (source / "data" / "noise.bin").write_bytes(os.urandom(size))
    return make_bundle(source, tmp_path / "random.tgz", "tgz")


def test_a_local_bundle_too_large_to_store_is_refused_before_copying(
    small_root: LocalAgent, tmp_path: Path
) -> None:
    # On another filesystem than the deployment root: it is copied, not hard-linked.
    bundle = random_bundle(tmp_path, 10 << 20)

    run = deploy(small_root, bundle, "tgz")

    line = one_line_refusal(run)
    assert f"local bundle {bundle}, stored as " in line and "/bundle.tar, needs" in line
    assert f"the filesystem mounted on {tmp_path / 'small-root'} has " in line
    assert no_deployment_left(tmp_path / "small-root" / "root")


def test_an_s3_bundle_too_large_to_store_is_refused_before_downloading(
    small_root: LocalAgent, s3_endpoint: str, tmp_path: Path
) -> None:
    bundle = random_bundle(tmp_path, 10 << 20)
    location = serve_bundle_from_moto(small_root, s3_endpoint, bundle, tmp_path.name)

    run = small_root.run("--bundle-location", location, "--type", "tgz", env=LOCAL_AGENT_ENV)

    line = one_line_failure(run, "DownloadBundle")
    assert f"{location}, stored as {run.deployment_dir / 'bundle.tar'}, needs" in line
    assert leftovers(run.deployment_dir) == []


def test_an_install_larger_than_its_destination_filesystem_is_refused_before_copying(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    with mounted_tmpfs(tmp_path / "small-destination", "1m") as mount_point:
        install = mount_point / "app"
        source = write_tree(tmp_path / "revision", {"appspec.yml": appspec(install)})
        # Four folders: the install's two processes each count half of them.
        for index in range(4):
            (source / "data" / str(index)).mkdir(parents=True)
            (source / "data" / str(index) / "part.bin").write_bytes(os.urandom(400_000))

        run = deploy(local_agent, source, "directory")

        line = one_line_failure(run, "Install")
        # 4 x 98 blocks of 4 KiB for the files, a block for each folder.
        needs = 4 * 98 * 4096 + 4 * 4096
        assert f"installing the revision into {install} needs 1.5 MiB ({needs} bytes)" in line
        assert f"the filesystem mounted on {mount_point} has" in line
        assert leftovers(mount_point) == []


def test_a_redeployment_counts_the_files_it_replaces_as_free(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    with mounted_tmpfs(tmp_path / "small-destination", "1m") as mount_point:
        install = mount_point / "app"
        for release in ("one", "two"):
            source = write_tree(tmp_path / release, {"appspec.yml": appspec(install)})
            (source / "data").mkdir()
            (source / "data" / "payload.bin").write_bytes(os.urandom(600_000))

            run = deploy(local_agent, source, "directory")

            assert run.returncode == 0, run.stderr
            assert (install / "payload.bin").read_bytes() == (
                source / "data" / "payload.bin"
            ).read_bytes()
