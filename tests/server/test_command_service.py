"""The command service of a real ``codedeploy-server`` as the agent's own client speaks it
(botocore, the shipped models, SigV4 with host keys from ``keys create-host``), without
agents: the order of a host's commands, the signed specification, the long poll woken by a
new command, a host acting as another, and a host that never answers timing out."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import yaml
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from agent.aws_clients.command_service import (
    CommandServiceError,
    CommandServiceSettings,
    CommandStatus,
    HostCommand,
    new_command_service_client,
)
from agent.deployment_specification.envelope import (
    SignatureSettings,
    open_deployment_specification,
)
from agent.deployment_specification.model import BundleType, GitHubRevision, S3Revision
from agent.errors import Diagnostics, ErrorCode
from server.deployment_engine import IN_PLACE_COMMANDS
from tests.support.server import ServerFiles, ServerProcess, free_loopback_port
from tests.support.server_hosts import REGION, Host, deploy_to, operator_client

POLL_WAIT = 10
TIMEOUT = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ServerFiles:
    files = ServerFiles(tmp_path_factory.mktemp("server"))
    files.write_config(f"poll_wait_seconds: {POLL_WAIT}\nhost_command_timeout_seconds: {TIMEOUT}\n")
    return files


@pytest.fixture(scope="module")
def operator(files: ServerFiles, server: ServerProcess) -> Any:
    return operator_client(files, server, "wire-operator")


@pytest.fixture(scope="module")
def hosts(files: ServerFiles, server: ServerProcess, operator: Any) -> Iterator[List[Host]]:
    yield [Host(files, server, operator, f"wire-host-{number}", POLL_WAIT) for number in range(5)]


def signature_settings(files: ServerFiles) -> SignatureSettings:
    document: Dict[str, str] = yaml.safe_load(files.admin("signer").stdout)
    return SignatureSettings(
        ca_file=Path(document["ca_file"]), expected_signer=document["signer_name"]
    )


def test_a_host_runs_its_commands_one_at_a_time_from_a_signed_specification(
    files: ServerFiles, operator: Any, hosts: List[Host]
) -> None:
    host = hosts[0]
    deployment_id = deploy_to(operator, "wire-order", host)
    ran: List[str] = []
    for _ in IN_PLACE_COMMANDS:
        command = host.poll()
        assert command is not None and command.host_identifier == host.arn
        assert command.deployment_execution_id == deployment_id
        envelope = host.client.get_deployment_specification(deployment_id, host.arn)
        assert envelope.format == "PKCS7/JSON"
        spec = open_deployment_specification(
            envelope.format, envelope.payload, signature_settings(files)
        )
        assert (spec.deployment_id, spec.application_name) == (deployment_id, "wire-order")
        assert spec.file_exists_behavior.value == "OVERWRITE"
        assert spec.revision == S3Revision("bundles", "app.tgz", BundleType.TGZ)
        ack = host.client.put_host_command_acknowledgement(command.host_command_identifier, False)
        assert ack is CommandStatus.IN_PROGRESS
        host.client.put_host_command_complete(
            command.host_command_identifier, CommandStatus.SUCCEEDED, Diagnostics.succeeded("")
        )
        ran.append(command.command_name)
    assert ran == list(IN_PLACE_COMMANDS)
    info = operator.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert info["status"] == "Succeeded"


def test_a_github_revision_reaches_the_host_as_account_repository_and_commit(
    files: ServerFiles, operator: Any, hosts: List[Host]
) -> None:
    host = hosts[4]
    commit = "0123456789abcdef0123456789abcdef01234567"
    revision = {
        "revisionType": "GitHub",
        "gitHubLocation": {"repository": "octo/app", "commitId": commit},
    }
    deployment_id = deploy_to(operator, "wire-github", host, revision)
    command = host.poll()
    assert command is not None
    envelope = host.client.get_deployment_specification(deployment_id, host.arn)
    spec = open_deployment_specification(
        envelope.format, envelope.payload, signature_settings(files)
    )
    assert spec.revision == GitHubRevision("octo", "app", commit)


def test_a_waiting_poll_gets_the_command_queued_while_it_waits(
    operator: Any, hosts: List[Host]
) -> None:
    host = hosts[1]
    got: List[Optional[HostCommand]] = []
    started = threading.Event()

    def poll() -> None:
        started.set()
        got.append(host.poll())

    thread = threading.Thread(target=poll)
    thread.start()
    started.wait()
    deployment_id = deploy_to(operator, "wire-wake", host)
    thread.join(POLL_WAIT + 30)
    assert got and got[0] is not None, "the poll waiting when the command came got nothing"
    assert (got[0].deployment_execution_id, got[0].command_name) == (
        deployment_id,
        "ApplicationStop",
    )
    # Not acknowledged: its next poll (the agent never got the answer) gets it again.
    again = host.poll()
    assert again is not None and again.host_command_identifier == got[0].host_command_identifier
    host.client.put_host_command_acknowledgement(again.host_command_identifier, False)
    host.client.put_host_command_complete(
        again.host_command_identifier, CommandStatus.SUCCEEDED, Diagnostics.succeeded("")
    )


def _refused(call: Any) -> str:
    with pytest.raises(CommandServiceError) as raised:
        call()
    return raised.value.code


def test_a_host_cannot_act_as_another(operator: Any, hosts: List[Host]) -> None:
    mallory, victim = hosts[2], hosts[3]
    deployment_id = deploy_to(operator, "wire-other", victim)
    assert _refused(lambda: mallory.poll(as_host=victim.arn)) == "AccessDeniedException"
    command = victim.poll()
    assert command is not None
    command_id = command.host_command_identifier
    for call in (
        lambda: mallory.client.put_host_command_acknowledgement(command_id, False),
        lambda: mallory.client.put_host_command_complete(
            command_id, CommandStatus.FAILED, Diagnostics(ErrorCode.SCRIPT_FAILED, "forged")
        ),
        lambda: mallory.client.post_host_command_update(command_id),
        lambda: mallory.client.get_deployment_specification(deployment_id, mallory.arn),
        lambda: mallory.client.get_deployment_specification(deployment_id, victim.arn),
    ):
        assert _refused(call) == "AccessDeniedException"
    # Once the server keeps the victim's signed specification, it is still only the victim's.
    victim.client.get_deployment_specification(deployment_id, victim.arn)
    assert (
        _refused(lambda: mallory.client.get_deployment_specification(deployment_id, mallory.arn))
        == "AccessDeniedException"
    )
    # Nothing changed: the victim's command is still its own, and runs.
    assert (
        victim.client.put_host_command_acknowledgement(command_id, False)
        is CommandStatus.IN_PROGRESS
    )
    victim.client.put_host_command_complete(
        command_id, CommandStatus.SUCCEEDED, Diagnostics.succeeded("")
    )
    target = operator.get_deployment_target(deploymentId=deployment_id, targetId=victim.name)
    events = target["deploymentTarget"]["instanceTarget"]["lifecycleEvents"]
    assert (events[0]["lifecycleEventName"], events[0]["status"]) == (
        "ApplicationStop",
        "Succeeded",
    )


def test_an_operator_key_may_not_poll(files: ServerFiles, server: ServerProcess) -> None:
    keys = files.create_operator("not-a-host")
    settings = CommandServiceSettings(region=REGION, endpoint_url=server.url, max_attempts=1)
    client = new_command_service_client(
        settings, Credentials(keys["AccessKeyId"], keys["SecretAccessKey"])
    )
    arn = "arn:aws:iam::000000000000:user/not-a-host"
    assert _refused(lambda: client.poll_host_command(arn)) == "AccessDeniedException"


def test_a_host_that_never_polls_times_out_and_fails(
    files: ServerFiles, server: ServerProcess, operator: Any
) -> None:
    silent = Host(files, server, operator, "wire-silent", POLL_WAIT)
    deployment_id = deploy_to(operator, "wire-silent", silent)
    waiter = operator.get_waiter("deployment_successful")
    with pytest.raises(Exception, match="terminal failure"):
        waiter.wait(deploymentId=deployment_id, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    info = operator.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert info["status"] == "Failed"
    target = operator.get_deployment_target(deploymentId=deployment_id, targetId=silent.name)
    instance = target["deploymentTarget"]["instanceTarget"]
    assert instance["status"] == "Failed"
    stop = instance["lifecycleEvents"][0]
    assert stop["status"] == "Failed"
    assert "did not ask for this command" in stop["diagnostics"]["message"]
    assert [event["status"] for event in instance["lifecycleEvents"][1:]] == ["Skipped"] * 6


def test_a_command_handed_out_before_a_crash_is_neither_lost_nor_handed_out_twice(
    tmp_path: Path,
) -> None:
    own = ServerFiles(tmp_path / "server")
    own.write_config("poll_wait_seconds: 1\n")
    listen = ["--listen", f"127.0.0.1:{free_loopback_port()}"]
    server = ServerProcess(own, listen).start()
    try:
        operator = operator_client(own, server, "crash-operator")
        host = Host(own, server, operator, "crash-host", POLL_WAIT)
        deploy_to(operator, "crash-wire", host)
        handed = host.poll()
        assert handed is not None
        # The server dies before the host acknowledged (its answer may never have arrived).
        assert server.process is not None
        server.process.kill()
        server.process.wait()
        server = ServerProcess(own, listen).start()
        again = host.poll()
        assert again is not None
        assert again.host_command_identifier == handed.host_command_identifier
        ack = host.client.put_host_command_acknowledgement(again.host_command_identifier, False)
        assert ack is CommandStatus.IN_PROGRESS
        server.process.kill()  # and dies again while the host runs it
        server.process.wait()
        server = ServerProcess(own, listen).start()
        assert host.poll() is None  # acknowledged: never handed out again
        host.client.put_host_command_complete(
            again.host_command_identifier, CommandStatus.SUCCEEDED, Diagnostics.succeeded("")
        )
        following = host.poll()
        assert following is not None and following.command_name == "DownloadBundle"
    finally:
        server.stop()
