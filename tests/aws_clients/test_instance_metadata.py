"""The EC2 metadata client against an IMDS stand-in: tokens, retries, IMDSv1 fallback."""

from __future__ import annotations

import socket
from typing import Any, Dict, List, MutableMapping

import pytest
from structlog.testing import capture_logs

from agent.aws_clients.instance_metadata import (
    DOCUMENT_PATH,
    PARTITION_PATH,
    TOKEN_HEADER,
    TOKEN_PATH,
    TOKEN_TTL_HEADER,
    InstanceMetadataClient,
    InstanceMetadataError,
    RetryPolicy,
)
from tests.support.imds import DEFAULT_DOCUMENT, ImdsBehaviour, ImdsStub

FAST = RetryPolicy(first_delay=0.01, max_delay=0.05, total_wait=5.0, request_timeout=2.0)
NO_RETRY = RetryPolicy(first_delay=0.01, max_delay=0.01, total_wait=0.0, request_timeout=2.0)


def client_for(
    stub: ImdsStub, *, disable_v1: bool = False, retry: RetryPolicy = FAST
) -> InstanceMetadataClient:
    return InstanceMetadataClient.from_environment(
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT": stub.endpoint}, disable_v1=disable_v1, retry=retry
    )


def logged_text(logs: List[MutableMapping[str, Any]]) -> str:
    return "\n".join(repr(entry) for entry in logs)


def test_imdsv2_gives_the_instance_arn_and_sends_the_token_on_every_get() -> None:
    with ImdsStub() as stub, capture_logs() as logs:
        arn, region = client_for(stub).fetch_instance_arn()

    assert arn == "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"
    assert region == "eu-west-1"
    assert stub.token_ttls == ["21600"]
    puts = stub.requests_to(TOKEN_PATH)
    assert [request.method for request in puts] == ["PUT"]
    assert puts[0].header(TOKEN_TTL_HEADER) == "21600"
    gets = stub.requests_to(DOCUMENT_PATH) + stub.requests_to(PARTITION_PATH)
    assert len(gets) == 2
    assert all(request.header(TOKEN_HEADER) == stub.issued_tokens[0] for request in gets)
    assert stub.issued_tokens[0] not in logged_text(logs)


def test_the_identity_document_is_returned_whole() -> None:
    with ImdsStub() as stub:
        document = client_for(stub).fetch_identity_document()
    assert document == DEFAULT_DOCUMENT


@pytest.mark.parametrize(
    ("partition", "region", "expected"),
    [
        ("aws-cn", "cn-north-1", "arn:aws-cn:ec2:cn-north-1:123456789012:instance/i-0abc"),
        (
            "aws-us-gov",
            "us-gov-west-1",
            "arn:aws-us-gov:ec2:us-gov-west-1:123456789012:instance/i-0abc",
        ),
    ],
)
def test_the_partition_of_china_and_govcloud_is_in_the_arn(
    partition: str, region: str, expected: str
) -> None:
    behaviour = ImdsBehaviour(partition=partition)
    behaviour.document.update(region=region, instanceId="i-0abc")
    with ImdsStub(behaviour) as stub:
        assert client_for(stub).fetch_instance_arn() == (expected, region)


def test_a_metadata_service_without_the_partition_gives_the_partition_of_the_region() -> None:
    behaviour = ImdsBehaviour(partition=None)
    behaviour.document.update(region="cn-northwest-1")
    with ImdsStub(behaviour) as stub:
        arn, _ = client_for(stub).fetch_instance_arn()
    assert arn.startswith("arn:aws-cn:ec2:cn-northwest-1:")


def test_an_invalid_partition_is_an_error_naming_it() -> None:
    with (
        ImdsStub(ImdsBehaviour(partition="<html>")) as stub,
        pytest.raises(InstanceMetadataError, match="invalid partition '<html>'"),
    ):
        client_for(stub).fetch_instance_arn()


def test_requests_are_retried_while_the_metadata_service_answers_503() -> None:
    with ImdsStub(ImdsBehaviour(fail_first=3)) as stub, capture_logs() as logs:
        arn, _ = client_for(stub).fetch_instance_arn()

    assert arn == "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"
    assert len(stub.requests) == 3 + 3  # three refused, then token, document, partition
    assert [entry["event"] for entry in logs].count("EC2 metadata service not ready; retrying") == 3


def test_retries_stop_after_the_total_wait_with_a_clear_error() -> None:
    retry = RetryPolicy(first_delay=0.01, max_delay=0.02, total_wait=0.2, request_timeout=2.0)
    with (
        ImdsStub(ImdsBehaviour(fail_first=10_000)) as stub,
        pytest.raises(InstanceMetadataError) as caught,
    ):
        client_for(stub, retry=retry).fetch_identity_document()
    assert "did not answer /latest/dynamic/instance-identity/document" in caught.value.message
    assert "HTTP 503" in caught.value.message
    assert "\n" not in caught.value.message
    assert 2 < len(stub.requests) < 10_000


def test_a_metadata_service_that_is_not_there_is_retried_then_reported() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    client = InstanceMetadataClient(f"http://127.0.0.1:{port}", retry=NO_RETRY)
    with pytest.raises(InstanceMetadataError, match=rf"127\.0\.0\.1:{port} did not answer"):
        client.fetch_instance_arn()


