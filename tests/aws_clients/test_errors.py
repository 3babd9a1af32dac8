"""A failed AWS call reads the same whichever client met it: the command service client and
the S3 fetcher, each made to fail the same way by a real server (or none) on 127.0.0.1,
give one line each with the same reason, after their own subject.

A refused connection and a TLS error already read alike before the translation was one
(tests/aws_clients/test_command_service_client.py and tests/revision/fetchers/test_s3.py
pin those lines); the kinds here did not.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional

import pytest
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from agent.aws_clients.command_service import (
    CommandServiceError,
    CommandServiceSettings,
    new_command_service_client,
)
from agent.aws_clients.credentials import ReloadingFileCredentials
from agent.deployment_specification.model import BundleType, S3Revision
from agent.revision.errors import BundleError
from agent.revision.fetchers.s3 import download_s3_bundle_to_disk
from tests.support.on_premises_files import SESSION_SECRET, SESSION_TOKEN, write_credentials
from tests.support.s3_servers import REGION, TEST_CREDENTIALS, s3_settings

HOST = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
OBJECT = "s3://bucket/app.tgz"


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@contextlib.contextmanager
def closing_server() -> Iterator[str]:
    """Reads each request's headers, then closes the connection without an answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the test is over
            with connection:
                received = b""
                while b"\r\n\r\n" not in received:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    received += chunk

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=10)


def unused_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{placeholder.getsockname()[1]}"


class Failure(NamedTuple):
    """How both clients are made to fail, and the reason both must give for it."""

    endpoint: str
    proxy_uri: Optional[str]
    credentials: Optional[Credentials]
    # After a subject that names the endpoint (S3), and after one that does not.
    reason: str
    reason_at_endpoint: str
    sent: bool  # a request went out: the S3 line says from where and after how many tries
    retryable: bool


Staging = Callable[[Path], "contextlib.AbstractContextManager[Failure]"]


@contextlib.contextmanager
def read_timeout(_: Path) -> Iterator[Failure]:
    with silent_server() as url:
        yield Failure(
            url,
            None,
            TEST_CREDENTIALS,
            "got no answer within the read timeout",
            f"got no answer from {url} within the read timeout",
            sent=True,
            retryable=True,
        )


@contextlib.contextmanager
def closed_without_answer(_: Path) -> Iterator[Failure]:
    with closing_server() as url:
        yield Failure(
            url,
            None,
            TEST_CREDENTIALS,
            "the connection was closed without an answer",
            f"failed: {url} closed the connection without an answer",
            sent=True,
            retryable=True,
        )


@contextlib.contextmanager
def proxy_refused(_: Path) -> Iterator[Failure]:
    proxy = unused_url()
    with silent_server() as url:
        secret_proxy = proxy.replace("http://", "http://agent:proxy-pass-word@")
        shown = proxy.replace("http://", "http://***@")
        yield Failure(
            url,
            secret_proxy,
            TEST_CREDENTIALS,
            f"could not connect through proxy {shown}",
            f"could not connect through proxy {shown}",
            sent=True,
            retryable=True,
        )


@contextlib.contextmanager
def no_credentials(_: Path) -> Iterator[Failure]:
    with silent_server() as url:
        yield Failure(
            url,
            None,
            None,
            "no AWS credentials were found",
            "failed: no AWS credentials were found",
            sent=False,
            retryable=False,
        )


@contextlib.contextmanager
def credentials_file_gone(tmp_path: Path) -> Iterator[Failure]:
    # An on-premises session whose rotation job has just removed the file.
    credentials_file = tmp_path / "credentials"
    write_credentials(credentials_file, "ASIAGONE000000000001", SESSION_SECRET, SESSION_TOKEN)
    credentials = ReloadingFileCredentials(credentials_file)
    credentials_file.unlink()
    with silent_server() as url:
        yield Failure(
            url,
            None,
            credentials,
            f"credentials file {credentials_file} does not exist",
            f"failed: credentials file {credentials_file} does not exist",
            sent=False,
            retryable=True,
        )


@pytest.fixture
def no_credentials_around(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials in the environment, the shared files or instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def command_service_line(failure: Failure) -> CommandServiceError:
    settings = CommandServiceSettings(
        region=REGION,
        endpoint_url=failure.endpoint,
        proxy_uri=failure.proxy_uri,
        read_timeout=0.5,
        max_attempts=1,
    )
    client = new_command_service_client(settings, failure.credentials)
    with pytest.raises(CommandServiceError) as caught:
        client.poll_host_command(HOST)
    return caught.value


def s3_line(failure: Failure, tmp_path: Path) -> BundleError:
    settings = s3_settings(
        failure.endpoint,
        proxy_uri=failure.proxy_uri,
        credentials=failure.credentials,
        read_timeout_seconds=0.5,
        max_attempts=1,
    )
    revision = S3Revision("bucket", "app.tgz", BundleType.TGZ)
    with pytest.raises(BundleError) as caught:
        download_s3_bundle_to_disk(revision, tmp_path / "bundle.tar", settings)
    return caught.value


@pytest.mark.parametrize(
    "staging",
    [read_timeout, closed_without_answer, proxy_refused, no_credentials, credentials_file_gone],
    ids=lambda staging: staging.__name__,
)
def test_each_failure_reads_the_same_from_the_command_service_and_from_s3(
    staging: Staging, tmp_path: Path, no_credentials_around: None
) -> None:
    with staging(tmp_path) as failure:
        service_error = command_service_line(failure)
        s3_error = s3_line(failure, tmp_path)

    assert service_error.message == f"command service PollHostCommand {failure.reason_at_endpoint}"
    subject = f"cannot download {OBJECT}"
    if failure.sent:
        subject += f" from {failure.endpoint} after 1 attempts"
    assert s3_error.message == f"{subject}: {failure.reason}"
    assert service_error.retryable is failure.retryable
    # One line, the protocol's code for what is not a script's failure, no secret.
    for error in (service_error, s3_error):
        assert "\n" not in error.message
        assert error.diagnostics().error_code == 5
        assert "proxy-pass-word" not in error.message
    assert not (tmp_path / "bundle.tar").exists()
