"""Deployments of the seed's flow, end to end: the real AWS CLI (``deploy push``,
``create-deployment``, ``wait deployment-successful``, ``get-deployment``,
``get-deployment-target``, ``stop-deployment``) against ``codedeploy-server``, bundles in
moto's S3, and three real agent daemons, each with its own copy of the application; on
SQLite and on PostgreSQL.

A deployment is followed through botocore until it ends (a fraction of a second between
looks), then ``aws deploy wait deployment-successful`` is asked, whose first look is
immediate: the CLI's own 15-second rhythm would make each test a quarter of a minute
longer."""

from __future__ import annotations

from typing import Dict, List

import pytest

from tests.support.fleet import HOOKED, Fleet

pytestmark = [pytest.mark.root, pytest.mark.fleet]

IN_PLACE = [
    "ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "AfterInstall",
    "ApplicationStart", "ValidateService",
]  # fmt: skip


def _waiter(fleet: Fleet, deployment_id: str) -> int:
    waited = fleet.cli.run(
        "deploy", "wait", "deployment-successful", "--deployment-id", deployment_id
    )
    return waited.returncode


def _targets(fleet: Fleet, deployment_id: str) -> Dict[str, Dict[str, object]]:
    listed = fleet.cli.ok("deploy", "list-deployment-targets", "--deployment-id", deployment_id)
    names: List[str] = listed["targetIds"]  # type: ignore[assignment]
    batch = fleet.client.batch_get_deployment_targets(deploymentId=deployment_id, targetIds=names)
    return {
        target["instanceTarget"]["targetId"]: target["instanceTarget"]
        for target in batch["deploymentTargets"]
    }


def test_half_at_a_time_deploys_the_revision_to_every_host(fleet: Fleet) -> None:
    group = fleet.make_group("half-app", "CodeDeployDefault.HalfAtATime")
    location = fleet.push("half-app", fleet.revision("half-app", "v1"))
    deployment_id = fleet.create_deployment("half-app", location, "--description", "first")
    fleet.wait_for_end(deployment_id)
    assert _waiter(fleet, deployment_id) == 0, fleet.diagnostics()
    info = fleet.cli.ok("deploy", "get-deployment", "--deployment-id", deployment_id)[
        "deploymentInfo"
    ]
    assert info["status"] == "Succeeded"  # type: ignore[index]
    assert info["deploymentGroupName"] == group  # type: ignore[index]
    assert info["description"] == "first"  # type: ignore[index]
    assert info["deploymentOverview"]["Succeeded"] == 3  # type: ignore[index]
    for host in fleet.hosts:
        assert host.installed("half-app") == "v1\n"
        events = [line.split()[0] for line in host.trace(deployment_id)]
        assert events == [e for e in HOOKED if e != "ApplicationStop"]
    target = fleet.cli.ok(
        "deploy", "get-deployment-target", "--deployment-id", deployment_id,
        "--target-id", fleet.hosts[0].name,
    )["deploymentTarget"]  # fmt: skip
    instance = target["instanceTarget"]  # type: ignore[index]
    assert instance["status"] == "Succeeded"
    assert [event["lifecycleEventName"] for event in instance["lifecycleEvents"]] == IN_PLACE
    assert all(event["status"] == "Succeeded" for event in instance["lifecycleEvents"])
    group_info = fleet.client.get_deployment_group(
        applicationName="half-app", deploymentGroupName=group
    )["deploymentGroupInfo"]
    assert group_info["lastSuccessfulDeployment"]["deploymentId"] == deployment_id
    assert group_info["targetRevision"]["s3Location"]["key"] == location["key"]


def test_one_at_a_time_fails_at_the_second_host_and_succeeds_when_the_last_fails(
    fleet: Fleet,
) -> None:
    fleet.make_group("one-app")  # the default configuration: OneAtATime
    failing = fleet.push("one-app", fleet.revision("one-app", "v1", fail_validate_at=2))
    failed_id = fleet.create_deployment("one-app", failing)
    failed = fleet.wait_for_end(failed_id)
    assert failed["status"] == "Failed", fleet.diagnostics()
    assert failed["errorInformation"]["code"] == "HEALTH_CONSTRAINTS"
    assert _waiter(fleet, failed_id) != 0
    targets = _targets(fleet, failed_id)
    by_status = sorted(str(target["status"]) for target in targets.values())
    assert by_status == ["Failed", "Skipped", "Succeeded"]
    name = next(name for name, target in targets.items() if target["status"] == "Failed")
    shown = fleet.cli.ok(
        "deploy", "get-deployment-target", "--deployment-id", failed_id, "--target-id", name
    )["deploymentTarget"]["instanceTarget"]["lifecycleEvents"]  # type: ignore[index]
    validate = shown[-1]
    assert (validate["lifecycleEventName"], validate["status"]) == ("ValidateService", "Failed")
    assert validate["diagnostics"]["errorCode"] == "ScriptFailed"
    assert validate["diagnostics"]["scriptName"] == "scripts/ValidateService.sh"
    assert "fails on purpose" in validate["diagnostics"]["logTail"]
    skipped = next(name for name, target in targets.items() if target["status"] == "Skipped")
    assert next(h for h in fleet.hosts if h.name == skipped).trace(failed_id) == []

    last_fails = fleet.push("one-app", fleet.revision("one-app", "v2", fail_validate_at=3))
    ok_id = fleet.create_deployment("one-app", last_fails)
    assert fleet.wait_for_end(ok_id)["status"] == "Succeeded", fleet.diagnostics()
    assert _waiter(fleet, ok_id) == 0


