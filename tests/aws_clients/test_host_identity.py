"""Which identity the host polls with: environment, on-premises file or EC2 metadata."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Dict, List, MutableMapping

import pytest
from structlog.testing import capture_logs

from agent.aws_clients.host_identity import (
    EC2_IMDS,
    ENVIRONMENT,
    ON_PREMISES,
    HostIdentityError,
    resolve_host_identity,
)
from agent.aws_clients.instance_metadata import InstanceMetadataClient, RetryPolicy
from agent.configuration.model import AgentConfig
from tests.support.imds import ImdsBehaviour, ImdsStub

INSTANCE_ARN = "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"
USER_ARN = "arn:aws:iam::123456789012:user/codedeploy-host"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
USER_FILE = f"""\
:region: ap-southeast-2
:iam_user_arn: {USER_ARN}
:aws_access_key_id: AKIAIOSFODNN7EXAMPLE
:aws_secret_access_key: {SECRET}
"""


def config_with(on_premises_file: Path, **values: Any) -> AgentConfig:
    return AgentConfig(on_premises_config_file=on_premises_file, **values)


def environ_for(stub: ImdsStub, **extra: str) -> Dict[str, str]:
    return {"AWS_EC2_METADATA_SERVICE_ENDPOINT": stub.endpoint, **extra}


def logged_text(logs: List[MutableMapping[str, Any]]) -> str:
    return "\n".join(repr(entry) for entry in logs)


def unused_port() -> int:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        return int(placeholder.getsockname()[1])


def test_an_ec2_host_is_its_instance_arn(tmp_path: Path) -> None:
    with ImdsStub() as stub, capture_logs() as logs:
        identity = resolve_host_identity(config_with(tmp_path / "absent.yml"), environ_for(stub))

    assert (identity.host_identifier, identity.region, identity.source) == (
        INSTANCE_ARN,
        "eu-west-1",
        EC2_IMDS,
    )
    assert identity.on_premises is None
    assert identity.overridden_by == ()
    assert all(request.header("X-aws-ec2-metadata-token") for request in stub.requests[1:])
    [entry] = [entry for entry in logs if entry["event"] == "host identity"]
    assert entry["host_identifier"] == INSTANCE_ARN
    assert entry["source"] == EC2_IMDS
    assert entry["access_from"] == "the default AWS credential chain"
    assert stub.issued_tokens[0] not in logged_text(logs)


def test_the_environment_overrides_both_without_asking_the_metadata_service(
    tmp_path: Path,
) -> None:
    environ = {
        "AWS_HOST_IDENTIFIER": "arn:aws:iam::210987654321:user/elsewhere",
        "AWS_REGION": "us-east-2",
    }
    with ImdsStub() as stub:
        identity = resolve_host_identity(
            config_with(tmp_path / "absent.yml"), environ_for(stub, **environ)
        )
    assert (identity.host_identifier, identity.region, identity.source) == (
        "arn:aws:iam::210987654321:user/elsewhere",
        "us-east-2",
        ENVIRONMENT,
    )
    assert stub.requests == []


def test_the_region_alone_can_be_overridden(tmp_path: Path) -> None:
    with ImdsStub() as stub:
        identity = resolve_host_identity(
            config_with(tmp_path / "absent.yml"), environ_for(stub, AWS_REGION="eu-central-1")
        )
    assert (identity.host_identifier, identity.region, identity.source) == (
        INSTANCE_ARN,
        "eu-central-1",
        EC2_IMDS,
    )
    assert identity.overridden_by == ("AWS_REGION",)


def test_the_on_premises_file_wins_over_ec2_metadata(tmp_path: Path) -> None:
    onprem = tmp_path / "codedeploy.onpremises.yml"
    onprem.write_text(USER_FILE, encoding="utf-8")
    with ImdsStub() as stub, capture_logs() as logs:
        identity = resolve_host_identity(config_with(onprem), environ_for(stub))

    assert (identity.host_identifier, identity.region, identity.source) == (
        USER_ARN,
        "ap-southeast-2",
        ON_PREMISES,
    )
    assert identity.on_premises is not None
    assert identity.on_premises.aws_access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert stub.requests == []
    assert f"IAM user keys in {onprem}" in logged_text(logs)
    assert SECRET not in logged_text(logs)
    assert SECRET not in repr(identity)


def test_the_environment_overrides_the_on_premises_identity_but_keeps_its_keys(
    tmp_path: Path,
) -> None:
    onprem = tmp_path / "codedeploy.onpremises.yml"
    onprem.write_text(USER_FILE, encoding="utf-8")
    environ = {"AWS_HOST_IDENTIFIER": "arn:aws:iam::1:user/x", "AWS_REGION": "us-west-2"}
    identity = resolve_host_identity(config_with(onprem), environ)
    assert (identity.host_identifier, identity.region, identity.source) == (
        "arn:aws:iam::1:user/x",
        "us-west-2",
        ENVIRONMENT,
    )
    assert identity.on_premises is not None
    assert identity.credential_source == f"IAM user keys in {onprem}"


def test_an_invalid_on_premises_file_is_a_host_identity_error(tmp_path: Path) -> None:
    onprem = tmp_path / "codedeploy.onpremises.yml"
    onprem.write_text(USER_FILE.replace(":aws_access_key_id:", ":other:"), encoding="utf-8")
    with pytest.raises(HostIdentityError) as caught:
        resolve_host_identity(config_with(onprem), {})
    assert caught.value.message == (
        f"on-premises file {onprem} lacks aws_access_key_id, which iam_user_arn needs"
    )


def test_no_metadata_service_names_the_on_premises_way_out(tmp_path: Path) -> None:
    imds = InstanceMetadataClient(
        f"http://127.0.0.1:{unused_port()}",
        retry=RetryPolicy(first_delay=0.01, max_delay=0.01, total_wait=0.0),
    )
    onprem = tmp_path / "codedeploy.onpremises.yml"
    with pytest.raises(HostIdentityError) as caught:
        resolve_host_identity(config_with(onprem), {}, imds=imds)
    assert caught.value.message.startswith("cannot determine the EC2 host identity:")
    assert str(onprem) in caught.value.message
    assert "\n" not in caught.value.message


def test_disable_imds_v1_from_the_configuration_is_honoured(tmp_path: Path) -> None:
    behaviour = ImdsBehaviour(allow_v1=True, token_status=404)
    with ImdsStub(behaviour) as stub:
        with pytest.raises(HostIdentityError, match="disable_imds_v1 is set"):
            resolve_host_identity(
                config_with(tmp_path / "absent.yml", disable_imds_v1=True), environ_for(stub)
            )
        identity = resolve_host_identity(config_with(tmp_path / "absent.yml"), environ_for(stub))
    assert identity.host_identifier == INSTANCE_ARN


def test_metadata_disabled_by_the_sdk_variable_is_an_error_without_requests(
    tmp_path: Path,
) -> None:
    with (
        ImdsStub() as stub,
        pytest.raises(HostIdentityError, match="disabled by AWS_EC2_METADATA_DISABLED"),
    ):
        resolve_host_identity(
            config_with(tmp_path / "absent.yml"),
            environ_for(stub, AWS_EC2_METADATA_DISABLED="true"),
        )
    assert stub.requests == []


def test_an_invalid_region_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(HostIdentityError, match="AWS_REGION 'Frankfurt' is not a region name"):
        resolve_host_identity(config_with(tmp_path / "absent.yml"), {"AWS_REGION": "Frankfurt"})
