"""The CodeDeploy API as the real AWS CLI uses it, against a real ``codedeploy-server``.

One server (SQLite) for the module; each test uses names of its own. Errors are asserted
as the CLI prints them, which is what an operator sees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from tests.support.aws_cli import AwsCli
from tests.support.server import ServerProcess

ROLE = "arn:aws:iam::000000000000:role/CodeDeployServiceRole"


@pytest.fixture
def cli(tmp_path: Path, server: ServerProcess, operator: Dict[str, str]) -> AwsCli:
    return AwsCli(tmp_path / "home", server.url, operator)


def botocore_client(cli: AwsCli) -> Any:
    return cli.codedeploy_client()


def _error_line(operation: str, code: str) -> str:
    return f"An error occurred ({code}) when calling the {operation} operation"


def test_applications_are_created_listed_renamed_and_deleted(cli: AwsCli) -> None:
    created = cli.ok("deploy", "create-application", "--application-name", "apps-one")
    info = cli.ok("deploy", "get-application", "--application-name", "apps-one")["application"]
    assert info["applicationId"] == created["applicationId"]  # type: ignore[index]
    assert info["computePlatform"] == "Server"  # type: ignore[index]
    assert isinstance(info["createTime"], float)  # type: ignore[index]
    assert "apps-one" in cli.ok("deploy", "list-applications")["applications"]  # type: ignore[operator]
    cli.ok(
        "deploy",
        "update-application",
        "--application-name",
        "apps-one",
        "--new-application-name",
        "apps-two",
    )
    batch = cli.ok("deploy", "batch-get-applications", "--application-names", "apps-two")
    assert [a["applicationName"] for a in batch["applicationsInfo"]] == ["apps-two"]  # type: ignore[union-attr, index]
    assert _error_line("CreateApplication", "ApplicationAlreadyExistsException") in cli.error(
        "deploy", "create-application", "--application-name", "apps-two"
    )
    cli.ok("deploy", "delete-application", "--application-name", "apps-two")
    assert cli.error("deploy", "get-application", "--application-name", "apps-two") == (
        _error_line("GetApplication", "ApplicationDoesNotExistException")
        + ": No application found for name: apps-two"
    )


def test_listing_pages_with_next_tokens(cli: AwsCli) -> None:
    # 105 applications through botocore in this process (the CLI's own library): one CLI
    # run each would take minutes.
    client = botocore_client(cli)
    for number in range(105):
        client.create_application(applicationName=f"page-{number:03d}")
    first = cli.ok("deploy", "list-applications", "--no-paginate")
    assert len(first["applications"]) == 100 and first.get("nextToken")  # type: ignore[arg-type]
    every = cli.ok("deploy", "list-applications")["applications"]
    assert [name for name in every if str(name).startswith("page-")] == [  # type: ignore[union-attr]
        f"page-{number:03d}" for number in range(105)
    ]
    assert _error_line("ListApplications", "InvalidNextTokenException") in cli.error(
        "deploy", "list-applications", "--starting-token", "garbage!"
    ) or "InvalidNextTokenException" in cli.error(
        "deploy", "list-applications", "--no-paginate", "--next-token", "garbage"
    )


def test_deployment_groups_select_on_premises_instances_by_tags(cli: AwsCli) -> None:
    cli.ok("deploy", "create-application", "--application-name", "groups-app")
    cli.ok(
        "deploy", "create-deployment-group", "--application-name", "groups-app",
        "--deployment-group-name", "web", "--service-role-arn", ROLE,
        "--deployment-config-name", "CodeDeployDefault.HalfAtATime",
        "--on-premises-instance-tag-filters", "Key=Role,Value=web,Type=KEY_AND_VALUE",
    )  # fmt: skip
    info = cli.ok(
        "deploy", "get-deployment-group", "--application-name", "groups-app",
        "--deployment-group-name", "web",
    )["deploymentGroupInfo"]  # fmt: skip
    assert info["onPremisesInstanceTagFilters"] == [  # type: ignore[index]
        {"Key": "Role", "Value": "web", "Type": "KEY_AND_VALUE"}
    ]
    assert info["deploymentConfigName"] == "CodeDeployDefault.HalfAtATime"  # type: ignore[index]
    assert info["deploymentStyle"]["deploymentType"] == "IN_PLACE"  # type: ignore[index]
    cli.ok(
        "deploy", "update-deployment-group", "--application-name", "groups-app",
        "--current-deployment-group-name", "web", "--new-deployment-group-name", "www",
        "--deployment-config-name", "CodeDeployDefault.AllAtOnce",
    )  # fmt: skip
    listed = cli.ok("deploy", "list-deployment-groups", "--application-name", "groups-app")
    assert listed["deploymentGroups"] == ["www"]
    assert _error_line("CreateDeploymentGroup", "DeploymentGroupAlreadyExistsException") in cli.error(
        "deploy", "create-deployment-group", "--application-name", "groups-app",
        "--deployment-group-name", "www", "--service-role-arn", ROLE,
    )  # fmt: skip
    assert _error_line("CreateDeploymentGroup", "DeploymentConfigDoesNotExistException") in cli.error(
        "deploy", "create-deployment-group", "--application-name", "groups-app",
        "--deployment-group-name", "other", "--service-role-arn", ROLE,
        "--deployment-config-name", "NoSuchConfig",
    )  # fmt: skip
    assert _error_line("CreateDeploymentGroup", "InvalidEC2TagException") in cli.error(
        "deploy", "create-deployment-group", "--application-name", "groups-app",
        "--deployment-group-name", "ec2", "--service-role-arn", ROLE,
        "--ec2-tag-filters", "Key=Name,Value=x,Type=KEY_AND_VALUE",
    )  # fmt: skip
    cli.ok(
        "deploy",
        "delete-deployment-group",
        "--application-name",
        "groups-app",
        "--deployment-group-name",
        "www",
    )
    assert _error_line("GetDeploymentGroup", "DeploymentGroupDoesNotExistException") in cli.error(
        "deploy",
        "get-deployment-group",
        "--application-name",
        "groups-app",
        "--deployment-group-name",
        "www",
    )


def test_on_premises_instances_register_tag_list_and_deregister(cli: AwsCli) -> None:
    arn = "arn:aws:iam::000000000000:user/codedeploy-hosts/host-a"
    cli.ok(
        "deploy",
        "register-on-premises-instance",
        "--instance-name",
        "host-a",
        "--iam-user-arn",
        arn,
    )
    cli.ok(
        "deploy", "register-on-premises-instance", "--instance-name", "host-b",
        "--iam-user-arn", "arn:aws:iam::000000000000:user/codedeploy-hosts/host-b",
    )  # fmt: skip
    cli.ok(
        "deploy",
        "add-tags-to-on-premises-instances",
        "--instance-names",
        "host-a",
        "host-b",
        "--tags",
        "Key=Fleet,Value=blue",
    )
    cli.ok(
        "deploy",
        "add-tags-to-on-premises-instances",
        "--instance-names",
        "host-a",
        "--tags",
        "Key=Tier,Value=web",
    )
    tier = cli.ok(
        "deploy",
        "list-on-premises-instances",
        "--tag-filters",
        "Key=Tier,Value=web,Type=KEY_AND_VALUE",
    )
    assert tier["instanceNames"] == ["host-a"]
    info = cli.ok("deploy", "get-on-premises-instance", "--instance-name", "host-a")["instanceInfo"]
    assert info["iamUserArn"] == arn  # type: ignore[index]
    assert {"Key": "Tier", "Value": "web"} in info["tags"]  # type: ignore[index]
    cli.ok(
        "deploy",
        "remove-tags-from-on-premises-instances",
        "--instance-names",
        "host-a",
        "--tags",
        "Key=Tier,Value=web",
    )
    assert (
        cli.ok("deploy", "list-on-premises-instances", "--tag-filters", "Key=Tier,Type=KEY_ONLY")[
            "instanceNames"
        ]
        == []
    )
    assert _error_line(
        "RegisterOnPremisesInstance", "IamUserArnAlreadyRegisteredException"
    ) in cli.error(
        "deploy",
        "register-on-premises-instance",
        "--instance-name",
        "host-c",
        "--iam-user-arn",
        arn,
    )
    cli.ok("deploy", "deregister-on-premises-instance", "--instance-name", "host-b")
    registered = cli.ok(
        "deploy", "list-on-premises-instances", "--registration-status", "Registered"
    )
    assert "host-b" not in registered["instanceNames"] and "host-a" in registered["instanceNames"]  # type: ignore[operator]
    deregistered = cli.ok("deploy", "batch-get-on-premises-instances", "--instance-names", "host-b")
    assert "deregisterTime" in deregistered["instanceInfos"][0]  # type: ignore[index]
    assert _error_line(
        "AddTagsToOnPremisesInstances", "InstanceNotRegisteredException"
    ) in cli.error(
        "deploy",
        "add-tags-to-on-premises-instances",
        "--instance-names",
        "host-b",
        "--tags",
        "Key=A,Value=b",
    )


def test_revisions_are_registered_and_listed(cli: AwsCli) -> None:
    cli.ok("deploy", "create-application", "--application-name", "revisions-app")
    location = "bucket=builds,key=app/v1.zip,bundleType=zip,eTag=0123abcd"
    cli.ok(
        "deploy",
        "register-application-revision",
        "--application-name",
        "revisions-app",
        "--s3-location",
        location,
        "--description",
        "first build",
    )
    cli.ok(
        "deploy", "register-application-revision", "--application-name", "revisions-app",
        "--github-location", "repository=octo/app,commitId=" + "a" * 40,
    )  # fmt: skip
    revision = cli.ok(
        "deploy",
        "get-application-revision",
        "--application-name",
        "revisions-app",
        "--s3-location",
        location,
    )
    assert revision["revisionInfo"]["description"] == "first build"  # type: ignore[index]
    assert revision["revision"]["s3Location"]["key"] == "app/v1.zip"  # type: ignore[index]
    listed = cli.ok(
        "deploy",
        "list-application-revisions",
        "--application-name",
        "revisions-app",
        "--s3-bucket",
        "builds",
    )
    assert [r["revisionType"] for r in listed["revisions"]] == ["S3"]  # type: ignore[union-attr, index]
    assert _error_line("GetApplicationRevision", "RevisionDoesNotExistException") in cli.error(
        "deploy", "get-application-revision", "--application-name", "revisions-app",
        "--s3-location", "bucket=builds,key=none.zip,bundleType=zip",
    )  # fmt: skip
    assert _error_line("RegisterApplicationRevision", "InvalidRevisionException") in cli.error(
        "deploy", "register-application-revision", "--application-name", "revisions-app",
        "--s3-location", "bucket=builds,key=x.json,bundleType=JSON",
    )  # fmt: skip


def test_deployment_configs_built_in_and_custom(cli: AwsCli) -> None:
    one = cli.ok(
        "deploy",
        "get-deployment-config",
        "--deployment-config-name",
        "CodeDeployDefault.OneAtATime",
    )
    assert one["deploymentConfigInfo"]["minimumHealthyHosts"] == {
        "type": "MOST_CONCURRENCY",
        "value": 1,
    }  # type: ignore[index]
    cli.ok(
        "deploy",
        "create-deployment-config",
        "--deployment-config-name",
        "TwoHealthy",
        "--minimum-healthy-hosts",
        "type=HOST_COUNT,value=2",
    )
    names = cli.ok("deploy", "list-deployment-configs")["deploymentConfigsList"]
    assert {
        "CodeDeployDefault.AllAtOnce",
        "CodeDeployDefault.HalfAtATime",
        "CodeDeployDefault.OneAtATime",
        "TwoHealthy",
    } <= set(names)  # type: ignore[arg-type]
    assert _error_line("CreateDeploymentConfig", "InvalidMinimumHealthyHostValueException") in cli.error(
        "deploy", "create-deployment-config", "--deployment-config-name", "TooMany",
        "--minimum-healthy-hosts", "type=FLEET_PERCENT,value=100",
    )  # fmt: skip
    cli.ok("deploy", "create-application", "--application-name", "configs-app")
    cli.ok(
        "deploy", "create-deployment-group", "--application-name", "configs-app",
        "--deployment-group-name", "g", "--service-role-arn", ROLE, "--deployment-config-name", "TwoHealthy",
    )  # fmt: skip
    assert _error_line("DeleteDeploymentConfig", "DeploymentConfigInUseException") in cli.error(
        "deploy", "delete-deployment-config", "--deployment-config-name", "TwoHealthy"
    )
    assert _error_line("DeleteDeploymentConfig", "InvalidOperationException") in cli.error(
        "deploy",
        "delete-deployment-config",
        "--deployment-config-name",
        "CodeDeployDefault.AllAtOnce",
    )
    cli.ok("deploy", "delete-application", "--application-name", "configs-app")
    cli.ok("deploy", "delete-deployment-config", "--deployment-config-name", "TwoHealthy")
    assert _error_line("GetDeploymentConfig", "DeploymentConfigDoesNotExistException") in cli.error(
        "deploy", "get-deployment-config", "--deployment-config-name", "TwoHealthy"
    )


def test_missing_and_invalid_fields_get_codedeploys_exceptions(cli: AwsCli) -> None:
    # The CLI checks shapes itself unless told not to; the server must check them too.
    assert cli.error(
        "deploy", "create-application", "--application-name", "", profile="unvalidated"
    ) == (
        _error_line("CreateApplication", "ApplicationNameRequiredException")
        + ": applicationName is required"
    )
    assert _error_line("CreateApplication", "InvalidApplicationNameException") in cli.error(
        "deploy", "create-application", "--application-name", "x" * 101, profile="unvalidated"
    )
    assert _error_line("CreateApplication", "InvalidApplicationNameException") in cli.error(
        "deploy", "create-application", "--application-name", "no spaces", profile="unvalidated"
    )
    assert _error_line("CreateApplication", "InvalidComputePlatformException") in cli.error(
        "deploy",
        "create-application",
        "--application-name",
        "lambda-app",
        "--compute-platform",
        "Lambda",
    )
    assert _error_line(
        "ListOnPremisesInstances", "InvalidRegistrationStatusException"
    ) in cli.error(
        "deploy",
        "list-on-premises-instances",
        "--registration-status",
        "Sometimes",
        profile="unvalidated",
    )
    assert "lambda-app" not in json.dumps(cli.ok("deploy", "list-applications"))
