"""The identities a key stands for, as ARNs, and the on-premises file a host is given.

An operator key is ``arn:<partition>:iam::<account>:user/<name>``; a host key is the IAM
user ``codedeploy-hosts/<instance name>``. The agent on that host uses the ARN as its host
identifier (docs/behaviour.md section 5), and the operator registers the instance with
the same ARN (``aws deploy register-on-premises-instance --iam-user-arn``), exactly as
with AWS, so the command service can tell which host a key may speak for.
"""

from __future__ import annotations

import yaml

from server.access_keys.store import AccessKey, IssuedKey, KeyKind
from server.configuration import ServerConfig

HOSTS_PATH = "codedeploy-hosts/"


def partition_for(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def key_arn(config: ServerConfig, key: AccessKey) -> str:
    """The IAM user ARN a key acts as."""
    path = HOSTS_PATH if key.kind is KeyKind.HOST else ""
    return f"arn:{partition_for(config.region)}:iam::{config.account_id}:user/{path}{key.name}"


def on_premises_file_text(config: ServerConfig, issued: IssuedKey) -> str:
    """A ready ``codedeploy.onpremises.yml`` for the host the key was issued to."""
    document = {
        "region": config.region,
        "iam_user_arn": key_arn(config, issued.key),
        "aws_access_key_id": issued.key.access_key_id,
        "aws_secret_access_key": issued.secret_access_key,
    }
    return str(yaml.safe_dump(document, default_flow_style=False, sort_keys=False))
