"""A deployment's hosts: ListDeploymentInstances, GetDeploymentInstance,
BatchGetDeploymentInstances, and their newer names ListDeploymentTargets,
GetDeploymentTarget, BatchGetDeploymentTargets.

Every host the deployment took is listed, those it skipped included. For an on-premises
host the instance id and the target id are its instance name. Each host shows its status
and its lifecycle events with their status, start and end times and the diagnostics its
agent sent (error code, script, message, the tail of the script's output), which is how
``aws deploy get-deployment-target`` tells why a host failed. Instance types and labels
(Blue, Green) belong to blue/green deployments, which this server does not run.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.access_keys.identities import partition_for
from server.codedeploy_api.context import ApiContext, check_batch_size, page_of_names
from server.codedeploy_api.deployments import DEPLOYMENT_BATCH_LIMIT, deployment_row
from server.database.schema import deployment_targets, lifecycle_events, on_premises_instances
from server.errors import ApiError

# The agent's error codes (docs/behaviour.md section 5) as CodeDeploy's LifecycleErrorCode.
_ERROR_CODES = {
    0: "Success",
    1: "ScriptMissing",
    2: "ScriptNotExecutable",
    3: "ScriptTimedOut",
    4: "ScriptFailed",
    5: "UnknownError",
    6: "ScriptFailed",  # the script left its output open
    7: "UnknownError",  # the agent restarted during the command
}
_HOST_STATUSES = ("Pending", "InProgress", "Succeeded", "Failed", "Skipped", "Unknown", "Ready")


def _diagnostics(stored: Dict[str, Any]) -> Dict[str, str]:
    return {
        "errorCode": _ERROR_CODES.get(stored.get("error_code"), "UnknownError"),  # type: ignore[arg-type]
        "scriptName": str(stored.get("script_name") or ""),
        "message": str(stored.get("message") or ""),
        "logTail": str(stored.get("log") or ""),
    }


def _events(connection: Connection, deployment_id: str, names: List[str]) -> Dict[str, List[Any]]:
    rows = connection.execute(
        sa.select(lifecycle_events)
        .where(
            lifecycle_events.c.deployment_id == deployment_id,
            lifecycle_events.c.instance_name.in_(names),
        )
        .order_by(lifecycle_events.c.instance_name, lifecycle_events.c.position)
    )
    events: Dict[str, List[Any]] = {name: [] for name in names}
    for row in rows:
        event: Dict[str, Any] = {"lifecycleEventName": row.event_name, "status": row.status}
        if row.started_at is not None:
            event["startTime"] = row.started_at
        if row.ended_at is not None:
            event["endTime"] = row.ended_at
        if row.diagnostics:
            event["diagnostics"] = _diagnostics(row.diagnostics)
        events[row.instance_name].append(event)
    return events


def _targets(
    connection: Connection, deployment_id: str, names: Optional[List[str]] = None
) -> Dict[str, Any]:
    query = sa.select(deployment_targets).where(deployment_targets.c.deployment_id == deployment_id)
    if names is not None:
        query = query.where(deployment_targets.c.instance_name.in_(names))
    return {row.instance_name: row for row in connection.execute(query)}


def _summaries(
    connection: Connection, context: ApiContext, deployment_id: str, names: List[str]
) -> Dict[str, Dict[str, Any]]:
    """Each named host of the deployment that exists, as InstanceTarget's members."""
    targets = _targets(connection, deployment_id, names)
    events = _events(connection, deployment_id, list(targets))
    arns: Dict[str, str] = {
        str(name): str(arn)
        for name, arn in connection.execute(
            sa.select(on_premises_instances.c.name, on_premises_instances.c.instance_arn).where(
                on_premises_instances.c.name.in_(list(targets))
            )
        )
    }
    config = context.config
    found: Dict[str, Dict[str, Any]] = {}
    for name, row in targets.items():
        found[name] = {
            "deploymentId": deployment_id,
            "targetId": name,
            "targetArn": arns.get(name)
            or f"arn:{partition_for(config.region)}:codedeploy:{config.region}:"
            f"{config.account_id}:instance/{name}",
            "status": row.status,
            "lastUpdatedAt": row.updated_at,
            "lifecycleEvents": events.get(name, []),
        }
    return found