@pytest.mark.parametrize("status", [403, 404, 405])
def test_imdsv1_is_used_when_imdsv2_is_not_supported(status: int) -> None:
    behaviour = ImdsBehaviour(allow_v1=True, token_status=status)
    with ImdsStub(behaviour) as stub, capture_logs() as logs:
        client = client_for(stub)
        arn, _ = client.fetch_instance_arn()
        client.fetch_identity_document()

    assert arn == "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"
    gets = [request for request in stub.requests if request.method == "GET"]
    assert len(gets) == 3
    assert all(request.header(TOKEN_HEADER) is None for request in gets)
    # Once IMDS has said it has no IMDSv2, it is not asked again.
    assert len(stub.requests_to(TOKEN_PATH)) == 1
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [entry["event"] for entry in warnings] == [
        "IMDSv2 is not available; falling back to IMDSv1"
    ]
    assert warnings[0]["reason"] == f"HTTP {status}"


def test_imdsv1_is_used_when_the_token_request_is_never_answered() -> None:
    behaviour = ImdsBehaviour(allow_v1=True, token_unanswered=True)
    retry = RetryPolicy(first_delay=0.01, max_delay=0.01, total_wait=1.0, request_timeout=0.2)
    with ImdsStub(behaviour) as stub:
        arn, _ = client_for(stub, retry=retry).fetch_instance_arn()
    assert arn.endswith(":instance/i-0123456789abcdef0")


@pytest.mark.parametrize("status", [403, 404])
def test_disable_imds_v1_makes_a_missing_imdsv2_a_clear_error(status: int) -> None:
    behaviour = ImdsBehaviour(allow_v1=True, token_status=status)
    with ImdsStub(behaviour) as stub, pytest.raises(InstanceMetadataError) as caught:
        client_for(stub, disable_v1=True).fetch_instance_arn()
    assert "disable_imds_v1 is set" in caught.value.message
    assert f"HTTP {status}" in caught.value.message
    assert all(request.method == "PUT" for request in stub.requests)


def test_with_imdsv1_disabled_an_unanswered_token_request_is_waited_for_then_reported() -> None:
    behaviour = ImdsBehaviour(allow_v1=True, token_unanswered=True)
    retry = RetryPolicy(first_delay=0.01, max_delay=0.01, total_wait=0.3, request_timeout=0.1)
    with (
        ImdsStub(behaviour) as stub,
        pytest.raises(InstanceMetadataError, match=r"no answer within 0\.1s") as caught,
    ):
        client_for(stub, disable_v1=True, retry=retry).fetch_identity_document()
    assert "did not answer" in caught.value.message
    assert len(stub.requests_to(TOKEN_PATH)) > 1
    assert stub.requests_to(DOCUMENT_PATH) == []


def test_the_sdk_variable_disables_imdsv1_too() -> None:
    behaviour = ImdsBehaviour(allow_v1=True, token_status=404)
    with ImdsStub(behaviour) as stub:
        client = InstanceMetadataClient.from_environment(
            {
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": stub.endpoint,
                "AWS_EC2_METADATA_V1_DISABLED": "true",
            },
            retry=FAST,
        )
        with pytest.raises(InstanceMetadataError, match="IMDSv1 is not tried"):
            client.fetch_identity_document()


def test_an_imds_that_requires_v2_after_a_failed_token_request_is_explained() -> None:
    behaviour = ImdsBehaviour(allow_v1=False, token_unanswered=True)
    retry = RetryPolicy(first_delay=0.01, max_delay=0.01, total_wait=1.0, request_timeout=0.2)
    with (
        ImdsStub(behaviour) as stub,
        pytest.raises(InstanceMetadataError, match=r"requires IMDSv2.*hop limit"),
    ):
        client_for(stub, retry=retry).fetch_identity_document()


def test_a_rejected_token_is_replaced_by_a_new_one() -> None:
    with ImdsStub() as stub:
        client = client_for(stub)
        client.fetch_identity_document()
        # The metadata service forgets its sessions, as after a restart.
        stub.issued_tokens.clear()
        client.fetch_identity_document()
    assert len(stub.requests_to(TOKEN_PATH)) == 2
    last = stub.requests_to(DOCUMENT_PATH)[-1]
    assert last.header(TOKEN_HEADER) == stub.issued_tokens[-1]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"region": "eu-west-1", "accountId": "123456789012"}, "has no instanceId"),
        ({"instanceId": "i-1", "accountId": "123456789012"}, "has no region"),
        ({"instanceId": "i-1", "region": "eu-west-1", "accountId": ""}, "has no accountId"),
    ],
)
def test_an_incomplete_identity_document_names_the_missing_field(
    document: Dict[str, Any], message: str
) -> None:
    with (
        ImdsStub(ImdsBehaviour(document=document)) as stub,
        pytest.raises(InstanceMetadataError, match=message),
    ):
        client_for(stub).fetch_instance_arn()


@pytest.mark.parametrize("endpoint", ["169.254.169.254", "ftp://127.0.0.1", "http://:80"])
def test_a_malformed_endpoint_variable_is_named(endpoint: str) -> None:
    with pytest.raises(InstanceMetadataError, match="AWS_EC2_METADATA_SERVICE_ENDPOINT"):
        InstanceMetadataClient.from_environment({"AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint})


def test_the_default_endpoint_is_the_link_local_address() -> None:
    assert InstanceMetadataClient.from_environment({}).endpoint == "http://169.254.169.254"
