"""The command service client against a real HTTP stand-in of the service on loopback.

Every call goes through the real boto3 client built from the shipped model, so these
tests check the model (targets, shapes, signing), the client's additions (agent-version
header, endpoint rule, proxy, timeouts) and the translation of failures.
"""

from __future__ import annotations

import http.client
import json
import logging
from datetime import datetime, timezone
from typing import Iterator, List

import botocore.session  # type: ignore[import-untyped]
import pytest
import structlog
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from agent.aws_clients.command_service import (
    AGENT_VERSION_HEADER,
    MODEL_DATA_PATH,
    BotocoreCommandServiceClient,
    CommandServiceError,
    CommandServiceSettings,
    CommandStatus,
    HostCommand,
    command_service_endpoint,
    new_command_service_client,
)
from agent.configuration.model import AgentConfig, ConfigError
from agent.errors import Diagnostics, ErrorCode
from tests.support.command_service import CommandServiceStub, Fault
from tests.support.http_proxy import ForwardingProxy

HOST = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
EXECUTION = "codedeploy:DEFAULT:us-east-1:d-ABCDEFGHI"
ACCESS_KEY = "AKIDTESTKEY0000EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYsecretEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLEsessionTOKENvalue0123456789"
CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)


@pytest.fixture
def service() -> Iterator[CommandServiceStub]:
    with CommandServiceStub(hang_seconds=10) as stub:
        yield stub


def client_for(
    stub: CommandServiceStub, *, secure: bool = False, max_attempts: int = 1, **extra: object
) -> BotocoreCommandServiceClient:
    settings = CommandServiceSettings(
        region="us-east-1",
        endpoint_url=stub.url,
        enable_auth_policy=secure,
        read_timeout=1.0,
        agent_version="OFFICIAL_test-1.2.3",
        max_attempts=max_attempts,
        **extra,  # type: ignore[arg-type]
    )
    return new_command_service_client(settings, CREDENTIALS)


# -- endpoints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "fips", "secure", "expected"),
    [
        ("us-east-1", False, False, "https://codedeploy-commands.us-east-1.amazonaws.com"),
        ("eu-west-3", False, False, "https://codedeploy-commands.eu-west-3.amazonaws.com"),
        ("cn-north-1", False, False, "https://codedeploy-commands.cn-north-1.amazonaws.com.cn"),
        ("us-east-2", True, False, "https://codedeploy-commands-fips.us-east-2.amazonaws.com"),
        (
            "us-gov-west-1",
            True,
            False,
            "https://codedeploy-commands-fips.us-gov-west-1.amazonaws.com",
        ),
        ("us-west-2", False, True, "https://codedeploy-commands-secure.us-west-2.amazonaws.com"),
        (
            "us-east-1",
            True,
            True,
            "https://codedeploy-commands-secure-fips.us-east-1.amazonaws.com",
        ),
        (
            "cn-northwest-1",
            False,
            True,
            "https://codedeploy-commands-secure.cn-northwest-1.amazonaws.com.cn",
        ),
        ("us-iso-east-1", False, False, "https://codedeploy-commands.us-iso-east-1.c2s.ic.gov"),
    ],
)
def test_default_endpoints_follow_the_agent_rule_and_botocore_agrees(
    region: str, fips: bool, secure: bool, expected: str
) -> None:
    settings = CommandServiceSettings(region=region, use_fips=fips, enable_auth_policy=secure)
    assert command_service_endpoint(settings) == expected
    assert new_command_service_client(settings, CREDENTIALS).endpoint_url == expected

    # botocore's legacy endpoint rules, fed only the shipped model, name the same host.
    session = botocore.session.Session()
    session.get_component("data_loader").search_paths.insert(0, str(MODEL_DATA_PATH))
    resolved = session.create_client(
        settings.service_name,
        region_name=region,
        config=Config(use_fips_endpoint=fips),
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    assert resolved.meta.endpoint_url == expected


def test_an_endpoint_override_wins_over_region_fips_and_secure() -> None:
    settings = CommandServiceSettings(
        region="us-east-1",
        endpoint_url="https://deploy.example.internal:8443",
        use_fips=True,
        enable_auth_policy=True,
    )
    assert command_service_endpoint(settings) == "https://deploy.example.internal:8443"
    client = new_command_service_client(settings, CREDENTIALS)
    assert client.endpoint_url == "https://deploy.example.internal:8443"


def test_sdk_endpoint_variables_do_not_redirect_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://elsewhere.example.com")
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    settings = CommandServiceSettings(region="eu-west-1")
    client = new_command_service_client(settings, CREDENTIALS)
    assert client.endpoint_url == "https://codedeploy-commands.eu-west-1.amazonaws.com"


def test_settings_come_from_the_agent_configuration() -> None:
    config = AgentConfig(
        deploy_control_endpoint="https://deploy.example.internal",
        proxy_uri="http://proxy.example.internal:3128",
        use_fips_mode=True,
        enable_auth_policy=True,
        http_read_timeout=45.0,
    )
    settings = CommandServiceSettings.from_config(config, "eu-west-1", "1.2.3")
    assert settings == CommandServiceSettings(
        region="eu-west-1",
        endpoint_url="https://deploy.example.internal",
        proxy_uri="http://proxy.example.internal:3128",
        use_fips=True,
        enable_auth_policy=True,
        read_timeout=45.0,
        agent_version="1.2.3",
    )
    client = new_command_service_client(settings, CREDENTIALS)
    boto_config = client.boto_client.meta.config
    assert boto_config.read_timeout == 45.0
    assert boto_config.proxies == {
        "http": "http://proxy.example.internal:3128",
        "https": "http://proxy.example.internal:3128",
    }
    assert boto_config.retries == {"mode": "standard", "total_max_attempts": 2}


def test_fips_mode_in_a_region_without_fips_endpoints_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"use_fips_mode .* region eu-west-1"):
        CommandServiceSettings.from_config(AgentConfig(use_fips_mode=True), "eu-west-1", "1")


