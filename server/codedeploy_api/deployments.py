"""Deployments: Create, Get, List, BatchGet and Stop.

``CreateDeployment`` takes an S3 or GitHub revision (registering it when it was not), the
group's deployment configuration unless one is named, ``fileExistsBehavior``,
``ignoreApplicationStopFailures``, a description and an ``autoRollbackConfiguration`` that
replaces the group's; the group's hosts are its tagged instances at that moment. A group
runs one deployment at a time (``DeploymentLimitExceededException`` otherwise, as with
CodeDeploy). What needs AWS itself (target instances by EC2 tag or Auto Scaling group,
CloudWatch alarms) is refused with CodeDeploy's exception for it. The deployment is then
walked by :mod:`server.deployment_engine`; ``StopDeployment`` asks it to stop.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.codedeploy_api.applications import application_row
from server.codedeploy_api.context import (
    PAGE_SIZE,
    ApiContext,
    check_batch_size,
    decode_page_token,
    encode_page_token,
)
from server.codedeploy_api.deployment_configs import existing_deployment_config
from server.codedeploy_api.deployment_groups import group_row
from server.codedeploy_api.revisions import (
    canonical_location,
    check_description,
    registered_revision_id,
)
from server.codedeploy_api.validation import timestamp_seconds
from server.database.schema import deployment_targets, deployments
from server.deployment_engine import (
    ACTIVE_STATUSES,
    DeploymentRequest,
    Record,
    lock_deployment,
    request_stop,
    start_deployment,
    walk_order,
)
from server.deployment_rules import MinimumHealthy
from server.errors import ApiError
from server.group_hosts import group_instance_names

DEPLOYMENT_BATCH_LIMIT = 25
_DEPLOYMENT_ID = re.compile(r"^d-[A-Z0-9]{9}$")
_IN_PLACE = {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"}
# The overview's members; an Unknown host (cut short by a stop) counts as Failed.
_OVERVIEW = ("Pending", "InProgress", "Succeeded", "Failed", "Skipped", "Ready")


def deployment_row(connection: Connection, deployment_id: str, *, lock: bool = False) -> Any:
    """The deployment ``deployment_id``; CodeDeploy's exceptions when it is not one."""
    if not _DEPLOYMENT_ID.match(deployment_id):
        raise ApiError(
            "InvalidDeploymentIdException",
            f"{deployment_id[:40]!r} is not a deployment id (d- and nine letters or digits).",
        )
    row: Optional[Record]
    if lock:
        row = lock_deployment(connection, deployment_id)
    else:
        found = connection.execute(
            sa.select(deployments).where(deployments.c.id == deployment_id)
        ).first()
        row = None if found is None else found._mapping
    if row is None:
        raise ApiError(
            "DeploymentDoesNotExistException", f"The deployment {deployment_id} does not exist."
        )
    return row


def _check_supported(request: Dict[str, Any]) -> None:
    if request.get("targetInstances"):
        raise ApiError(
            "InvalidTargetInstancesException",
            "Target instances (EC2 tags, Auto Scaling groups) are for blue/green deployments,"
            " which this server does not run.",
        )
    if (request.get("overrideAlarmConfiguration") or {}).get("enabled"):
        raise ApiError("InvalidAlarmConfigException", "CloudWatch alarms are not supported here.")
    if request.get("updateOutdatedInstancesOnly"):
        raise ApiError(
            "InvalidUpdateOutdatedInstancesOnlyValueException",
            "updateOutdatedInstancesOnly is for Auto Scaling groups, which this server does not"
            " serve; a deployment goes to every host of its group.",
        )
    if request.get("deploymentMode", "STANDARD") != "STANDARD" or request.get(
        "ec2DeploymentOptions"
    ):
        raise ApiError(
            "InvalidInputException", "Only STANDARD in-place deployments are supported here."
        )
    rollback = request.get("autoRollbackConfiguration") or {}
    if "DEPLOYMENT_STOP_ON_ALARM" in (rollback.get("events") or []):
        raise ApiError(
            "InvalidAutoRollbackConfigException",
            "Alarms are not supported, so neither is DEPLOYMENT_STOP_ON_ALARM.",
        )