def test_a_custom_minimum_of_healthy_hosts(fleet: Fleet) -> None:
    fleet.cli.ok(
        "deploy", "create-deployment-config", "--deployment-config-name", "KeepOne",
        "--minimum-healthy-hosts", "type=HOST_COUNT,value=1",
    )  # fmt: skip
    fleet.make_group("custom-app", "KeepOne")
    # Two hosts at once; one may fail and the two others must succeed.
    location = fleet.push("custom-app", fleet.revision("custom-app", "v1", fail_validate_at=1))
    deployment_id = fleet.create_deployment(
        "custom-app", location, "--ignore-application-stop-failures",
        "--file-exists-behavior", "OVERWRITE",
    )  # fmt: skip
    ended = fleet.wait_for_end(deployment_id)
    assert ended["status"] == "Succeeded", fleet.diagnostics()
    assert ended["deploymentConfigName"] == "KeepOne"
    assert ended["ignoreApplicationStopFailures"] is True
    assert ended["fileExistsBehavior"] == "OVERWRITE"
    assert ended["deploymentOverview"]["Succeeded"] == 2
    assert ended["deploymentOverview"]["Failed"] == 1
    listed = fleet.cli.ok(
        "deploy", "list-deployment-instances", "--deployment-id", deployment_id,
        "--instance-status-filter", "Failed",
    )["instancesList"]  # fmt: skip
    assert len(listed) == 1  # type: ignore[arg-type]


def test_stop_deployment_lets_the_running_command_finish_and_skips_the_rest(
    fleet: Fleet,
) -> None:
    fleet.make_group("stop-app")
    location = fleet.push("stop-app", fleet.revision("stop-app", "v1", held="AfterInstall"))
    deployment_id = fleet.create_deployment("stop-app", location)
    busy = fleet.wait_for_trace(f"AfterInstall {deployment_id}")
    stopped = fleet.cli.ok("deploy", "stop-deployment", "--deployment-id", deployment_id)
    assert stopped["status"] == "Pending"  # AfterInstall still runs
    assert fleet.info(deployment_id)["status"] == "InProgress"
    fleet.release("stop-app", "v1")
    ended = fleet.wait_for_end(deployment_id)
    assert ended["status"] == "Stopped"
    assert ended["errorInformation"]["code"] == "MANUAL_STOP"
    assert [line.split()[0] for line in busy.trace(deployment_id)] == [
        "BeforeInstall",
        "AfterInstall",
    ]
    statuses = {name: t["status"] for name, t in _targets(fleet, deployment_id).items()}
    assert statuses.pop(busy.name) == "Unknown"
    assert sorted(statuses.values()) == ["Skipped", "Skipped"]
    assert all(host.trace(deployment_id) == [] for host in fleet.hosts if host is not busy)
    again = fleet.cli.error("deploy", "stop-deployment", "--deployment-id", deployment_id)
    assert "DeploymentAlreadyCompletedException" in again


def test_a_failed_deployment_rolls_back_automatically(fleet: Fleet) -> None:
    fleet.make_group(
        "rollback-app",
        autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
    )
    good = fleet.create_deployment(
        "rollback-app", fleet.push("rollback-app", fleet.revision("rollback-app", "v1"))
    )
    assert fleet.wait_for_end(good)["status"] == "Succeeded", fleet.diagnostics()
    bad_revision = fleet.revision("rollback-app", "v2", fail_validate_at=1)
    bad = fleet.create_deployment("rollback-app", fleet.push("rollback-app", bad_revision))
    failed = fleet.wait_for_end(bad)
    assert failed["status"] == "Failed"
    rollback_id = failed["rollbackInfo"]["rollbackDeploymentId"]
    rolled = fleet.wait_for_end(rollback_id)
    assert rolled["status"] == "Succeeded", fleet.diagnostics()
    shown = fleet.cli.ok("deploy", "get-deployment", "--deployment-id", rollback_id)[
        "deploymentInfo"
    ]
    assert shown["creator"] == "codeDeployRollback"  # type: ignore[index]
    assert shown["rollbackInfo"]["rollbackTriggeringDeploymentId"] == bad  # type: ignore[index]
    assert shown["revision"] == fleet.info(good)["revision"]  # type: ignore[index]
    for host in fleet.hosts:
        assert host.installed("rollback-app") == "v1\n"
