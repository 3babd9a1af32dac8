"""S3 revisions: fetched from moto's S3 server and from a stub endpoint that misbehaves."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from structlog.testing import capture_logs

from agent.aws_clients import clients as aws_clients
from agent.aws_clients.client_settings import S3ClientSettings
from agent.aws_clients.clients import S3Clients
from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import BundleType, S3Revision
from agent.host_command.download_bundle import download_revision_to_disk
from agent.revision.bundle import UnpackPolicy
from agent.revision.errors import BundleError
from agent.revision.fetchers.s3 import download_s3_bundle_to_disk
from tests.support.archives import file, make_tar
from tests.support.s3_servers import (
    StubObject,
    moto_s3_server,
    s3_client,
    s3_settings,
    stub_s3_server,
)

BUCKET = "revisions"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(moto_endpoint: str) -> Iterator[Any]:
    """A client of the moto server with a fresh versioned bucket, emptied afterwards."""
    client = s3_client(moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield client
    versions = client.list_object_versions(Bucket=BUCKET).get("Versions", [])
    for version in versions:
        client.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])
    client.delete_bucket(Bucket=BUCKET)


def _revision(key: str, **fields: Any) -> S3Revision:
    return S3Revision(bucket=BUCKET, key=key, bundle_type=BundleType.TGZ, **fields)


def _leftovers(folder: Path) -> List[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_latest_version_is_downloaded(s3: Any, moto_endpoint: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="app.tgz", Body=b"old bundle")
    s3.put_object(Bucket=BUCKET, Key="app.tgz", Body=b"new bundle")
    bundle = tmp_path / "bundle.tar"
    with capture_logs() as logs:
        download_s3_bundle_to_disk(_revision("app.tgz"), bundle, s3_settings(moto_endpoint))
    assert bundle.read_bytes() == b"new bundle"
    assert _leftovers(tmp_path) == []
    started = [entry for entry in logs if entry["event"] == "downloading bundle"]
    assert started[0]["bytes"] == len(b"new bundle")
    assert started[0]["source"] == f"s3://{BUCKET}/app.tgz"


def test_named_older_version_is_downloaded(s3: Any, moto_endpoint: str, tmp_path: Path) -> None:
    first = s3.put_object(Bucket=BUCKET, Key="app.tgz", Body=b"first version")
    s3.put_object(Bucket=BUCKET, Key="app.tgz", Body=b"second version")
    bundle = tmp_path / "bundle.tar"
    revision = _revision("app.tgz", version=first["VersionId"])
    download_s3_bundle_to_disk(revision, bundle, s3_settings(moto_endpoint))
    assert bundle.read_bytes() == b"first version"


def test_matching_etag_is_accepted_with_or_without_quotes(
    s3: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    put = s3.put_object(Bucket=BUCKET, Key="app.tgz", Body=b"bundle")
    bundle = tmp_path / "bundle.tar"
    for etag in (put["ETag"], put["ETag"].strip('"')):
        download_s3_bundle_to_disk(
            _revision("app.tgz", etag=etag), bundle, s3_settings(moto_endpoint)
        )
        assert bundle.read_bytes() == b"bundle"


def test_etag_mismatch_is_refused_before_anything_is_written(
    s3: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    put = s3.put_object(Bucket=BUCKET, Key="app.tgz", Body=b"replaced bundle")
    actual = put["ETag"].strip('"')
    bundle = tmp_path / "bundle.tar"
    revision = _revision("app.tgz", etag="0123456789abcdef0123456789abcdef")
    with pytest.raises(BundleError) as raised:
        download_s3_bundle_to_disk(revision, bundle, s3_settings(moto_endpoint))
    message = str(raised.value)
    assert "0123456789abcdef0123456789abcdef" in message
    assert actual in message
    assert f"s3://{BUCKET}/app.tgz" in message
    assert not bundle.exists()
    assert _leftovers(tmp_path) == []


def test_missing_key_names_the_object(s3: Any, moto_endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=rf"^s3://{BUCKET}/nothing\.tgz does not exist"):
        download_s3_bundle_to_disk(
            _revision("nothing.tgz"), tmp_path / "bundle.tar", s3_settings(moto_endpoint)
        )


def test_missing_version_names_the_version(s3: Any, moto_endpoint: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="app.tgz", Body=b"bundle")
    s3.put_object(Bucket=BUCKET, Key="app.tgz", Body=b"bundle 2")
    versions = s3.list_object_versions(Bucket=BUCKET)["Versions"]
    gone = versions[-1]["VersionId"]
    s3.delete_object(Bucket=BUCKET, Key="app.tgz", VersionId=gone)
    with pytest.raises(BundleError) as raised:
        download_s3_bundle_to_disk(
            _revision("app.tgz", version=gone), tmp_path / "bundle.tar", s3_settings(moto_endpoint)
        )
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith(f"s3://{BUCKET}/app.tgz does not exist (version {gone}")


def test_parallel_ranges_against_moto_give_the_same_bytes(
    s3: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    data = os.urandom(300 * 1024 + 17)
    older = s3.put_object(Bucket=BUCKET, Key="big.tgz", Body=data)
    s3.put_object(Bucket=BUCKET, Key="big.tgz", Body=b"a newer, small version")
    bundle = tmp_path / "bundle.tar"
    settings = s3_settings(moto_endpoint, parallel_threshold=64 * 1024, part_size=64 * 1024)
    revision = _revision("big.tgz", version=older["VersionId"], etag=older["ETag"])
    download_s3_bundle_to_disk(revision, bundle, settings)
    assert bundle.read_bytes() == data


def test_parallel_ranges_are_requested_pinned_to_the_etag(tmp_path: Path) -> None:
    stub = StubObject("bucket", "big.tgz", os.urandom(5 * 1000 + 3))
    bundle = tmp_path / "bundle.tar"
    with stub_s3_server(stub) as endpoint:
        settings = s3_settings(
            endpoint, parallel_threshold=1000, part_size=1000, progress_interval_seconds=0
        )
        with capture_logs() as logs:
            download_s3_bundle_to_disk(
                S3Revision("bucket", "big.tgz", BundleType.TGZ), bundle, settings
            )
    assert bundle.read_bytes() == stub.data
    gets = [headers for method, _, headers in stub.requests if method == "GET"]
    ranges = sorted(headers["Range"] for headers in gets)
    expected = [f"bytes={start}-{min(start + 999, 5002)}" for start in range(0, 5003, 1000)]
    assert ranges == sorted(expected)
    assert all(headers["If-Match"] == stub.etag for headers in gets)
    started = [entry for entry in logs if entry["event"] == "downloading bundle"]
    assert started[0]["parts"] == 6
    assert any(entry["event"] == "bundle download progress" for entry in logs)


def test_small_object_is_one_plain_get(tmp_path: Path) -> None:
    stub = StubObject("bucket", "app.tgz", b"small bundle")
    with stub_s3_server(stub) as endpoint:
        download_s3_bundle_to_disk(
            S3Revision("bucket", "app.tgz", BundleType.TGZ),
            tmp_path / "bundle.tar",
            s3_settings(endpoint),
        )
    gets = [headers for method, _, headers in stub.requests if method == "GET"]
    assert len(gets) == 1
    assert "Range" not in gets[0]


@pytest.mark.parametrize("parallel", [False, True])
def test_truncated_download_is_a_clear_error(tmp_path: Path, parallel: bool) -> None:
    stub = StubObject("bucket", "app.tgz", os.urandom(4000), cut_after=300)
    bundle = tmp_path / "bundle.tar"
    with stub_s3_server(stub) as endpoint:
        settings = s3_settings(endpoint, max_attempts=3)
        if parallel:
            settings = s3_settings(endpoint, max_attempts=3, parallel_threshold=1, part_size=1000)
        with pytest.raises(BundleError) as raised:
            download_s3_bundle_to_disk(
                S3Revision("bucket", "app.tgz", BundleType.TGZ), bundle, settings
            )
    message = str(raised.value)
    assert message.startswith("download of s3://bucket/app.tgz was cut short after 3 attempts")
    assert "\n" not in message
    assert not bundle.exists()
    assert _leftovers(tmp_path) == []
    # Each attempt resumed where the previous one stopped.
    ranges = [headers.get("Range") for method, _, headers in stub.requests if method == "GET"]
    if not parallel:
        assert ranges == [None, "bytes=300-3999", "bytes=600-3999"]


def test_access_denied_points_at_the_credentials(tmp_path: Path) -> None:
    # moto's server does not enforce IAM, so the stub answers 403 as S3 does.
    stub = StubObject("bucket", "app.tgz", b"secret", status=403)
    with stub_s3_server(stub) as endpoint, pytest.raises(BundleError) as raised:
        download_s3_bundle_to_disk(
            S3Revision("bucket", "app.tgz", BundleType.TGZ),
            tmp_path / "bundle.tar",
            s3_settings(endpoint),
        )
    assert str(raised.value).startswith("access denied to s3://bucket/app.tgz (check the")
    assert "test-secret-key" not in str(raised.value)


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(BundleError) as raised:
        download_s3_bundle_to_disk(
            S3Revision("bucket", "app.tgz", BundleType.TGZ),
            tmp_path / "bundle.tar",
            s3_settings(endpoint, max_attempts=1),
        )
    assert str(raised.value) == (
        f"cannot download s3://bucket/app.tgz from {endpoint} after 1 attempts: could not connect"
    )


def test_s3_tgz_revision_is_unpacked(s3: Any, moto_endpoint: str, tmp_path: Path) -> None:
    tgz = make_tar(
        tmp_path / "app.tgz",
        [
            file("appspec.yml", b"version: 0.0\nos: linux\n"),
            file("scripts/start.sh", b"#!/bin/sh\n", mode=0o755),
        ],
        compression="gz",
    )
    put = s3.put_object(Bucket=BUCKET, Key="releases/app.tgz", Body=tgz.read_bytes())
    deployment = DeploymentDir(tmp_path / "root" / "group" / "d-S3TEST")
    deployment.path.mkdir(parents=True)
    download_revision_to_disk(
        _revision("releases/app.tgz", version=put["VersionId"], etag=put["ETag"]),
        deployment,
        appspec_filename="appspec.yml",
        policy=UnpackPolicy(),
        fetch=s3_settings(moto_endpoint),
    )
    assert (deployment.archive / "appspec.yml").read_bytes() == b"version: 0.0\nos: linux\n"
    assert os.access(deployment.archive / "scripts" / "start.sh", os.X_OK)
    assert deployment.bundle.read_bytes() == tgz.read_bytes()


def test_downloads_with_one_client_cache_build_one_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon keeps one client per settings: parsing the S3 model again for every
    # download is the cost this avoids.
    built: List[S3ClientSettings] = []
    real_new_s3_client = aws_clients.new_s3_client

    def counting_new_s3_client(settings: S3ClientSettings) -> Any:
        built.append(settings)
        return real_new_s3_client(settings)

    monkeypatch.setattr(aws_clients, "new_s3_client", counting_new_s3_client)
    clients = S3Clients()
    data = os.urandom(3000)
    with stub_s3_server(StubObject("bucket", "app.tgz", data)) as endpoint:
        revision = S3Revision("bucket", "app.tgz", BundleType.TGZ)
        for run in range(2):
            # Equal settings built anew each time, as a deployment does.
            settings = s3_settings(endpoint, s3_clients=clients)
            download_s3_bundle_to_disk(revision, tmp_path / f"bundle{run}.tar", settings)
            assert (tmp_path / f"bundle{run}.tar").read_bytes() == data
        assert len(built) == 1
        # Other settings get a client of their own; without a cache, every download builds.
        download_s3_bundle_to_disk(
            revision,
            tmp_path / "other.tar",
            s3_settings(endpoint, max_attempts=3, s3_clients=clients),
        )
        download_s3_bundle_to_disk(revision, tmp_path / "bare.tar", s3_settings(endpoint))
    assert len(built) == 3


def test_downloads_through_one_client_cache_share_one_connection(tmp_path: Path) -> None:
    # The daemon's downloads of small bundles each cost a HEAD and a GET on the connection
    # the previous download left open, not a new connection each.
    stub = StubObject("bucket", "app.tgz", os.urandom(3000))
    clients = S3Clients()
    with stub_s3_server(stub) as endpoint:
        revision = S3Revision("bucket", "app.tgz", BundleType.TGZ)
        for run in range(3):
            settings = s3_settings(endpoint, s3_clients=clients)
            download_s3_bundle_to_disk(revision, tmp_path / f"bundle{run}.tar", settings)
    assert [method for method, *_ in stub.requests] == ["HEAD", "GET"] * 3
    assert len(set(stub.ports)) == 1, stub.ports