def test_a_region_that_is_not_a_region_name_is_refused() -> None:
    with pytest.raises(CommandServiceError, match="not an AWS region name"):
        CommandServiceSettings(region="evil.example.com/x")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("agent_version", "1.0\r\nX-Injected: 1", "is not header text"),
        ("read_timeout", 0.0, "timeouts must be > 0"),
        ("max_attempts", 0, "at least one attempt"),
    ],
)
def test_settings_every_aws_client_refuses_are_a_command_service_error(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(CommandServiceError, match=f"command service client: .*{message}"):
        CommandServiceSettings(region="us-east-1", **{field: value})  # type: ignore[arg-type]


# -- operations ------------------------------------------------------------------------


def assert_signed_request(stub: CommandServiceStub, secure: bool) -> None:
    service_name = "codedeploy-commands-secure" if secure else "codedeploy-commands"
    prefix = "CodeDeployCommandService." if secure else "CodeDeployCommandService_v20141006."
    assert stub.requests
    for request in stub.requests:
        headers = request.headers
        assert request.target == prefix + request.operation
        assert headers["content-type"] == "application/x-amz-json-1.1"
        assert headers[AGENT_VERSION_HEADER] == "OFFICIAL_test-1.2.3"
        day = headers["x-amz-date"][:8]
        scope = f"Credential={ACCESS_KEY}/{day}/us-east-1/{service_name}/aws4_request"
        assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 {scope}, ")
        assert AGENT_VERSION_HEADER in headers["authorization"].split("SignedHeaders=")[1]
        assert headers["x-amz-security-token"] == SESSION_TOKEN


@pytest.mark.parametrize("secure", [False, True], ids=["classic", "secure"])
def test_every_operation_round_trips_through_boto3(
    service: CommandServiceStub, secure: bool
) -> None:
    client = client_for(service, secure=secure)
    queued = service.queue_command(HOST, "Install", EXECUTION, nonce=42)
    service.set_specification(EXECUTION, '{"DeploymentId": "d-ABCDEFGHI"}', "TEXT/JSON")

    command = client.poll_host_command(HOST)
    assert command == HostCommand(
        host_command_identifier=queued["HostCommandIdentifier"],
        host_identifier=HOST,
        deployment_execution_id=EXECUTION,
        command_name="Install",
        nonce=42,
    )
    assert client.poll_host_command(HOST) is None

    envelope = client.get_deployment_specification(EXECUTION, HOST)
    assert (envelope.deployment_system, envelope.format) == ("CodeDeploy", "TEXT/JSON")
    assert envelope.payload == '{"DeploymentId": "d-ABCDEFGHI"}'

    status = client.put_host_command_acknowledgement(command.host_command_identifier, False)
    assert status is CommandStatus.IN_PROGRESS

    diagnostics = Diagnostics(ErrorCode.SCRIPT_FAILED, "script failed", "start.sh", "boom\n")
    client.put_host_command_complete(
        command.host_command_identifier, CommandStatus.FAILED, diagnostics
    )
    eta = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    status = client.post_host_command_update(
        command.host_command_identifier, Diagnostics.succeeded("so far so good"), eta
    )
    assert status is CommandStatus.IN_PROGRESS

    bodies = [(request.operation, request.body) for request in service.requests]
    hc = command.host_command_identifier
    assert bodies == [
        ("PollHostCommand", {"HostIdentifier": HOST}),
        ("PollHostCommand", {"HostIdentifier": HOST}),
        (
            "GetDeploymentSpecification",
            {"DeploymentExecutionId": EXECUTION, "HostIdentifier": HOST},
        ),
        (
            "PutHostCommandAcknowledgement",
            {
                "HostCommandIdentifier": hc,
                "Diagnostics": {"Format": "JSON", "Payload": '{"IsCommandNoop": false}'},
            },
        ),
        (
            "PutHostCommandComplete",
            {
                "HostCommandIdentifier": hc,
                "CommandStatus": "Failed",
                "Diagnostics": {"Format": "JSON", "Payload": diagnostics.to_payload()},
            },
        ),
        (
            "PostHostCommandUpdate",
            {
                "HostCommandIdentifier": hc,
                "Diagnostics": {
                    "Format": "JSON",
                    "Payload": Diagnostics.succeeded("so far so good").to_payload(),
                },
                "EstimatedCompletionTime": eta.timestamp(),
            },
        ),
    ]
    assert service.completions() == [bodies[4][1]]
    assert_signed_request(service, secure)


def test_a_noop_acknowledgement_says_so_and_returns_the_service_status() -> None:
    with CommandServiceStub(ack_status="Failed") as stub:
        client = client_for(stub)
        assert client.put_host_command_acknowledgement("hc-1", True) is CommandStatus.FAILED
        stub.ack_status = "Succeeded"
        assert client.put_host_command_acknowledgement("hc-1", True) is CommandStatus.SUCCEEDED
        stub.ack_status = None
        assert client.put_host_command_acknowledgement("hc-1", True) is None
        payloads = [r.body["Diagnostics"]["Payload"] for r in stub.requests]
        assert [json.loads(p) for p in payloads] == [{"IsCommandNoop": True}] * 3


def test_an_update_without_diagnostics_or_estimate_sends_only_the_command(
    service: CommandServiceStub,
) -> None:
    service.update_status = None
    assert client_for(service).post_host_command_update("hc-9") is None
    assert service.requests[0].body == {"HostCommandIdentifier": "hc-9"}


def test_a_command_completes_only_as_succeeded_or_failed(service: CommandServiceStub) -> None:
    client = client_for(service)
    with pytest.raises(ValueError, match="Succeeded or Failed"):
        client.put_host_command_complete("hc-1", CommandStatus.PENDING, Diagnostics.succeeded())
    assert service.requests == []


def test_a_signed_pkcs7_envelope_is_handed_over_untouched(service: CommandServiceStub) -> None:
    pem = "-----BEGIN PKCS7-----\nMIIBexample\n-----END PKCS7-----\n"
    service.set_specification(EXECUTION, pem, "PKCS7/JSON")
    envelope = client_for(service).get_deployment_specification(EXECUTION, HOST)
    assert (envelope.format, envelope.payload) == ("PKCS7/JSON", pem)
    assert pem not in repr(envelope)


def test_a_specification_of_another_deployment_system_is_an_error(
    service: CommandServiceStub,
) -> None:
    service.set_specification(EXECUTION, "{}", deployment_system="SomethingElse")
    with pytest.raises(CommandServiceError, match="deployment system 'SomethingElse'"):
        client_for(service).get_deployment_specification(EXECUTION, HOST)


def test_a_service_client_error_is_translated_as_not_retryable(
    service: CommandServiceStub,
) -> None:
    with pytest.raises(CommandServiceError) as caught:
        client_for(service).get_deployment_specification("unknown-execution", HOST)
    error = caught.value
    assert error.message == (
        "command service GetDeploymentSpecification failed: ClientException (HTTP 400):"
        " unknown deployment execution"
    )
    assert (error.code, error.throttled, error.retryable) == ("ClientException", False, False)


def test_a_command_for_another_host_is_an_error(service: CommandServiceStub) -> None:
    other = HOST.replace("i-0123456789abcdef0", "i-0fedcba9876543210")
    service.queue_command(HOST, "Install", EXECUTION, answer_host_identifier=other)
    with pytest.raises(CommandServiceError) as caught:
        client_for(service).poll_host_command(HOST)
    assert "i-0fedcba9876543210" in caught.value.message
    assert "not for this host" in caught.value.message
    assert not caught.value.retryable


def test_a_command_without_a_name_is_an_error(service: CommandServiceStub) -> None:
    service.queue_command(HOST, None, EXECUTION)
    with pytest.raises(CommandServiceError, match="without CommandName"):
        client_for(service).poll_host_command(HOST)


# -- failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "throttled", "words"),
    [
        (Fault.SERVER_ERROR, False, "ServerException (HTTP 500): injected server error"),
        (Fault.THROTTLING, True, "ThrottlingException (HTTP 400): Rate exceeded"),
        (Fault.RESET, False, "closed the connection without an answer"),
        (Fault.HANG, False, "got no answer from"),
    ],
)
def test_faults_become_one_line_command_service_errors(
    service: CommandServiceStub, fault: Fault, throttled: bool, words: str
) -> None:
    service.inject_fault("PollHostCommand", fault)
    with pytest.raises(CommandServiceError) as caught:
        client_for(service).poll_host_command(HOST)
    error = caught.value
    assert error.message.startswith("command service PollHostCommand ")
    assert words in error.message
    assert "\n" not in error.message
    assert error.throttled is throttled
    assert error.retryable is True
    assert [r.fault for r in service.requests] == [fault]


