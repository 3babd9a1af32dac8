"""Deployment groups: Create, Get, List, BatchGet, Update and Delete.

A group's hosts are the registered on-premises instances its tag filters select:
``onPremisesInstanceTagFilters`` (an instance matches any one filter) or
``onPremisesTagSet`` (it matches every listed group of filters), never both, as with AWS.
In-place deployments only: EC2 tags, Auto Scaling groups, load balancers, blue/green,
ECS services, SNS triggers and CloudWatch alarms need AWS itself and are refused with
CodeDeploy's exception for each, rather than stored and silently ignored.
``autoRollbackConfiguration`` and ``outdatedInstancesStrategy`` are kept for deployments.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from server.codedeploy_api.applications import application_row
from server.codedeploy_api.context import (
    ApiContext,
    check_batch_size,
    checked_tag_filters,
    checked_tags,
    new_id,
    page_of_names,
)
from server.codedeploy_api.deployment_configs import (
    DEFAULT_CONFIG_NAME,
    existing_deployment_config,
)
from server.database.schema import application_revisions, deployment_groups, deployments
from server.errors import ApiError

# Request members this server refuses, with the exception CodeDeploy names for each.
_UNSUPPORTED = {
    "ec2TagFilters": ("InvalidEC2TagException", "EC2 tag filters"),
    "ec2TagSet": ("InvalidEC2TagCombinationException", "EC2 tag sets"),
    "autoScalingGroups": ("InvalidAutoScalingGroupException", "Auto Scaling groups"),
    "loadBalancerInfo": ("InvalidLoadBalancerInfoException", "load balancers"),
    "blueGreenDeploymentConfiguration": (
        "InvalidBlueGreenDeploymentConfigurationException",
        "blue/green deployments",
    ),
    "ecsServices": ("InvalidECSServiceException", "ECS services"),
    "triggerConfigurations": ("InvalidTriggerConfigException", "SNS triggers"),
    "ec2DeploymentOptions": ("InvalidInputException", "EC2 deployment options"),
}
_IN_PLACE = {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"}
# What is kept as given and shown back.
_KEPT = ("autoRollbackConfiguration", "outdatedInstancesStrategy", "terminationHookEnabled")


def _check_supported(request: Dict[str, Any]) -> None:
    for member, (exception, what) in _UNSUPPORTED.items():
        if request.get(member):
            raise ApiError(
                exception,
                f"{what[0].upper()}{what[1:]} are not supported by this server: it deploys in"
                " place to on-premises instances selected by tags.",
            )
    alarms = request.get("alarmConfiguration") or {}
    if alarms.get("enabled") or alarms.get("alarms"):
        raise ApiError("InvalidAlarmConfigException", "CloudWatch alarms are not supported here.")
    style = request.get("deploymentStyle") or {}
    if any(style.get(key, value) != value for key, value in _IN_PLACE.items()):
        raise ApiError(
            "InvalidDeploymentStyleException",
            "Only IN_PLACE deployments WITHOUT_TRAFFIC_CONTROL are supported by this server.",
        )
    rollback = request.get("autoRollbackConfiguration") or {}
    if "DEPLOYMENT_STOP_ON_ALARM" in (rollback.get("events") or []):
        raise ApiError(
            "InvalidAutoRollbackConfigException",
            "Alarms are not supported, so neither is DEPLOYMENT_STOP_ON_ALARM.",
        )


def _checked_selection(request: Dict[str, Any]) -> Tuple[Optional[list[Any]], Optional[list[Any]]]:
    """The tag filters and tag set given (None: not given), checked."""
    filters = request.get("onPremisesInstanceTagFilters")
    tag_set = (request.get("onPremisesTagSet") or {}).get("onPremisesTagSetList")
    if filters and tag_set:
        raise ApiError(
            "InvalidOnPremisesTagCombinationException",
            "Give onPremisesInstanceTagFilters or onPremisesTagSet, not both.",
        )
    if tag_set is not None and len(tag_set) > 3:
        raise ApiError(
            "TagSetListLimitExceededException", "A tag set holds at most 3 lists of filters."
        )
    checked_filters = (
        None if filters is None else checked_tag_filters(filters, "InvalidTagException")
    )
    checked_set = (
        None
        if tag_set is None
        else [
            checked_tag_filters(group, "InvalidOnPremisesTagCombinationException")
            for group in tag_set
        ]
    )
    return checked_filters, checked_set


def _check_role(request: Dict[str, Any], member: str) -> Optional[str]:
    role = request.get(member)
    if role is not None and not role.startswith("arn:"):
        raise ApiError("InvalidRoleException", f"The service role {role[:200]} is not an ARN.")
    return role


def group_row(
    connection: Connection, application_id: str, name: str, *, lock: bool = False
) -> sa.RowMapping:
    """The group ``name`` of the application (locked for this transaction with ``lock``);
    ``DeploymentGroupDoesNotExistException`` when there is none."""
    query = sa.select(deployment_groups).where(
        deployment_groups.c.application_id == application_id, deployment_groups.c.name == name
    )
    row = connection.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise ApiError(
            "DeploymentGroupDoesNotExistException", f"No Deployment Group found for name: {name}"
        )
    return row._mapping


def _last_deployment(connection: Connection, deployment_id: Optional[str]) -> Dict[str, Any]:
    """A group's last (successful or attempted) deployment as LastDeploymentInfo."""
    if not deployment_id:
        return {}
    row = connection.execute(
        sa.select(deployments.c.status, deployments.c.created_at, deployments.c.completed_at).where(
            deployments.c.id == deployment_id
        )
    ).first()
    if row is None:
        return {}
    info: Dict[str, Any] = {
        "deploymentId": deployment_id,
        "status": row.status,
        "createTime": row.created_at,
    }
    if row.completed_at is not None:
        info["endTime"] = row.completed_at
    return info


