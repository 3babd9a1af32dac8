"""The AWS wire log: real client calls against loopback stubs, secrets kept out of the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from agent.aws_clients.clients import new_s3_client
from agent.aws_clients.command_service import CommandServiceSettings, new_command_service_client
from agent.aws_clients.wire_log import (
    WireLogSettings,
    WireLogWriter,
    attach_wire_log,
    redact_text,
    redact_url_secrets,
    wire_log_file_for,
)
from agent.deployment_specification.model import BundleType, S3Revision
from agent.revision.fetchers.s3 import download_s3_bundle_to_disk
from tests.support.command_service import CommandServiceStub
from tests.support.s3_servers import StubObject, s3_settings, stub_s3_server

HOST = "arn:aws:iam::123456789012:user/wire-host"
ACCESS_KEY = "ASIAWIRELOGTEST12345"
SECRET_KEY = "wire-secret-key-0123456789abcdefghijklmn"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKENwirelog0123456789"
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
SECRETS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, GITHUB_TOKEN)


@pytest.fixture
def stub() -> Iterator[CommandServiceStub]:
    with CommandServiceStub() as service:
        yield service


def _assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    # Not even a recognisable piece of one.
    assert SESSION_TOKEN[:20] not in text
    assert SECRET_KEY[:20] not in text


def test_command_service_calls_are_logged_with_operation_status_and_no_secrets(
    tmp_path: Path, stub: CommandServiceStub
) -> None:
    wire = wire_log_file_for(tmp_path / "log", "codedeploy-agent")
    assert wire == tmp_path / "log" / "codedeploy-agent.aws_wire.log"
    settings = CommandServiceSettings(
        region="us-east-1", endpoint_url=stub.url, read_timeout=5, max_attempts=1
    )
    # Built with its wire log, as the daemon builds it: botocore then makes every call.
    client = new_command_service_client(
        settings,
        Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN),
        wire_log=WireLogSettings(wire, body_limit=400),
    )
    spec = json.dumps(
        {
            "DeploymentId": "d-WIRE00001",
            "GitHubAccessToken": GITHUB_TOKEN,
            "Filler": "x" * 2000,
        }
    )
    stub.set_specification("d-WIRE00001", spec, "TEXT/JSON")
    stub.queue_command(HOST, "DownloadBundle", "d-WIRE00001")

    command = client.poll_host_command(HOST)
    assert command is not None
    envelope = client.get_deployment_specification("d-WIRE00001", HOST)
    assert GITHUB_TOKEN in envelope.payload  # the client itself still sees it

    # The stub really received the secret headers the log must hide.
    [poll] = stub.requests_for("PollHostCommand")
    assert poll.headers["x-amz-security-token"] == SESSION_TOKEN
    assert ACCESS_KEY in poll.headers["authorization"]

    text = wire.read_text(encoding="utf-8")
    assert "request codedeploy-commands PollHostCommand: POST http://127.0.0.1:" in text
    assert "response codedeploy-commands PollHostCommand: status 200" in text
    assert "request codedeploy-commands GetDeploymentSpecification: POST" in text
    assert "response codedeploy-commands GetDeploymentSpecification: status 200" in text
    assert "X-Amz-Target: CodeDeployCommandService_v20141006.PollHostCommand" in text
    assert "Authorization: ***" in text
    assert "X-Amz-Security-Token: ***" in text
    assert HOST in text  # request bodies are there
    assert "<omitted: may hold secrets>" in text
    _assert_no_secrets(text)


def test_a_failed_call_is_logged_as_failed(tmp_path: Path) -> None:
    wire = tmp_path / "wire.log"
    settings = CommandServiceSettings(
        region="us-east-1", endpoint_url="http://127.0.0.1:9", read_timeout=1, max_attempts=1
    )
    client = new_command_service_client(
        settings, Credentials(ACCESS_KEY, SECRET_KEY), wire_log=WireLogSettings(wire)
    )
    with pytest.raises(Exception, match="could not connect"):
        client.poll_host_command(HOST)
    text = wire.read_text(encoding="utf-8")
    assert "response codedeploy-commands PollHostCommand: failed (EndpointConnectionError)" in text
    _assert_no_secrets(text)


def test_s3_fetch_with_a_wire_log_records_head_and_get_without_secrets(tmp_path: Path) -> None:
    wire = tmp_path / "log" / "codedeploy-agent.aws_wire.log"
    stub = StubObject("bucket", "app.tgz", b"bundle bytes " * 100)
    with stub_s3_server(stub) as endpoint:
        settings = s3_settings(
            endpoint,
            credentials=Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN),
            wire_log=WireLogSettings(wire),
        )
        revision = S3Revision(bucket="bucket", key="app.tgz", bundle_type=BundleType.TGZ)
        download_s3_bundle_to_disk(revision, tmp_path / "bundle.tar", settings)
        presigned = new_s3_client(settings.s3_client_settings).generate_presigned_url(
            "get_object", Params={"Bucket": "bucket", "Key": "app.tgz"}
        )
    assert (tmp_path / "bundle.tar").read_bytes() == stub.data
    assert any(
        headers.get("X-Amz-Security-Token") == SESSION_TOKEN for *_, headers in stub.requests
    )
    text = wire.read_text(encoding="utf-8")
    assert "request s3 HeadObject: HEAD http://127.0.0.1:" in text
    assert "response s3 HeadObject: status 200" in text
    assert "request s3 GetObject: GET" in text
    assert "response s3 GetObject: status 200" in text
    assert "bundle bytes" not in text  # the streamed object is not copied into the log
    _assert_no_secrets(text)

    # A presigned URL keeps its shape but loses its signature and credential.
    assert "X-Amz-Signature=" in presigned and SESSION_TOKEN in presigned.replace("%2F", "/")
    redacted = redact_url_secrets(presigned)
    assert "X-Amz-Signature=***" in redacted
    assert "X-Amz-Credential=***" in redacted
    assert "X-Amz-Security-Token=***" in redacted
    assert "/bucket/app.tgz" in redacted
    _assert_no_secrets(redacted)


def test_redaction_of_bodies_and_urls() -> None:
    nested = json.dumps({"Payload": json.dumps({"GitHubAccessToken": "abc123secret"})})
    assert "abc123secret" not in redact_text(nested)
    xml = "<Credentials><AccessKeyId>AKIAABCDEFGHIJKLMNOP</AccessKeyId><SessionToken>tok+/=</SessionToken></Credentials>"
    assert redact_text(xml) == (
        "<Credentials><AccessKeyId>***</AccessKeyId><SessionToken>***</SessionToken></Credentials>"
    )
    assert redact_text(f"see {GITHUB_TOKEN} and github_pat_{'x' * 30}") == "see *** and ***"
    assert redact_text("Authorization: token abcdefgh12345678") == "Authorization: token ***"
    assert redact_text("a secret value here", ["secret value"]) == "a *** here"
    assert (
        redact_url_secrets("http://user:pw@proxy:3128/path?a=1") == "http://***@proxy:3128/path?a=1"
    )
    assert redact_text('{"IsCommandNoop": false}') == '{"IsCommandNoop": false}'


def test_an_unwritable_wire_log_does_not_break_the_call(
    tmp_path: Path, stub: CommandServiceStub
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    settings = CommandServiceSettings(
        region="us-east-1", endpoint_url=stub.url, read_timeout=5, max_attempts=1
    )
    client = new_command_service_client(settings, Credentials(ACCESS_KEY, SECRET_KEY))
    attach_wire_log(client.boto_client, WireLogWriter(WireLogSettings(blocker / "wire.log")))
    assert client.poll_host_command(HOST) is None
