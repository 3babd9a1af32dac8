"""Fixtures shared by the codedeploy-local tests."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.s3_servers import moto_s3_server


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on loopback, one per test module."""
    with moto_s3_server() as endpoint:
        yield endpoint
