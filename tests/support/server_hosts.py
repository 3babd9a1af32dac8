"""Hosts of a real ``codedeploy-server`` as the agent's own client speaks to it, without an
agent: a host key from ``keys create-host``, the instance registered and tagged by an
operator through the AWS CLI's client, and the agent's botocore command-service client.
Also a one-host deployment made the way an operator makes one."""

from __future__ import annotations

from typing import Any, Dict, Optional

import yaml
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from agent.aws_clients.command_service import (
    BotocoreCommandServiceClient,
    CommandServiceSettings,
    HostCommand,
    new_command_service_client,
)
from tests.support.aws_cli import AwsCli
from tests.support.server import ServerFiles, ServerProcess

REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/CodeDeploy"
S3_REVISION = {
    "revisionType": "S3",
    "s3Location": {"bucket": "bundles", "key": "app.tgz", "bundleType": "tgz"},
}


class Host:
    """A host key, its registered instance, and the agent's client of the server (its read
    timeout well past the server's ``poll_wait`` seconds)."""

    def __init__(
        self, files: ServerFiles, server: ServerProcess, operator: Any, name: str, poll_wait: float
    ):
        self.name = name
        document = yaml.safe_load(files.admin("keys", "create-host", name).stdout)
        self.arn = document["iam_user_arn"]
        self.credentials = Credentials(
            document["aws_access_key_id"], document["aws_secret_access_key"]
        )
        operator.register_on_premises_instance(instanceName=name, iamUserArn=self.arn)
        operator.add_tags_to_on_premises_instances(
            instanceNames=[name], tags=[{"Key": "host", "Value": name}]
        )
        settings = CommandServiceSettings(
            region=REGION, endpoint_url=server.url, read_timeout=poll_wait + 20, max_attempts=1
        )
        self.client: BotocoreCommandServiceClient = new_command_service_client(
            settings, self.credentials
        )

    def poll(self, as_host: Optional[str] = None) -> Optional[HostCommand]:
        return self.client.poll_host_command(as_host or self.arn)


def operator_client(files: ServerFiles, server: ServerProcess, name: str) -> Any:
    """The CodeDeploy client of a new operator key, as the AWS CLI builds it."""
    keys = files.create_operator(name)
    return AwsCli(files.base / f"home-{name}", server.url, keys).codedeploy_client()


def deploy_to(
    operator: Any, application: str, host: Host, revision: Dict[str, Any] = S3_REVISION
) -> str:
    """A new application whose one group holds ``host``, and a deployment to it: its id."""
    operator.create_application(applicationName=application)
    operator.create_deployment_group(
        applicationName=application,
        deploymentGroupName="group",
        serviceRoleArn=ROLE,
        onPremisesInstanceTagFilters=[{"Key": "host", "Value": host.name, "Type": "KEY_AND_VALUE"}],
    )
    created = operator.create_deployment(
        applicationName=application,
        deploymentGroupName="group",
        revision=revision,
        fileExistsBehavior="OVERWRITE",
    )
    return str(created["deploymentId"])
