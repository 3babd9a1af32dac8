"""The command-service client's fast path (agent/aws_clients/direct_calls.py) against the
stand-in service on loopback: the same requests and answers as through botocore, on one
kept connection, with botocore's retries and messages whenever something goes wrong."""

from __future__ import annotations

import datetime
import itertools
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from botocore.credentials import Credentials, RefreshableCredentials

from agent.aws_clients.command_service import (
    BotocoreCommandServiceClient,
    CommandServiceError,
    CommandServiceSettings,
    CommandStatus,
    new_command_service_client,
)
from agent.aws_clients.wire_log import WireLogSettings
from agent.errors import Diagnostics
from tests.support.command_service import HOST, REGION, CommandServiceStub, Fault
from tests.support.signing import localhost_tls_certificate

CREDENTIALS = Credentials("AKIDEXAMPLE", "not-a-secret")
EXECUTION = "d-DIRECT001"


@pytest.fixture()
def service() -> Iterator[CommandServiceStub]:
    with CommandServiceStub() as stub:
        yield stub


def _client(
    stub: CommandServiceStub, credentials: Any = CREDENTIALS, **settings: Any
) -> BotocoreCommandServiceClient:
    options: Dict[str, Any] = {"read_timeout": 2.0, "max_attempts": 1, **settings}
    return new_command_service_client(
        CommandServiceSettings(region=REGION, endpoint_url=stub.url, **options), credentials
    )


def _failures_both_ways(
    stub: CommandServiceStub, call: Callable[[BotocoreCommandServiceClient], Any], **settings: Any
) -> List[CommandServiceError]:
    """The error of ``call`` with the fast path, then through botocore alone."""
    failures = []
    for direct_calls in (True, False):
        with pytest.raises(CommandServiceError) as caught:
            call(_client(stub, direct_calls=direct_calls, **settings))
        failures.append(caught.value)
    return failures


def _by_botocore(request: Any) -> bool:
    """botocore marks each of its attempts; the fast path sends no such header."""
    return "amz-sdk-request" in request.headers


def _one_command_of_calls(
    client: BotocoreCommandServiceClient, stub: CommandServiceStub
) -> List[Any]:
    stub.queue_command(HOST, "BeforeInstall", EXECUTION)
    command = client.poll_host_command(HOST)
    assert command is not None
    return [
        command,
        client.get_deployment_specification(EXECUTION, HOST),
        client.put_host_command_acknowledgement(command.host_command_identifier, False),
        client.put_host_command_complete(
            command.host_command_identifier, CommandStatus.SUCCEEDED, Diagnostics.succeeded("ok")
        ),
        client.post_host_command_update(command.host_command_identifier),
        client.poll_host_command(HOST),
    ]


def test_a_command_goes_on_one_kept_connection_with_the_answers_botocore_gives(
    service: CommandServiceStub,
) -> None:
    service.set_specification(EXECUTION, '{"DeploymentId": "d-DIRECT001"}', "TEXT/JSON")
    direct = _client(service)
    assert direct.direct_calls is not None
    answers = _one_command_of_calls(direct, service)
    direct_requests = service.requests
    assert service.connections_accepted == 1
    assert not any(_by_botocore(request) for request in direct_requests)

    through_botocore = _one_command_of_calls(_client(service, direct_calls=False), service)
    botocore_requests = service.requests[len(direct_requests) :]
    assert all(_by_botocore(request) for request in botocore_requests)
    # The same answers, apart from the command's own id.
    assert answers[1:] == through_botocore[1:]
    assert answers[0].command_name == through_botocore[0].command_name == "BeforeInstall"
    # The same requests: operation, body, the headers botocore signs, the signing scope.
    for ours, theirs in zip(direct_requests, botocore_requests):
        assert (ours.operation, ours.signing_service) == (theirs.operation, theirs.signing_service)
        ours_body = {**ours.body, "HostCommandIdentifier": None}
        theirs_body = {**theirs.body, "HostCommandIdentifier": None}
        assert ours_body == theirs_body
        for name in ("content-type", "x-amz-target", "x-amz-codedeploy-agent-version"):
            assert ours.headers[name] == theirs.headers[name]
        assert "codedeploy-agent-py/" in ours.headers["user-agent"]
        signed = ours.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
        assert signed == "content-type;host;x-amz-codedeploy-agent-version;x-amz-date;x-amz-target"


def test_a_connection_the_service_closed_while_idle_is_opened_again(
    service: CommandServiceStub,
) -> None:
    client = _client(service)
    assert client.put_host_command_acknowledgement("hc-1", False) is CommandStatus.IN_PROGRESS
    service.close_connections()
    time.sleep(0.1)
    assert client.put_host_command_acknowledgement("hc-1", False) is CommandStatus.IN_PROGRESS
    assert len(service.requests) == 2
    assert service.connections_accepted == 2
    assert not any(_by_botocore(request) for request in service.requests)


def test_an_error_answer_reads_as_through_botocore_and_is_not_sent_again(
    service: CommandServiceStub,
) -> None:
    ours, botocores = _failures_both_ways(
        service, lambda client: client.get_deployment_specification("unknown-execution", HOST)
    )
    assert (ours.message, ours.code, ours.retryable) == (
        botocores.message,
        botocores.code,
        botocores.retryable,
    )
    assert (ours.code, ours.retryable) == ("ClientException", False)
    assert len(service.requests) == 2  # one each


