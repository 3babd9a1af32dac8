"""codedeploy-local with an s3:// bundle location, against moto's S3 server on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest

from tests.support.archives import make_bundle, write_tree
from tests.support.local_agent import LocalAgent
from tests.support.s3_servers import REGION, moto_s3_server, s3_client

ENV: Dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "AKIDTESTTESTTESTTEST",
    "AWS_SECRET_ACCESS_KEY": "test-secret-key",
    "AWS_REGION": REGION,
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_server() as endpoint:
        yield endpoint


def _upload(endpoint: str, tmp_path: Path, record: Path) -> Tuple[str, str]:
    source = write_tree(
        tmp_path / "rev",
        {
            "appspec.yml": "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: env.sh\n",
            "env.sh": f'#!/bin/sh\necho "$BUNDLE_BUCKET $BUNDLE_KEY $BUNDLE_ETAG $DEPLOYMENT_ID" > {record}\n',
        },
    )
    bundle = make_bundle(source, tmp_path / "rev.tgz", "tgz")
    client = s3_client(endpoint, ENV["AWS_ACCESS_KEY_ID"], ENV["AWS_SECRET_ACCESS_KEY"], REGION)
    bucket = f"bundles-{tmp_path.name.lower().replace('_', '-')}"[:60]
    client.create_bucket(Bucket=bucket)
    etag = client.put_object(Bucket=bucket, Key="releases/rev.tgz", Body=bundle.read_bytes())[
        "ETag"
    ]
    return bucket, etag.strip('"')


def _agent_for(local_agent: LocalAgent, endpoint: str) -> LocalAgent:
    with local_agent.config.open("a", encoding="utf-8") as config:
        config.write(f":s3_endpoint_override: '{endpoint}'\n")
    return local_agent


def test_s3_bundle_with_etag(local_agent: LocalAgent, s3_endpoint: str, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    bucket, etag = _upload(s3_endpoint, tmp_path, record)
    agent = _agent_for(local_agent, s3_endpoint)
    location = f"s3://{bucket}/releases/rev.tgz?etag={etag}"
    result = agent.run("--bundle-location", location, "--type", "tgz", env=ENV)
    assert result.returncode == 0, result.stderr
    assert record.read_text().split() == [
        bucket,
        "releases/rev.tgz",
        etag,
        result.deployment_dir.name,
    ]
    assert (result.deployment_dir / "bundle.tar").stat().st_size > 0


def test_s3_etag_mismatch_fails_clearly(
    local_agent: LocalAgent, s3_endpoint: str, tmp_path: Path
) -> None:
    bucket, _ = _upload(s3_endpoint, tmp_path, tmp_path / "record.txt")
    agent = _agent_for(local_agent, s3_endpoint)
    location = f"s3://{bucket}/releases/rev.tgz?etag=0123456789abcdef"
    result = agent.run("--bundle-location", location, "--type", "tgz", env=ENV)
    assert result.returncode == 1
    failure = [line for line in result.stderr.splitlines() if line.startswith("Deployment ")]
    assert len(failure) == 1 and "failed in DownloadBundle" in failure[0]
    assert "0123456789abcdef" in failure[0]
    assert not (result.deployment_dir / "bundle.tar").exists()
    assert "Traceback" not in result.stderr
