"""A tar or tgz bundle from S3 is unpacked while it downloads, and fails as cleanly."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import List

import pytest
from structlog.testing import capture_logs

from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import BundleType, S3Revision
from agent.host_command.download_bundle import download_revision_to_disk
from agent.revision.bundle import UnpackPolicy
from agent.revision.errors import BundleError
from agent.revision.fetchers.s3_unpacking import STREAM_MIN_BYTES
from agent.revision.fetchers.settings import FetchSettings
from tests.support.archives import file, make_tar
from tests.support.s3_servers import StubObject, s3_settings, stub_s3_server

MIB = 1 << 20


def _bundle_bytes(tmp_path: Path, compression: str = "") -> bytes:
    """A small first member, then 3 MiB that cannot be compressed."""
    tar = make_tar(
        tmp_path / "app.tar",
        [
            file("appspec.yml", b"version: 0.0\nos: linux\n"),
            file("first.txt", b"the first member\n"),
            file("big.bin", os.urandom(3 * MIB)),
        ],
        compression=compression,
    )
    data = tar.read_bytes()
    tar.unlink()
    return data


def _deployment(tmp_path: Path) -> DeploymentDir:
    deployment = DeploymentDir(tmp_path / "root" / "group" / "d-STREAM")
    deployment.path.mkdir(parents=True)
    return deployment


def _download(revision: S3Revision, deployment: DeploymentDir, fetch: FetchSettings) -> None:
    download_revision_to_disk(
        revision, deployment, appspec_filename="appspec.yml", policy=UnpackPolicy(), fetch=fetch
    )


def _download_in_thread(
    revision: S3Revision, deployment: DeploymentDir, endpoint: str, failures: List[BaseException]
) -> threading.Thread:
    def run() -> None:
        try:
            _download(revision, deployment, s3_settings(endpoint, parallel_threshold=64 * MIB))
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("bundle_type", [BundleType.TAR, BundleType.TGZ])
def test_members_are_unpacked_before_the_download_ends(
    tmp_path: Path, bundle_type: BundleType
) -> None:
    data = _bundle_bytes(tmp_path, "gz" if bundle_type is BundleType.TGZ else "")
    # The first MiB goes out, the rest only once the first member is on disk.
    stub = StubObject("bucket", "app.tar", data, hold_after=MIB + 4096)
    deployment = _deployment(tmp_path)
    failures: List[BaseException] = []
    with stub_s3_server(stub) as endpoint:
        revision = S3Revision("bucket", "app.tar", bundle_type)
        thread = _download_in_thread(revision, deployment, endpoint, failures)
        unpacked_early = False
        deadline = time.monotonic() + 15
        while thread.is_alive() and time.monotonic() < deadline:
            if any(deployment.path.rglob("first.txt")):
                unpacked_early = True
                break
            time.sleep(0.02)
        stub.release.set()
        thread.join()
    assert failures == []
    assert unpacked_early, "nothing was unpacked while the download was held"
    assert (deployment.archive / "first.txt").read_bytes() == b"the first member\n"
    assert (deployment.archive / "big.bin").stat().st_size == 3 * MIB
    assert deployment.bundle.read_bytes() == data


@pytest.mark.parametrize("parallel", [False, True])
def test_a_download_cut_short_is_the_error_and_leaves_nothing(
    tmp_path: Path, parallel: bool
) -> None:
    # In parallel, every 256 KiB part breaks after 100 KB; alone, the stream after 1 MiB.
    cut_after = 100_000 if parallel else MIB + 4096
    stub = StubObject("bucket", "app.tar", _bundle_bytes(tmp_path), cut_after=cut_after)
    deployment = _deployment(tmp_path)
    with stub_s3_server(stub) as endpoint, pytest.raises(BundleError) as raised:
        settings = s3_settings(endpoint, parallel_threshold=MIB, part_size=256 * 1024)
        _download(
            S3Revision("bucket", "app.tar", BundleType.TAR),
            deployment,
            settings if parallel else s3_settings(endpoint, parallel_threshold=64 * MIB),
        )
    assert str(raised.value).startswith("download of s3://bucket/app.tar was cut short")
    assert list(deployment.path.iterdir()) == []


@pytest.mark.parametrize("parallel", [False, True])
def test_a_bundle_that_is_not_a_tar_fails_the_unpack_as_before(
    tmp_path: Path, parallel: bool
) -> None:
    stub = StubObject("bucket", "app.tar", os.urandom(3 * MIB))
    deployment = _deployment(tmp_path)
    with stub_s3_server(stub) as endpoint, pytest.raises(BundleError) as raised:
        settings = s3_settings(endpoint, parallel_threshold=MIB, part_size=256 * 1024)
        _download(
            S3Revision("bucket", "app.tar", BundleType.TAR),
            deployment,
            settings if parallel else s3_settings(endpoint),
        )
    assert str(raised.value) == (
        f"bundle {deployment.bundle} cannot be read as a tar archive: Unrecognized archive format"
    )
    # As when the unpack followed the download: the whole bundle is kept, no folder made.
    assert [path.name for path in deployment.path.iterdir()] == ["bundle.tar"]
    assert deployment.bundle.read_bytes() == stub.data


def test_an_empty_object_is_refused_as_before(tmp_path: Path) -> None:
    stub = StubObject("bucket", "app.tgz", b"")
    deployment = _deployment(tmp_path)
    with stub_s3_server(stub) as endpoint, pytest.raises(BundleError) as raised:
        _download(
            S3Revision("bucket", "app.tgz", BundleType.TGZ), deployment, s3_settings(endpoint)
        )
    assert str(raised.value) == f"bundle {deployment.bundle} is empty (0 bytes), not a tgz archive"


def test_a_small_bundle_is_unpacked_once_whole_without_streaming(tmp_path: Path) -> None:
    # A bundle of a few KB arrives in one read: the feeder and unpacker threads and their
    # pipe would cost more than they could overlap.
    tar = make_tar(
        tmp_path / "small.tgz",
        [file("appspec.yml", b"version: 0.0\nos: linux\n"), file("index.html", b"small\n")],
        compression="gz",
    )
    data = tar.read_bytes()
    assert len(data) < STREAM_MIN_BYTES
    stub = StubObject("bucket", "small.tgz", data)
    deployment = _deployment(tmp_path)
    with stub_s3_server(stub) as endpoint, capture_logs() as logs:
        _download(
            S3Revision("bucket", "small.tgz", BundleType.TGZ), deployment, s3_settings(endpoint)
        )
    events = [entry["event"] for entry in logs]
    assert "unpacking bundle as it downloads" not in events
    assert "unpacking bundle" in events
    assert (deployment.archive / "index.html").read_bytes() == b"small\n"
    assert deployment.bundle.read_bytes() == data
    assert sorted(path.name for path in deployment.path.iterdir()) == [
        "bundle.tar",
        "deployment-archive",
    ]