def _instance_summary(target: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "deploymentId": target["deploymentId"],
        "instanceId": target["targetId"],
        "status": target["status"],
        "lastUpdatedAt": target["lastUpdatedAt"],
        "lifecycleEvents": target["lifecycleEvents"],
    }


def _instance_target(target: Dict[str, Any]) -> Dict[str, Any]:
    return {"deploymentTargetType": "InstanceTarget", "instanceTarget": target}


def _refuse_instance_types(types: Optional[List[str]]) -> None:
    if types:
        raise ApiError(
            "InvalidDeploymentInstanceTypeException",
            "Instance types (Blue, Green) belong to blue/green deployments; this one is in place.",
        )


def _listed_names(
    connection: Connection, deployment_id: str, statuses: Optional[List[str]]
) -> List[str]:
    for status in statuses or []:
        if status not in _HOST_STATUSES:
            raise ApiError(
                "InvalidInstanceStatusException", f"{status[:40]!r} is not an instance status."
            )
    query = sa.select(deployment_targets.c.instance_name).where(
        deployment_targets.c.deployment_id == deployment_id
    )
    if statuses:
        query = query.where(deployment_targets.c.status.in_(statuses))
    return sorted(str(name) for (name,) in connection.execute(query))


def list_deployment_instances(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    deployment = deployment_row(connection, request["deploymentId"])
    _refuse_instance_types(request.get("instanceTypeFilter"))
    names = _listed_names(connection, deployment["id"], request.get("instanceStatusFilter"))
    page, token = page_of_names(names, request.get("nextToken"))
    return {"instancesList": page, **({"nextToken": token} if token else {})}


def list_deployment_targets(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    deployment = deployment_row(connection, request["deploymentId"])
    filters: Dict[str, List[str]] = request.get("targetFilters") or {}
    unknown = [name for name in filters if name not in ("TargetStatus", "ServerInstanceLabel")]
    if unknown:
        raise ApiError("InvalidTargetFilterNameException", f"{unknown[0][:40]!r} is not a filter.")
    _refuse_instance_types(filters.get("ServerInstanceLabel"))
    names = _listed_names(connection, deployment["id"], filters.get("TargetStatus"))
    page, token = page_of_names(names, request.get("nextToken"))
    return {"targetIds": page, **({"nextToken": token} if token else {})}


def _one(
    connection: Connection, context: ApiContext, request: Dict[str, Any], member: str, error: str
) -> Dict[str, Any]:
    """The host the request's ``member`` names, or ``error`` when the deployment has none."""
    deployment = deployment_row(connection, request["deploymentId"])
    name = request[member]
    found = _summaries(connection, context, deployment["id"], [name]).get(name)
    if found is None:
        raise ApiError(
            error, f"The host {name[:100]} is not part of deployment {deployment['id']}."
        )
    return found


def get_deployment_instance(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    found = _one(connection, context, request, "instanceId", "InstanceDoesNotExistException")
    return {"instanceSummary": _instance_summary(found)}


def get_deployment_target(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    found = _one(connection, context, request, "targetId", "DeploymentTargetDoesNotExistException")
    return {"deploymentTarget": _instance_target(found)}


def batch_get_deployment_instances(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    deployment = deployment_row(connection, request["deploymentId"])
    names: List[str] = request["instanceIds"]
    check_batch_size(names, "instances", DEPLOYMENT_BATCH_LIMIT)
    found = _summaries(connection, context, deployment["id"], names)
    response: Dict[str, Any] = {
        "instancesSummary": [_instance_summary(found[name]) for name in names if name in found]
    }
    missing = [name for name in names if name not in found]
    if missing:
        response["errorMessage"] = f"Instances not in the deployment: {', '.join(missing)}"
    return response


def batch_get_deployment_targets(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    deployment = deployment_row(connection, request["deploymentId"])
    names: List[str] = request["targetIds"]
    check_batch_size(
        names, "targets", DEPLOYMENT_BATCH_LIMIT, "DeploymentTargetListSizeExceededException"
    )
    found = _summaries(connection, context, deployment["id"], names)
    missing = [name for name in names if name not in found]
    if missing:
        raise ApiError(
            "DeploymentTargetDoesNotExistException",
            f"The target {missing[0][:100]} is not part of deployment {deployment['id']}.",
        )
    return {"deploymentTargets": [_instance_target(found[name]) for name in names]}
