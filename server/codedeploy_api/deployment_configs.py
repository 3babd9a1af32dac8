"""Deployment configurations: the three built-in ones and custom minimum healthy hosts.

The built-in configurations are constants, never rows: they cannot be deleted or
changed, and they are shown as CodeDeploy shows them (OneAtATime as ``MOST_CONCURRENCY``
1, HalfAtATime as 50 % of the fleet, AllAtOnce as 0 hosts). A custom configuration is a
minimum of healthy hosts, as a count (``HOST_COUNT``, 0 or more) or a share of the
fleet (``FLEET_PERCENT``, 0 to 99: at 100 no host could ever be taken out of service);
traffic routing and zonal settings belong to Lambda, ECS and zonal EC2 deployments and
are refused. Whether a configuration can be met by a given group is decided when a
deployment is created, as AWS does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Dict, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from server.codedeploy_api.applications import SERVER_PLATFORM, check_server_platform
from server.codedeploy_api.context import ApiContext, new_id, page_of_names
from server.database.schema import deployment_configs, deployment_groups
from server.errors import ApiError

BUILT_IN_PREFIX = "CodeDeployDefault."
DEFAULT_CONFIG_NAME = "CodeDeployDefault.OneAtATime"
# CodeDeploy's launch day: when the built-in configurations were created, for createTime.
_BUILT_IN_CREATED_AT = 1412553600.0
FLEET_PERCENT_MAX = 99


@dataclass(frozen=True)
class MinimumHealthyHosts:
    type: str  # HOST_COUNT | FLEET_PERCENT | MOST_CONCURRENCY (OneAtATime only)
    value: int


BUILT_IN_CONFIGS: Dict[str, MinimumHealthyHosts] = {
    "CodeDeployDefault.AllAtOnce": MinimumHealthyHosts("HOST_COUNT", 0),
    "CodeDeployDefault.HalfAtATime": MinimumHealthyHosts("FLEET_PERCENT", 50),
    "CodeDeployDefault.OneAtATime": MinimumHealthyHosts("MOST_CONCURRENCY", 1),
}


def _built_in_info(name: str) -> Dict[str, Any]:
    minimum = BUILT_IN_CONFIGS[name]
    return {
        "deploymentConfigId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"codedeploy-server:{name}")),
        "deploymentConfigName": name,
        "minimumHealthyHosts": {"type": minimum.type, "value": minimum.value},
        "createTime": _BUILT_IN_CREATED_AT,
        "computePlatform": SERVER_PLATFORM,
    }


def _row_info(row: sa.RowMapping) -> Dict[str, Any]:
    return {
        "deploymentConfigId": row["id"],
        "deploymentConfigName": row["name"],
        "minimumHealthyHosts": {
            "type": row["minimum_healthy_type"],
            "value": row["minimum_healthy_value"],
        },
        "createTime": row["created_at"],
        "computePlatform": row["compute_platform"],
    }


def find_deployment_config(connection: Connection, name: str) -> Optional[Dict[str, Any]]:
    """The configuration as GetDeploymentConfig shows it, or None."""
    if name in BUILT_IN_CONFIGS:
        return _built_in_info(name)
    row = connection.execute(
        sa.select(deployment_configs).where(deployment_configs.c.name == name)
    ).first()
    return None if row is None else _row_info(row._mapping)


def existing_deployment_config(connection: Connection, name: str) -> Dict[str, Any]:
    info = find_deployment_config(connection, name)
    if info is None:
        raise ApiError(
            "DeploymentConfigDoesNotExistException",
            f"No deployment configuration found for name: {name}",
        )
    return info


def _checked_minimum(request: Dict[str, Any]) -> MinimumHealthyHosts:
    minimum = request.get("minimumHealthyHosts")
    kind, value = (minimum or {}).get("type"), (minimum or {}).get("value")
    if kind is None or value is None:
        raise ApiError(
            "InvalidMinimumHealthyHostValueException",
            "A Server deployment configuration needs minimumHealthyHosts with its type and value.",
        )
    highest = FLEET_PERCENT_MAX if kind == "FLEET_PERCENT" else 1_000_000
    if not 0 <= value <= highest:
        raise ApiError(
            "InvalidMinimumHealthyHostValueException",
            f"The minimum healthy hosts value {value} is not valid for {kind} (0 to {highest}).",
        )
    return MinimumHealthyHosts(kind, value)


def create_deployment_config(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    name = request["deploymentConfigName"]
    check_server_platform(request.get("computePlatform", SERVER_PLATFORM))
    if request.get("trafficRoutingConfig"):
        raise ApiError(
            "InvalidTrafficRoutingConfigurationException",
            "Traffic routing applies to Lambda and ECS deployments, which are not served here.",
        )
    if request.get("zonalConfig"):
        raise ApiError(
            "InvalidZonalDeploymentConfigurationException",
            "Zonal configurations are not supported by this server.",
        )
    if name in BUILT_IN_CONFIGS:
        raise ApiError(
            "DeploymentConfigAlreadyExistsException",
            f"A deployment configuration named {name} already exists.",
        )
    if name.startswith(BUILT_IN_PREFIX):
        raise ApiError(
            "InvalidDeploymentConfigNameException",
            f"Names starting with {BUILT_IN_PREFIX} are reserved for built-in configurations.",
        )
    minimum = _checked_minimum(request)
    identifier = new_id()
    try:
        with connection.begin_nested():
            connection.execute(
                deployment_configs.insert().values(
                    id=identifier,
                    name=name,
                    compute_platform=SERVER_PLATFORM,
                    minimum_healthy_type=minimum.type,
                    minimum_healthy_value=minimum.value,
                    settings={},
                    created_at=context.now,
                )
            )
    except IntegrityError:
        raise ApiError(
            "DeploymentConfigAlreadyExistsException",
            f"A deployment configuration named {name} already exists.",
        ) from None
    return {"deploymentConfigId": identifier}


def get_deployment_config(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    info = existing_deployment_config(connection, request["deploymentConfigName"])
    return {"deploymentConfigInfo": info}


def list_deployment_configs(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    custom = connection.execute(sa.select(deployment_configs.c.name))
    names = sorted([*BUILT_IN_CONFIGS, *(str(name) for (name,) in custom)])
    page, token = page_of_names(names, request.get("nextToken"))
    return {"deploymentConfigsList": page, **({"nextToken": token} if token else {})}


def delete_deployment_config(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    name = request["deploymentConfigName"]
    if name in BUILT_IN_CONFIGS:
        raise ApiError(
            "InvalidOperationException", f"The built-in configuration {name} cannot be deleted."
        )
    used = connection.execute(
        sa.select(sa.func.count())
        .select_from(deployment_groups)
        .where(deployment_groups.c.deployment_config_name == name)
    ).scalar_one()
    if used:
        raise ApiError(
            "DeploymentConfigInUseException",
            f"The deployment configuration {name} is used by {used} deployment group(s).",
        )
    connection.execute(deployment_configs.delete().where(deployment_configs.c.name == name))
    return {}