def _revision_id(
    connection: Connection, application: Any, request: Dict[str, Any], now: float
) -> tuple[str, Dict[str, Any]]:
    revision = request.get("revision")
    if not revision:
        raise ApiError("RevisionRequiredException", "The revision to deploy is required.")
    location = canonical_location(revision)
    return registered_revision_id(connection, application["id"], location, now), location


def _check_group_idle(connection: Connection, group: Any) -> None:
    active = connection.execute(
        sa.select(deployments.c.id).where(
            deployments.c.deployment_group_id == group["id"],
            deployments.c.status.in_(ACTIVE_STATUSES),
        )
    ).first()
    if active is not None:
        raise ApiError(
            "DeploymentLimitExceededException",
            f"The deployment group {group['name']} already has an active deployment"
            f" {active.id}; wait for it to end, or stop it.",
        )


def create_deployment(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    if not request.get("deploymentGroupName"):
        raise ApiError(
            "DeploymentGroupNameRequiredException", "The deployment group name is required."
        )
    group = group_row(connection, application["id"], request["deploymentGroupName"], lock=True)
    _check_supported(request)
    check_description(request.get("description"))
    revision_id, location = _revision_id(connection, application, request, context.now)
    config_name = request.get("deploymentConfigName") or group["deployment_config_name"]
    minimum = existing_deployment_config(connection, config_name)["minimumHealthyHosts"]
    _check_group_idle(connection, group)
    hosts = group_instance_names(
        connection, group["on_premises_tag_filters"], group["on_premises_tag_set"]
    )
    auto_rollback = request.get("autoRollbackConfiguration") or group["settings"].get(
        "autoRollbackConfiguration", {"enabled": False, "events": []}
    )
    new = DeploymentRequest(
        application_name=application["name"],
        group=group,
        revision_id=revision_id,
        location=location,
        config_name=config_name,
        minimum=MinimumHealthy(minimum["type"], minimum["value"]),
        instances=walk_order(connection, group["id"], hosts),
        description=request.get("description"),
        file_exists_behavior=request.get("fileExistsBehavior", "DISALLOW"),
        ignore_application_stop_failures=bool(request.get("ignoreApplicationStopFailures")),
        auto_rollback=auto_rollback,
    )
    return {"deploymentId": start_deployment(connection, new, context.now, context.woken)}


def _overview(connection: Connection, deployment_id: str) -> Dict[str, int]:
    overview = {name: 0 for name in _OVERVIEW}
    rows = connection.execute(
        sa.select(deployment_targets.c.status, sa.func.count())
        .where(deployment_targets.c.deployment_id == deployment_id)
        .group_by(deployment_targets.c.status)
    )
    for status, count in rows:
        member = "Failed" if status == "Unknown" else str(status)
        overview[member] = overview.get(member, 0) + int(count)
    return overview


def deployment_info(connection: Connection, row: Any) -> Dict[str, Any]:
    """The deployment as DeploymentInfo."""
    settings: Dict[str, Any] = row["settings"]
    info: Dict[str, Any] = {
        "applicationName": row["application_name"],
        "deploymentGroupName": row["deployment_group_name"],
        "deploymentConfigName": row["deployment_config_name"],
        "deploymentId": row["id"],
        "revision": row["location"],
        "status": row["status"],
        "createTime": row["created_at"],
        "deploymentOverview": _overview(connection, row["id"]),
        "creator": row["creator"],
        "ignoreApplicationStopFailures": bool(settings.get("ignoreApplicationStopFailures")),
        "autoRollbackConfiguration": settings.get("autoRollbackConfiguration")
        or {"enabled": False, "events": []},
        "updateOutdatedInstancesOnly": False,
        "deploymentStyle": dict(_IN_PLACE),
        "instanceTerminationWaitTimeStarted": False,
        "fileExistsBehavior": settings.get("fileExistsBehavior", "DISALLOW"),
        "deploymentStatusMessages": [],
        "computePlatform": "Server",
    }
    for column, member in (
        ("error_information", "errorInformation"),
        ("started_at", "startTime"),
        ("completed_at", "completeTime"),
        ("description", "description"),
        ("rollback_info", "rollbackInfo"),
    ):
        if row[column] is not None:
            info[member] = row[column]
    if settings.get("previousRevision"):
        info["previousRevision"] = settings["previousRevision"]
    return info


def get_deployment(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    row = deployment_row(connection, request["deploymentId"])
    return {"deploymentInfo": deployment_info(connection, row)}


def batch_get_deployments(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    identifiers: List[str] = request["deploymentIds"]
    check_batch_size(identifiers, "deployments", DEPLOYMENT_BATCH_LIMIT)
    found = []
    for identifier in identifiers:
        try:
            found.append(deployment_info(connection, deployment_row(connection, identifier)))
        except ApiError as error:
            if error.code != "DeploymentDoesNotExistException":
                raise
    return {"deploymentsInfo": found}


def _listing_filters(connection: Connection, request: Dict[str, Any]) -> List[Any]:
    application, group = request.get("applicationName"), request.get("deploymentGroupName")
    if group and not application:
        raise ApiError(
            "ApplicationNameRequiredException", "A deployment group filter needs applicationName."
        )
    if application and not group:
        raise ApiError(
            "DeploymentGroupNameRequiredException",
            "An application filter needs deploymentGroupName too.",
        )
    conditions: List[Any] = []
    if application and group:
        found = group_row(connection, application_row(connection, application)["id"], group)
        conditions.append(deployments.c.deployment_group_id == found["id"])
    if request.get("includeOnlyStatuses"):
        conditions.append(deployments.c.status.in_(request["includeOnlyStatuses"]))
    window = request.get("createTimeRange") or {}
    start, end = timestamp_seconds(window.get("start")), timestamp_seconds(window.get("end"))
    if start is not None and end is not None and start > end:
        raise ApiError("InvalidTimeRangeException", "The time range starts after it ends.")
    if start is not None:
        conditions.append(deployments.c.created_at >= start)
    if end is not None:
        conditions.append(deployments.c.created_at <= end)
    if request.get("externalId"):
        conditions.append(sa.false())  # no deployment of this server has an external id
    return conditions


def list_deployments(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    """Newest first, in pages of 100."""
    conditions = _listing_filters(connection, request)
    after = decode_page_token(request.get("nextToken"), "after")
    if after is not None:
        if not isinstance(after, list) or len(after) != 2:
            raise ApiError("InvalidNextTokenException", "The next token is not valid.")
        created, identifier = after
        conditions.append(
            sa.or_(
                deployments.c.created_at < created,
                sa.and_(deployments.c.created_at == created, deployments.c.id < identifier),
            )
        )
    rows = connection.execute(
        sa.select(deployments.c.id, deployments.c.created_at)
        .where(*conditions)
        .order_by(deployments.c.created_at.desc(), deployments.c.id.desc())
        .limit(PAGE_SIZE + 1)
    ).all()
    response: Dict[str, Any] = {"deployments": [row.id for row in rows[:PAGE_SIZE]]}
    if len(rows) > PAGE_SIZE:
        last = rows[PAGE_SIZE - 1]
        response["nextToken"] = encode_page_token({"after": [last.created_at, last.id]})
    return response


def stop_deployment(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    row = deployment_row(connection, request["deploymentId"], lock=True)
    if row["status"] not in ACTIVE_STATUSES:
        raise ApiError(
            "DeploymentAlreadyCompletedException",
            f"The deployment {row['id']} has already ended ({row['status']}).",
        )
    rollback: Optional[bool] = request.get("autoRollbackEnabled")
    if request_stop(connection, row, rollback, context.now, context.woken):
        return {"status": "Succeeded", "statusMessage": "The deployment is stopped."}
    return {
        "status": "Pending",
        "statusMessage": "No host gets another command; the commands running now finish first.",
    }
