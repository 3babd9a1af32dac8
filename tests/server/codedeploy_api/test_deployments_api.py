"""The deployments part of the CodeDeploy API as the AWS CLI uses it, against a real
``codedeploy-server`` with no agent running: deployments that end at once (no hosts, a
minimum that can never be met), deployments left waiting on a silent host, listings with
their filters and pages, and the refusals, each with CodeDeploy's exception name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from tests.support.aws_cli import AwsCli
from tests.support.server import ServerFiles, ServerProcess

ROLE = "arn:aws:iam::000000000000:role/CodeDeploy"
S3 = "bucket=bundles,key=app.zip,bundleType=zip"


@pytest.fixture
def cli(tmp_path: Path, server: ServerProcess, operator: Dict[str, str]) -> AwsCli:
    return AwsCli(tmp_path / "home", server.url, operator)


@pytest.fixture
def client(cli: AwsCli) -> Any:
    return cli.codedeploy_client()


def _group(client: Any, application: str, tag: str, config: str = "") -> None:
    client.create_application(applicationName=application)
    client.create_deployment_group(
        applicationName=application,
        deploymentGroupName="group",
        serviceRoleArn=ROLE,
        onPremisesInstanceTagFilters=[{"Key": "role", "Value": tag, "Type": "KEY_AND_VALUE"}],
        **({"deploymentConfigName": config} if config else {}),
    )


def _host(files: ServerFiles, client: Any, name: str, tag: str) -> None:
    arn = yaml.safe_load(files.admin("keys", "create-host", name).stdout)["iam_user_arn"]
    client.register_on_premises_instance(instanceName=name, iamUserArn=arn)
    client.add_tags_to_on_premises_instances(
        instanceNames=[name], tags=[{"Key": "role", "Value": tag}]
    )


def _deploy(cli: AwsCli, application: str, *extra: str) -> str:
    created = cli.ok(
        "deploy", "create-deployment", "--application-name", application,
        "--deployment-group-name", "group", *extra,
    )  # fmt: skip
    return str(created["deploymentId"])


def _error(cli: AwsCli, code: str, *arguments: str) -> str:
    line = cli.error(*arguments)
    assert f"({code})" in line, line
    return line


def test_a_group_without_hosts_fails_at_once_and_is_listed(cli: AwsCli, client: Any) -> None:
    _group(client, "empty-app", "nobody")
    deployment_id = _deploy(cli, "empty-app", "--s3-location", S3, "--description", "none")
    info = cli.ok("deploy", "get-deployment", "--deployment-id", deployment_id)["deploymentInfo"]
    assert info["status"] == "Failed"  # type: ignore[index]
    assert info["errorInformation"]["code"] == "NO_INSTANCES"  # type: ignore[index]
    assert info["deploymentConfigName"] == "CodeDeployDefault.OneAtATime"  # type: ignore[index]
    assert info["revision"]["s3Location"]["key"] == "app.zip"  # type: ignore[index]
    listed = cli.ok(
        "deploy", "list-deployments", "--application-name", "empty-app",
        "--deployment-group-name", "group", "--include-only-statuses", "Failed",
    )["deployments"]  # fmt: skip
    assert listed == [deployment_id]
    assert cli.ok(
        "deploy", "list-deployments", "--application-name", "empty-app",
        "--deployment-group-name", "group", "--include-only-statuses", "Succeeded",
    )["deployments"] == []  # fmt: skip
    batch = cli.ok("deploy", "batch-get-deployments", "--deployment-ids", deployment_id)
    assert [d["deploymentId"] for d in batch["deploymentsInfo"]] == [deployment_id]  # type: ignore[union-attr, index]
    group = client.get_deployment_group(applicationName="empty-app", deploymentGroupName="group")
    assert group["deploymentGroupInfo"]["lastAttemptedDeployment"]["status"] == "Failed"
    assert "lastSuccessfulDeployment" not in group["deploymentGroupInfo"]


def test_a_minimum_that_can_never_be_met_touches_no_host(
    files: ServerFiles, cli: AwsCli, client: Any
) -> None:
    _host(files, client, "lonely-host", "lonely")
    _group(client, "lonely-app", "lonely", "CodeDeployDefault.HalfAtATime")
    deployment_id = _deploy(cli, "lonely-app", "--s3-location", S3)
    info = client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert (info["status"], info["errorInformation"]["code"]) == (
        "Failed",
        "HEALTH_CONSTRAINTS_INVALID",
    )
    target = client.get_deployment_target(deploymentId=deployment_id, targetId="lonely-host")
    instance = target["deploymentTarget"]["instanceTarget"]
    assert instance["status"] == "Skipped"
    assert {event["status"] for event in instance["lifecycleEvents"]} == {"Skipped"}


def test_a_waiting_deployment_its_hosts_and_the_refusals(
    files: ServerFiles, cli: AwsCli, client: Any
) -> None:
    _host(files, client, "silent-1", "silent")
    _host(files, client, "silent-2", "silent")
    _group(client, "silent-app", "silent", "CodeDeployDefault.AllAtOnce")
    deployment_id = _deploy(cli, "silent-app", "--s3-location", S3)
    info = client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert info["status"] == "InProgress"
    assert info["deploymentOverview"]["InProgress"] == 2
    summary = cli.ok(
        "deploy", "get-deployment-instance", "--deployment-id", deployment_id,
        "--instance-id", "silent-1",
    )["instanceSummary"]  # fmt: skip
    assert summary["status"] == "InProgress"  # type: ignore[index]
    assert summary["lifecycleEvents"][0]["status"] == "Pending"  # type: ignore[index]
    batch = client.batch_get_deployment_instances(
        deploymentId=deployment_id, instanceIds=["silent-1", "silent-2", "elsewhere"]
    )
    assert sorted(s["instanceId"] for s in batch["instancesSummary"]) == ["silent-1", "silent-2"]
    assert "elsewhere" in batch["errorMessage"]
    _error(cli, "DeploymentLimitExceededException", "deploy", "create-deployment",
           "--application-name", "silent-app", "--deployment-group-name", "group",
           "--s3-location", S3)  # fmt: skip
    _error(cli, "InstanceDoesNotExistException", "deploy", "get-deployment-instance",
           "--deployment-id", deployment_id, "--instance-id", "elsewhere")  # fmt: skip
    _error(cli, "DeploymentTargetDoesNotExistException", "deploy", "get-deployment-target",
           "--deployment-id", deployment_id, "--target-id", "elsewhere")  # fmt: skip
    _error(cli, "InvalidDeploymentInstanceTypeException", "deploy", "list-deployment-instances",
           "--deployment-id", deployment_id, "--instance-type-filter", "Blue")  # fmt: skip
    # Nothing was handed out: a stop ends it at once and skips both hosts.
    stopped = cli.ok("deploy", "stop-deployment", "--deployment-id", deployment_id)
    assert stopped["status"] == "Succeeded"
    after = client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert after["status"] == "Stopped"
    assert after["deploymentOverview"]["Skipped"] == 2


def test_refusals_name_codedeploy_exceptions(cli: AwsCli, client: Any) -> None:
    _group(client, "refusing-app", "nobody")
    deploy = ("deploy", "create-deployment", "--application-name", "refusing-app")
    _error(cli, "DeploymentGroupNameRequiredException", *deploy, "--s3-location", S3)
    group = (*deploy, "--deployment-group-name", "group")
    _error(cli, "RevisionRequiredException", *group)
    _error(cli, "DeploymentConfigDoesNotExistException", *group, "--s3-location", S3,
           "--deployment-config-name", "NoSuchConfig")  # fmt: skip
    _error(
        cli, "InvalidRevisionException", *group, "--s3-location", "bucket=b,key=k,bundleType=YAML"
    )
    _error(cli, "InvalidTargetInstancesException", *group, "--s3-location", S3,
           "--target-instances", "autoScalingGroups=asg")  # fmt: skip
    _error(cli, "InvalidUpdateOutdatedInstancesOnlyValueException", *group, "--s3-location",
           S3, "--update-outdated-instances-only")  # fmt: skip
    _error(cli, "DeploymentGroupDoesNotExistException", *deploy, "--deployment-group-name",
           "nope", "--s3-location", S3)  # fmt: skip
    _error(
        cli, "InvalidDeploymentIdException", "deploy", "get-deployment", "--deployment-id", "bogus"
    )
    _error(cli, "DeploymentDoesNotExistException", "deploy", "get-deployment",
           "--deployment-id", "d-ABCDEFGHI")  # fmt: skip
    _error(cli, "ApplicationNameRequiredException", "deploy", "list-deployments",
           "--deployment-group-name", "group")  # fmt: skip
    _error(cli, "DeploymentAlreadyCompletedException", "deploy", "stop-deployment",
           "--deployment-id", _deploy(cli, "refusing-app", "--s3-location", S3))  # fmt: skip


def test_listing_deployments_pages_newest_first(cli: AwsCli, client: Any) -> None:
    _group(client, "paged-app", "nobody")
    made: List[str] = []
    for number in range(103):
        made.append(
            client.create_deployment(
                applicationName="paged-app",
                deploymentGroupName="group",
                revision={
                    "revisionType": "S3",
                    "s3Location": {"bucket": "b", "key": f"{number}.zip", "bundleType": "zip"},
                },
            )["deploymentId"]
        )
    scope = ("--application-name", "paged-app", "--deployment-group-name", "group")
    first = cli.ok("deploy", "list-deployments", *scope, "--no-paginate")
    assert len(first["deployments"]) == 100 and first.get("nextToken")  # type: ignore[arg-type]
    every = cli.ok("deploy", "list-deployments", *scope)["deployments"]
    assert every == list(reversed(made))
    window = client.list_deployments(
        applicationName="paged-app",
        deploymentGroupName="group",
        createTimeRange={"start": 0, "end": 1},
    )
    assert window["deployments"] == []


def test_a_deployed_revision_shows_where_it_was_deployed(cli: AwsCli, client: Any) -> None:
    _group(client, "used-app", "nobody")
    revision = {
        "revisionType": "GitHub",
        "gitHubLocation": {"repository": "octo/app", "commitId": "a" * 40},
    }
    client.register_application_revision(applicationName="used-app", revision=revision)
    unused = client.get_application_revision(applicationName="used-app", revision=revision)
    assert unused["revisionInfo"]["deploymentGroups"] == []
    deployment_id = _deploy(
        cli, "used-app", "--github-location", f"repository=octo/app,commitId={'a' * 40}"
    )
    shown = client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]["revision"]
    assert shown == revision
    used = client.get_application_revision(applicationName="used-app", revision=revision)
    assert used["revisionInfo"]["deploymentGroups"] == ["group"]
    assert used["revisionInfo"]["firstUsedTime"] <= used["revisionInfo"]["lastUsedTime"]
    deployed = cli.ok(
        "deploy", "list-application-revisions", "--application-name", "used-app",
        "--deployed", "include",
    )["revisions"]  # fmt: skip
    assert deployed == [revision]