def test_an_answer_of_another_shape_reads_as_through_botocore() -> None:
    with CommandServiceStub(ack_status=5) as stub:  # type: ignore[arg-type]
        ours, botocores = _failures_both_ways(
            stub, lambda client: client.put_host_command_acknowledgement("hc-1", False)
        )
    assert ours.message == botocores.message
    assert "unknown CommandStatus" in ours.message


def test_a_retryable_failure_gets_its_other_attempts_through_botocore(
    service: CommandServiceStub,
) -> None:
    service.inject_fault("PutHostCommandAcknowledgement", Fault.SERVER_ERROR)
    client = _client(service, max_attempts=2)
    assert client.put_host_command_acknowledgement("hc-1", False) is CommandStatus.IN_PROGRESS
    first, second = service.requests
    assert (first.fault, _by_botocore(first)) == (Fault.SERVER_ERROR, False)
    assert (second.fault, _by_botocore(second)) == (None, True)
    assert "max=1" in second.headers["amz-sdk-request"]
    # Later calls take the fast path again.
    client.put_host_command_acknowledgement("hc-1", False)
    assert not _by_botocore(service.requests[-1])


def test_a_hung_call_fails_once_with_botocores_words(service: CommandServiceStub) -> None:
    def complete(client: BotocoreCommandServiceClient) -> None:
        service.inject_fault("PutHostCommandComplete", Fault.HANG)
        client.put_host_command_complete("hc-1", CommandStatus.FAILED, Diagnostics.succeeded())

    ours, botocores = _failures_both_ways(service, complete, read_timeout=0.5)
    assert ours.message == botocores.message
    assert "got no answer from" in ours.message
    assert ours.retryable and botocores.retryable
    assert len(service.requests) == 2  # one each


def test_a_call_made_while_another_is_in_flight_goes_through_botocore() -> None:
    with CommandServiceStub(poll_wait=1.0) as stub:
        client = _client(stub, read_timeout=5.0)
        polling = threading.Thread(target=client.poll_host_command, args=(HOST,))
        polling.start()
        deadline = time.monotonic() + 5
        while not stub.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        client.put_host_command_acknowledgement("hc-1", False)
        polling.join()
    poll, ack = stub.requests
    assert (poll.operation, _by_botocore(poll)) == ("PollHostCommand", False)
    assert (ack.operation, _by_botocore(ack)) == ("PutHostCommandAcknowledgement", True)


def test_refreshed_credentials_sign_the_next_call(service: CommandServiceStub) -> None:
    keys = itertools.count()

    def refresh() -> Dict[str, str]:
        # Within botocore's advisory window: every use refreshes them.
        expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=12)
        return {
            "access_key": f"AKIDKEY{next(keys)}",
            "secret_key": "secret",
            "token": "token",
            "expiry_time": expiry.isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    client = _client(service, credentials=credentials)
    client.put_host_command_acknowledgement("hc-1", False)
    [request] = service.requests
    assert not _by_botocore(request)
    assert "Credential=AKIDKEY1/" in request.headers["authorization"]
    assert request.headers["x-amz-security-token"] == "token"


def test_https_trusts_the_ca_bundle_botocore_trusts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate, key = localhost_tls_certificate(tmp_path)
    with CommandServiceStub(tls=(certificate, key)) as stub:
        assert stub.url.startswith("https://")
        with monkeypatch.context() as patched:
            patched.setenv("AWS_CA_BUNDLE", str(certificate))
            client = _client(stub)
        assert client.put_host_command_acknowledgement("hc-1", False) is CommandStatus.IN_PROGRESS
        [request] = stub.requests
        assert not _by_botocore(request)

        # Without that bundle, the certificate is refused, in botocore's words.
        ours, botocores = _failures_both_ways(
            stub, lambda client: client.put_host_command_acknowledgement("hc-1", False)
        )
        assert ours.message == botocores.message
        assert "TLS error talking to https://127.0.0.1:" in ours.message
        assert len(stub.requests) == 1


@pytest.mark.parametrize(
    "case", ["proxy_uri", "environment proxy", "wire log", "endpoint path", "turned off"]
)
def test_the_fast_path_stays_off_where_its_request_would_differ(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings: Dict[str, Any] = {"region": REGION, "endpoint_url": "http://127.0.0.1:9"}
    wire_log = None
    if case == "proxy_uri":
        settings["proxy_uri"] = "http://127.0.0.1:3128"
    elif case == "environment proxy":
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    elif case == "wire log":
        wire_log = WireLogSettings(tmp_path / "wire.log")
    elif case == "endpoint path":
        settings["endpoint_url"] = "http://127.0.0.1:9/prefix"
    else:
        settings["direct_calls"] = False
    plain = CommandServiceSettings(region=REGION, endpoint_url="http://127.0.0.1:9")
    if case != "environment proxy":
        assert new_command_service_client(plain, CREDENTIALS).direct_calls is not None
    client = new_command_service_client(
        CommandServiceSettings(**settings), CREDENTIALS, wire_log=wire_log
    )
    assert client.direct_calls is None


def test_a_connection_on_a_descriptor_past_select_s_range_is_kept(
    service: CommandServiceStub,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("the open-file limit is below 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    null = os.open(os.devnull, os.O_RDONLY)
    fillers = [os.dup(null) for _ in range(1100)]
    try:
        client = _client(service)
        for _ in range(3):
            assert client.put_host_command_acknowledgement("hc-1", False)
        assert service.connections_accepted == 1
        assert not any(_by_botocore(request) for request in service.requests)
    finally:
        for descriptor in [null, *fillers]:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
