"""The per-command flow and the poll loop.

Against the command service stub on loopback where the wire is part of what is shown (a
whole deployment through the poll loop, a failed hook's report, the service's faults);
against the in-process fake where only the poller's logic is (no-ops, refusals, reports
that do not get through, commands left by a crash).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from pathlib import Path
from typing import List

import pytest

from agent.aws_clients.command_service import CommandServiceError
from agent.command_poller.backoff import BackoffPolicy
from agent.command_poller.loop import LoopStatus, PollLoop
from agent.command_poller.ongoing import (
    read_ongoing_records_from_disk,
    write_ongoing_record_to_disk,
)
from agent.command_poller.poller import poll_once, report_commands_interrupted_by_restart
from agent.command_poller.service_client import CommandServiceClient
from agent.revision.errors import RevisionSourceError
from tests.support.command_service import (
    HOST,
    CommandServiceStub,
    Fault,
    acknowledgements_of,
    client_for,
    completion_of,
    queue_deployment,
)
from tests.support.fake_command_service import FakeCommandService
from tests.support.fake_revision_fetcher import FakeRevisionFetcher
from tests.support.poller_host import Host
from tests.support.signing import SigningKit, replace_in_pkcs7
from tests.support.traced_revisions import SERVICE_ORDER, make_revision, spec_json
from tests.support.waiting import wait_until

SECOND_HOST = "arn:aws:iam::123456789012:user/second-test-host"


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def poll_all(
    client: CommandServiceClient, host: Host, kit: SigningKit, count: int, identifier: str = HOST
) -> None:
    settings = dataclasses.replace(host.settings(kit), host_identifier=identifier)
    for _ in range(count):
        result = poll_once(client, settings, rng=random.Random(1))
        assert result.command is not None


def test_a_signed_in_place_deployment_acks_and_completes_each_command_once(
    stub: CommandServiceStub, host: Host, kit: SigningKit
) -> None:
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    ids = queue_deployment(stub, "d-FIRST0001", kit.sign(spec_json("d-FIRST0001", revision)))
    loop = PollLoop(client_for(stub), host.settings(kit), wait_between_runs=0.01)
    loop.start()
    try:
        assert wait_until(lambda: len(stub.completions()) == len(ids))
    finally:
        assert loop.wait_stopped(30)
    for name, command_id in zip(SERVICE_ORDER, ids):
        completions = completion_of(stub, command_id)
        assert len(completions) == 1, name
        assert completions[0]["CommandStatus"] == "Succeeded", completions[0]
        # A first deployment has no previous revision, so ApplicationStop runs nothing.
        assert acknowledgements_of(stub, command_id) == [
            name in ("ApplicationStop", "ValidateService")
        ], name
    assert host.trace_lines() == [
        f"{event} d-FIRST0001" for event in ("BeforeInstall", "AfterInstall", "ApplicationStart")
    ]
    assert (host.destination / "index.html").read_text(encoding="utf-8") == "hello\n"
    assert read_ongoing_records_from_disk(host.root) == []
    assert loop.status.state == "stopped"
    assert loop.status.last is not None and "ValidateService of d-FIRST0001" in loop.status.last

    # The second deployment's ApplicationStop runs the first revision's script. (Polled as
    # another host: a poll of the stopped loop may still be on its way to the stub, and
    # would take a command queued for the first host and drop it.)
    payload = kit.sign(spec_json("d-SECOND002", revision))
    ids = queue_deployment(stub, "d-SECOND002", payload, host=SECOND_HOST)
    poll_all(client_for(stub), host, kit, len(ids), identifier=SECOND_HOST)
    assert acknowledgements_of(stub, ids[0]) == [False]
    assert host.trace_lines()[3] == "ApplicationStop d-SECOND002"
    assert all(completion_of(stub, i)[0]["CommandStatus"] == "Succeeded" for i in ids)


def test_a_failing_hook_is_reported_with_code_4_and_the_log_tail(
    stub: CommandServiceStub, host: Host, kit: SigningKit
) -> None:
    revision = make_revision(
        host.base / "revision",
        host.trace,
        host.destination,
        scripts={"AfterInstall": "echo 'database migration broke' >&2\nexit 3"},
    )
    ids = queue_deployment(
        stub,
        "d-FAILING01",
        kit.sign(spec_json("d-FAILING01", revision)),
        commands=("DownloadBundle", "Install", "AfterInstall"),
    )
    poll_all(client_for(stub), host, kit, 3)
    [completion] = completion_of(stub, ids[2])
    assert completion["CommandStatus"] == "Failed"
    payload = completion["payload"]
    assert isinstance(payload, dict)
    assert payload["error_code"] == 4
    assert payload["script_name"] == "scripts/AfterInstall.sh"
    assert "database migration broke" in payload["log"]
    assert payload["message"]
    assert len(stub.completions()) == 3
    assert read_ongoing_records_from_disk(host.root) == []


def test_a_noop_command_is_acknowledged_as_such_and_runs_nothing(
    service: FakeCommandService, host: Host, kit: SigningKit
) -> None:
    revision = make_revision(
        host.base / "revision", host.trace, host.destination, events=("AfterInstall",)
    )
    ids = queue_deployment(
        service,
        "d-NOOP00001",
        kit.sign(spec_json("d-NOOP00001", revision)),
        commands=("DownloadBundle", "Install", "ValidateService"),
    )
    poll_all(service, host, kit, 3)
    assert acknowledgements_of(service, ids[2]) == [True]
    [completion] = completion_of(service, ids[2])
    assert completion["CommandStatus"] == "Succeeded"
    assert host.trace_lines() == []


@pytest.mark.parametrize("answer", ["Succeeded", "Failed"])
def test_a_command_the_service_already_finished_is_not_run(
    host: Host, kit: SigningKit, answer: str
) -> None:
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    service = FakeCommandService(ack_status=answer)
    ids = queue_deployment(
        service,
        "d-DONE00001",
        kit.sign(spec_json("d-DONE00001", revision)),
        commands=("DownloadBundle", "ApplicationStop"),
    )
    poll_all(service, host, kit, 2)
    # DownloadBundle is never a no-op: not run, not completed.
    assert completion_of(service, ids[0]) == []
    assert not (host.root.path / "group-1" / "d-DONE00001" / "deployment-archive").exists()
    # A no-op the service marked Failed is completed as Succeeded; Succeeded is left be.
    noop = completion_of(service, ids[1])
    if answer == "Failed":
        assert [c["CommandStatus"] for c in noop] == ["Succeeded"]
    else:
        assert noop == []
    assert host.trace_lines() == []


def test_a_tampered_specification_fails_the_command_with_a_clear_message(
    service: FakeCommandService, host: Host, kit: SigningKit
) -> None:
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    signed = kit.sign(spec_json("d-TAMPERED1", revision, group_id="group-a"))
    ids = queue_deployment(
        service,
        "d-TAMPERED1",
        replace_in_pkcs7(signed, b'"group-a"', b'"group-b"'),
        commands=("DownloadBundle",),
    )
    poll_all(service, host, kit, 1)
    [completion] = completion_of(service, ids[0])
    assert completion["CommandStatus"] == "Failed"
    payload = completion["payload"]
    assert isinstance(payload, dict)
    assert "signature" in str(payload["message"]).lower()
    assert "\n" not in str(payload["message"])
    assert not host.root.path.joinpath("group-a").exists()
    assert not host.root.path.joinpath("group-b").exists()


def test_unsigned_specifications_need_the_operator_s_consent(
    service: FakeCommandService, host: Host
) -> None:
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    ids = queue_deployment(
        service,
        "d-UNSIGNED1",
        spec_json("d-UNSIGNED1", revision),
        "TEXT/JSON",
        commands=("DownloadBundle", "DownloadBundle"),
    )
    poll_once(service, host.settings(None))
    [refused] = completion_of(service, ids[0])
    assert refused["CommandStatus"] == "Failed"
    assert "allow_unsigned_deployment_specs" in str(refused["payload"])
    poll_once(service, host.settings(None, allow_unsigned=True))
    [accepted] = completion_of(service, ids[1])
    assert accepted["CommandStatus"] == "Succeeded"


def test_an_unexpected_error_is_reported_as_code_5_in_one_line(
    service: FakeCommandService, host: Host, kit: SigningKit
) -> None:
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    host.root.path.mkdir(parents=True)
    (host.root.path / "group-1").write_text("not a folder", encoding="utf-8")
    ids = queue_deployment(
        service,
        "d-UNEXPECT1",
        kit.sign(spec_json("d-UNEXPECT1", revision)),
        commands=("DownloadBundle",),
    )
    poll_all(service, host, kit, 1)
    [completion] = completion_of(service, ids[0])
    payload = completion["payload"]
    assert isinstance(payload, dict)
    assert completion["CommandStatus"] == "Failed"
    assert payload["error_code"] == 5
    assert str(payload["message"]).startswith("unexpected ")
    assert "\n" not in str(payload["message"])
    assert "Traceback" not in json.dumps(payload)


def test_a_revision_that_cannot_be_fetched_fails_download_bundle_and_the_next_commands_go_on(
    service: FakeCommandService, host: Host, kit: SigningKit
) -> None:
    refused = RevisionSourceError("s3://revisions/app.tgz: access denied")
    fetcher = FakeRevisionFetcher(error=refused)
    settings = host.settings(kit, revision_fetcher=fetcher)
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    ids = queue_deployment(
        service,
        "d-NOFETCH01",
        kit.sign(spec_json("d-NOFETCH01", revision)),
        commands=("DownloadBundle", "BeforeInstall", "Install"),
    )
    for _ in ids:
        assert poll_once(service, settings, rng=random.Random(1)).command is not None
    [download], [before_install], [install] = (completion_of(service, i) for i in ids)
    assert download["CommandStatus"] == "Failed"
    assert download["payload"] == {
        "error_code": 5,
        "script_name": "",
        "message": "s3://revisions/app.tgz: access denied",
        "log": "",
    }
    assert len(fetcher.calls) == 1
    # Nothing was downloaded: BeforeInstall has no scripts to run (a no-op), and Install
    # cannot do without the revision and says so.
    assert acknowledgements_of(service, ids[1]) == [True]
    assert before_install["CommandStatus"] == "Succeeded"
    assert install["CommandStatus"] == "Failed"
    message = str(install["payload"]["message"])  # type: ignore[index]
    assert "appspec" in message.lower() and "\n" not in message, message
    assert host.trace_lines() == []
    assert read_ongoing_records_from_disk(host.root) == []


def test_service_faults_back_off_and_never_run_a_command_twice(
    stub: CommandServiceStub, host: Host, kit: SigningKit
) -> None:
    revision = make_revision(
        host.base / "revision", host.trace, host.destination, events=("BeforeInstall",)
    )
    for fault in (Fault.SERVER_ERROR, Fault.THROTTLING, Fault.RESET, Fault.HANG):
        stub.inject_fault("PollHostCommand", fault)
    stub.inject_fault("GetDeploymentSpecification", Fault.SERVER_ERROR)
    stub.inject_fault("PutHostCommandComplete", Fault.SERVER_ERROR, times=2)
    ids = queue_deployment(
        stub,
        "d-FAULTS001",
        kit.sign(spec_json("d-FAULTS001", revision)),
        commands=("DownloadBundle", "BeforeInstall"),
    )
    statuses: List[LoopStatus] = []
    loop = PollLoop(
        client_for(stub, read_timeout=0.5),
        host.settings(kit),
        wait_between_runs=0.01,
        listener=statuses.append,
    )
    loop.start()
    try:
        assert wait_until(lambda: len(stub.completions()) == 2)
    finally:
        assert loop.wait_stopped(30)
    polls = stub.requests_for("PollHostCommand")
    assert len([p for p in polls if p.fault is not None]) == 4
    assert len(polls) >= 6
    # The spec fetch failed once: the command came back and ran once.
    assert len(stub.requests_for("GetDeploymentSpecification")) >= 2
    for command_id in ids:
        assert [c["CommandStatus"] for c in completion_of(stub, command_id)] == ["Succeeded"]
    assert host.trace_lines() == ["BeforeInstall d-FAULTS001"]
    assert any(s.state == "waiting after error" for s in statuses)
    assert any(s.state == "running" and s.current for s in statuses)


def test_a_completion_that_never_gets_through_is_not_retried_forever(
    service: FakeCommandService, host: Host, kit: SigningKit
) -> None:
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    service.inject_fault("PutHostCommandComplete", Fault.SERVER_ERROR, times=3)
    queue_deployment(
        service, "d-NOREPORT1", kit.sign(spec_json("d-NOREPORT1", revision)), commands=("Install",)
    )
    result = poll_once(service, host.settings(kit, attempts=3), rng=random.Random(2))
    assert result.outcome is not None
    assert result.outcome.ran and not result.outcome.reported
    assert len(service.requests_for("PutHostCommandComplete")) == 3


def test_a_command_left_by_a_crash_is_reported_failed_after_restart(
    service: FakeCommandService, host: Host, kit: SigningKit
) -> None:
    write_ongoing_record_to_disk(host.root, "d-CRASHED01", "hc-crashed")
    old = write_ongoing_record_to_disk(host.root, "d-ANCIENT01", "hc-ancient")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    service.inject_fault("PutHostCommandComplete", Fault.SERVER_ERROR)

    settings = host.settings(kit, attempts=1)
    with pytest.raises(CommandServiceError):
        report_commands_interrupted_by_restart(service, settings)
    # Not reported yet: the record stays for the next attempt.
    assert [r.deployment_id for r in read_ongoing_records_from_disk(host.root)] == ["d-CRASHED01"]

    assert report_commands_interrupted_by_restart(service, settings) == ["hc-crashed"]
    [completion] = completion_of(service, "hc-crashed")
    assert completion["CommandStatus"] == "Failed"
    payload = completion["payload"]
    assert isinstance(payload, dict)
    assert payload["error_code"] == 7
    assert completion_of(service, "hc-ancient") == []
    assert read_ongoing_records_from_disk(host.root) == []


def test_a_command_arriving_while_stopping_is_left_to_the_service(
    service: FakeCommandService, host: Host, kit: SigningKit
) -> None:
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    queue_deployment(
        service, "d-LATE00001", kit.sign(spec_json("d-LATE00001", revision)), commands=("Install",)
    )
    result = poll_once(service, host.settings(kit), accept=lambda _command: False)
    assert result.command is not None and result.outcome is None
    assert service.requests_for("PutHostCommandAcknowledgement") == []
    assert service.requests_for("GetDeploymentSpecification") == []


def test_backoff_grows_with_failures_up_to_its_caps_and_never_reaches_zero() -> None:
    policy = BackoffPolicy(base_seconds=1.0, cap_seconds=8.0, throttle_cap_seconds=30.0)
    rng = random.Random(7)
    ceilings = [policy.ceiling(n) for n in range(1, 7)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert policy.ceiling(1, throttled=True) > policy.ceiling(1)
    assert policy.ceiling(10, throttled=True) == 30.0
    for failures in range(1, 10):
        for throttled in (False, True):
            delay = policy.delay(failures, throttled=throttled, rng=rng)
            ceiling = policy.ceiling(failures, throttled=throttled)
            assert ceiling / 2 <= delay <= ceiling