def _deployment_history(connection: Connection, row: sa.RowMapping) -> Dict[str, Any]:
    """The group's target revision and last deployments, the members CodeDeploy shows
    only once the group has deployed."""
    history: Dict[str, Any] = {}
    for member, column in (
        ("lastSuccessfulDeployment", "last_successful_deployment_id"),
        ("lastAttemptedDeployment", "last_attempted_deployment_id"),
    ):
        last = _last_deployment(connection, row[column])
        if last:
            history[member] = last
    if row["target_revision_id"]:
        location = connection.execute(
            sa.select(application_revisions.c.location).where(
                application_revisions.c.id == row["target_revision_id"]
            )
        ).scalar()
        if location:
            history["targetRevision"] = location
    return history


def _info(connection: Connection, application_name: str, row: sa.RowMapping) -> Dict[str, Any]:
    settings: Dict[str, Any] = row["settings"]
    info: Dict[str, Any] = {
        "applicationName": application_name,
        "deploymentGroupId": row["id"],
        "deploymentGroupName": row["name"],
        "deploymentConfigName": row["deployment_config_name"],
        "ec2TagFilters": [],
        "onPremisesInstanceTagFilters": row["on_premises_tag_filters"],
        "autoScalingGroups": [],
        "serviceRoleArn": row["service_role_arn"],
        "triggerConfigurations": [],
        "alarmConfiguration": {"enabled": False, "ignorePollAlarmFailure": False, "alarms": []},
        "autoRollbackConfiguration": settings.get(
            "autoRollbackConfiguration", {"enabled": False, "events": []}
        ),
        "deploymentStyle": dict(_IN_PLACE),
        "outdatedInstancesStrategy": settings.get("outdatedInstancesStrategy", "UPDATE"),
        "ec2TagSet": {"ec2TagSetList": []},
        "onPremisesTagSet": {"onPremisesTagSetList": row["on_premises_tag_set"]},
        "computePlatform": "Server",
        "terminationHookEnabled": bool(settings.get("terminationHookEnabled", False)),
        **_deployment_history(connection, row),
    }
    return info