def test_boto3_retries_a_failed_call_once_by_default(service: CommandServiceStub) -> None:
    service.inject_fault("PutHostCommandComplete", Fault.SERVER_ERROR)
    client = client_for(service, max_attempts=2)
    client.put_host_command_complete("hc-1", CommandStatus.SUCCEEDED, Diagnostics.succeeded())
    faults = [request.fault for request in service.requests_for("PutHostCommandComplete")]
    assert faults == [Fault.SERVER_ERROR, None]
    assert len(service.completions()) == 1


def test_throttling_that_outlasts_the_retries_is_reported_as_throttled(
    service: CommandServiceStub,
) -> None:
    service.inject_fault("PollHostCommand", Fault.THROTTLING, times=5)
    with pytest.raises(CommandServiceError) as caught:
        client_for(service, max_attempts=2).poll_host_command(HOST)
    assert caught.value.throttled
    assert len(service.requests) == 2


def test_an_unreachable_service_is_retryable() -> None:
    with CommandServiceStub() as stub:
        url = stub.url
    settings = CommandServiceSettings(region="us-east-1", endpoint_url=url, max_attempts=1)
    with pytest.raises(CommandServiceError) as caught:
        new_command_service_client(settings, CREDENTIALS).poll_host_command(HOST)
    assert caught.value.message == f"command service PollHostCommand could not connect to {url}"
    assert caught.value.retryable


def test_missing_credentials_are_reported_without_retry(
    service: CommandServiceStub, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    settings = CommandServiceSettings(region="us-east-1", endpoint_url=service.url)
    with pytest.raises(CommandServiceError) as caught:
        new_command_service_client(settings).poll_host_command(HOST)
    assert (
        caught.value.message
        == "command service PollHostCommand failed: no AWS credentials were found"
    )
    assert not caught.value.retryable
    assert service.requests == []


# -- proxy and secrets -----------------------------------------------------------------


def test_requests_go_through_the_configured_proxy(service: CommandServiceStub) -> None:
    with ForwardingProxy() as proxy:
        client = client_for(service, proxy_uri=proxy.url)
        service.queue_command(HOST, "DownloadBundle", EXECUTION)
        command = client.poll_host_command(HOST)
        assert command is not None and command.command_name == "DownloadBundle"
        assert proxy.forwarded == [f"{service.url}/"]
        assert_signed_request(service, secure=False)


def test_proxy_passwords_stay_out_of_messages_and_logs() -> None:
    with CommandServiceStub() as stub:
        dead = stub.url  # nothing listens here once the stub has stopped
    proxy = dead.replace("http://", "http://agent:proxy-pass-word@")
    with structlog.testing.capture_logs() as events:
        client = new_command_service_client(
            CommandServiceSettings(
                region="us-east-1", endpoint_url=dead, proxy_uri=proxy, max_attempts=1
            ),
            CREDENTIALS,
        )
        with pytest.raises(CommandServiceError) as caught:
            client.poll_host_command(HOST)
    assert "could not connect through proxy http://***@127.0.0.1" in caught.value.message
    assert "proxy-pass-word" not in caught.value.message
    assert "proxy-pass-word" not in repr(events)
    assert events and events[0]["proxy"].startswith("http://***@127.0.0.1:")


def test_credentials_never_reach_logs_or_error_messages(
    service: CommandServiceStub,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: List[str] = []
    with structlog.testing.capture_logs() as events:
        client = client_for(service)
        service.queue_command(HOST, "Install", EXECUTION)
        service.set_specification(EXECUTION, "{}")
        command = client.poll_host_command(HOST)
        assert command is not None
        client.get_deployment_specification(EXECUTION, HOST)
        client.put_host_command_acknowledgement(command.host_command_identifier, False)
        client.put_host_command_complete(
            command.host_command_identifier, CommandStatus.SUCCEEDED, Diagnostics.succeeded()
        )
        for fault in Fault:
            service.inject_fault("PostHostCommandUpdate", fault)
            with pytest.raises(CommandServiceError) as caught:
                client.post_host_command_update(command.host_command_identifier)
            messages.append(str(caught.value))
    ours = repr(events) + capsys.readouterr().out + "\n".join(messages)
    assert events, "the client logs something, so this test can see what it logs"
    for secret in (SECRET_KEY, SESSION_TOKEN, ACCESS_KEY):
        assert secret not in ours
    # botocore's own DEBUG lines (the wire log) show request headers, including the session
    # token; the secret key is never among them, and nothing above DEBUG shows either.
    assert SECRET_KEY not in caplog.text
    above_debug = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert not [line for line in above_debug if SESSION_TOKEN in line or SECRET_KEY in line]


# -- the stand-in itself ---------------------------------------------------------------


def test_the_stand_in_refuses_unsigned_requests(service: CommandServiceStub) -> None:
    host, port = service.url.split("//")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request(
        "POST",
        "/",
        body=json.dumps({"HostIdentifier": HOST}),
        headers={
            "X-Amz-Target": "CodeDeployCommandService_v20141006.PollHostCommand",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    answer = connection.getresponse()
    assert answer.status == 403
    assert json.loads(answer.read())["__type"] == "IncompleteSignatureException"
    connection.close()
    assert service.requests == []