def create_deployment_group(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    _check_supported(request)
    filters, tag_set = _checked_selection(request)
    role = _check_role(request, "serviceRoleArn")
    config_name = request.get("deploymentConfigName", DEFAULT_CONFIG_NAME)
    existing_deployment_config(connection, config_name)
    tags = checked_tags(request.get("tags") or [], "InvalidTagsToAddException")
    identifier = new_id()
    try:
        with connection.begin_nested():
            connection.execute(
                deployment_groups.insert().values(
                    id=identifier,
                    application_id=application["id"],
                    name=request["deploymentGroupName"],
                    deployment_config_name=config_name,
                    service_role_arn=role,
                    on_premises_tag_filters=filters or [],
                    on_premises_tag_set=tag_set or [],
                    settings={
                        **{key: request[key] for key in _KEPT if key in request},
                        "tags": tags,
                    },
                    created_at=context.now,
                )
            )
    except IntegrityError:
        raise ApiError(
            "DeploymentGroupAlreadyExistsException",
            f"The deployment group {request['deploymentGroupName']} already exists for"
            f" application {application['name']}.",
        ) from None
    return {"deploymentGroupId": identifier}


def get_deployment_group(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    row = group_row(connection, application["id"], request["deploymentGroupName"])
    return {"deploymentGroupInfo": _info(connection, application["name"], row)}


def list_deployment_groups(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    names = connection.execute(
        sa.select(deployment_groups.c.name)
        .where(deployment_groups.c.application_id == application["id"])
        .order_by(deployment_groups.c.name)
    )
    page, token = page_of_names([str(name) for (name,) in names], request.get("nextToken"))
    response: Dict[str, Any] = {"applicationName": application["name"], "deploymentGroups": page}
    return {**response, **({"nextToken": token} if token else {})}


def batch_get_deployment_groups(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    names: List[str] = request["deploymentGroupNames"]
    check_batch_size(names, "deployment groups")
    found, missing = [], []
    for name in names:
        try:
            found.append(
                _info(
                    connection, application["name"], group_row(connection, application["id"], name)
                )
            )
        except ApiError:
            missing.append(name)
    response: Dict[str, Any] = {"deploymentGroupsInfo": found}
    if missing:
        response["errorMessage"] = f"Deployment groups not found: {', '.join(missing)}"
    return response


def update_deployment_group(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    row = group_row(connection, application["id"], request["currentDeploymentGroupName"])
    _check_supported(request)
    filters, tag_set = _checked_selection(request)
    changes: Dict[str, Any] = {}
    if filters is not None:
        changes["on_premises_tag_filters"] = filters
        changes["on_premises_tag_set"] = [] if tag_set is None else tag_set
    if tag_set is not None:
        changes["on_premises_tag_set"] = tag_set
        changes.setdefault("on_premises_tag_filters", [])
    if (changes.get("on_premises_tag_filters") or row["on_premises_tag_filters"]) and (
        changes.get("on_premises_tag_set", row["on_premises_tag_set"])
    ):
        raise ApiError(
            "InvalidOnPremisesTagCombinationException",
            "Give onPremisesInstanceTagFilters or onPremisesTagSet, not both.",
        )
    if request.get("deploymentConfigName"):
        existing_deployment_config(connection, request["deploymentConfigName"])
        changes["deployment_config_name"] = request["deploymentConfigName"]
    role = _check_role(request, "serviceRoleArn")
    if role:
        changes["service_role_arn"] = role
    if request.get("newDeploymentGroupName"):
        changes["name"] = request["newDeploymentGroupName"]
    kept = {key: request[key] for key in _KEPT if key in request}
    if kept:
        changes["settings"] = {**row["settings"], **kept}
    try:
        with connection.begin_nested():
            connection.execute(
                deployment_groups.update()
                .where(deployment_groups.c.id == row["id"])
                .values(**changes)
            )
    except IntegrityError:
        raise ApiError(
            "DeploymentGroupAlreadyExistsException",
            f"The deployment group {changes.get('name')} already exists for application"
            f" {application['name']}.",
        ) from None
    return {"hooksNotCleanedUp": []}


def delete_deployment_group(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    connection.execute(
        deployment_groups.delete().where(
            deployment_groups.c.application_id == application["id"],
            deployment_groups.c.name == request["deploymentGroupName"],
        )
    )
    return {"hooksNotCleanedUp": []}
