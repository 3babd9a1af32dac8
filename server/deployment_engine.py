"""The orchestration of in-place deployments: a deployment's state in the database and the
transitions that move it, each run inside the caller's transaction.

A deployment takes its group's hosts in an order (hosts whose last deployment in the group
did not succeed first), and walks them as :mod:`server.deployment_rules` allows: a host
started gets the in-place command sequence one command at a time (a row of
``host_commands`` is queued when the previous command succeeded), and ends Succeeded
after its last command, or Failed at its first failed command (an ApplicationStop failure
is let through when the deployment ignores them). Every change that may let the walk go
on (a command completed, a host timed out, a stop) calls :func:`advance_deployment`, which
starts more hosts, skips the hosts not started when the minimum can no longer be met or a
stop was asked, and ends the deployment once no host is in progress. Ending in failure (or
a stop, when asked) rolls back: a new deployment of the group's last successful revision.

Every transition locks the deployment's row first (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite runs one writer at a time), then touches commands, lifecycle events and
targets in that order, so two server processes never walk one deployment at once and
never deadlock each other. The host's own steps that change nothing deployment-wide (an
acknowledgement, a completion that queues the host's next command) hold the row shared
(``FOR SHARE``) instead, so that the hosts of one deployment report side by side; such a
step that finds it must do more starts again with the row locked exclusively
(server/host_command_flow.py, ``NeedsExclusiveLock``). Hosts that got a new command are added to ``woken``: the caller
wakes their long polls once the transaction has committed.
"""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agent import event_names
from server.database.compiled import CompiledStatement
from server.database.schema import (
    application_revisions,
    deployment_groups,
    deployment_targets,
    deployments,
    host_commands,
    lifecycle_events,
    on_premises_instances,
)
from server.deployment_rules import (
    FleetCounts,
    MinimumHealthy,
    can_ever_start,
    cannot_be_met,
    final_status,
    hosts_to_start,
)
from server.group_hosts import group_instance_names

# The commands of an in-place deployment, in the order each host runs them.
IN_PLACE_COMMANDS: Tuple[str, ...] = (
    "ApplicationStop",
    event_names.DOWNLOAD_BUNDLE,
    "BeforeInstall",
    event_names.INSTALL,
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
)
APPLICATION_STOP = "ApplicationStop"

# Deployment statuses (CodeDeploy's names).
CREATED = "Created"
QUEUED = "Queued"
IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
STOPPED = "Stopped"
ACTIVE_STATUSES = (CREATED, QUEUED, IN_PROGRESS, "Baking", "Ready")
# Host (target) and lifecycle event statuses besides those above.
PENDING = "Pending"
SKIPPED = "Skipped"
UNKNOWN = "Unknown"

ROLLBACK_CREATOR = "codeDeployRollback"
DEPLOYMENT_FAILURE = "DEPLOYMENT_FAILURE"
DEPLOYMENT_STOP_ON_REQUEST = "DEPLOYMENT_STOP_ON_REQUEST"
_ID_ALPHABET = string.ascii_uppercase + string.digits
# A row as the queries return it (column name to value).
Record = Mapping[Any, Any]
# How many of a group's latest deployments tell which hosts are healthy.
_HEALTH_HISTORY = 5

# The statements every command runs, built once and run compiled
# (server/database/compiled.py says why).
_THIS_DEPLOYMENT = deployments.c.id == sa.bindparam("deployment")
_LOCK_DEPLOYMENT = CompiledStatement(
    sa.select(deployments).where(_THIS_DEPLOYMENT).with_for_update()
)
_FLEET_COUNTS = CompiledStatement(
    sa.select(deployment_targets.c.status, sa.func.count())
    .where(deployment_targets.c.deployment_id == sa.bindparam("deployment"))
    .group_by(deployment_targets.c.status)
)
_QUEUED_COMMAND_COLUMNS = (
    "id",
    "deployment_id",
    "instance_name",
    "command_name",
    "status",
    "nonce",
    "created_at",
    "last_activity_at",
)
_QUEUE_COMMAND = CompiledStatement(
    host_commands.insert().values({name: sa.bindparam(name) for name in _QUEUED_COMMAND_COLUMNS})
)
_THIS_HOST_TARGET = sa.and_(
    deployment_targets.c.deployment_id == sa.bindparam("deployment"),
    deployment_targets.c.instance_name == sa.bindparam("instance"),
)
_SKIP_HOST_EVENTS = CompiledStatement(
    lifecycle_events.update()
    .where(
        lifecycle_events.c.deployment_id == sa.bindparam("deployment"),
        lifecycle_events.c.instance_name == sa.bindparam("instance"),
        lifecycle_events.c.status == PENDING,
    )
    .values(status=SKIPPED)
)
_SET_HOST_STATUS = CompiledStatement(
    deployment_targets.update()
    .where(_THIS_HOST_TARGET)
    .values(status=sa.bindparam("new_status"), updated_at=sa.bindparam("now"))
)


@dataclass(frozen=True)
class DeploymentRequest:
    """Everything a new deployment is made of, checked by the caller."""

    application_name: str
    group: Record  # the deployment group's row
    revision_id: Optional[str]
    location: Dict[str, Any]  # the revision as the API shows it
    config_name: str
    minimum: MinimumHealthy
    instances: Sequence[str]
    creator: str = "user"
    description: Optional[str] = None
    file_exists_behavior: str = "DISALLOW"
    ignore_application_stop_failures: bool = False
    auto_rollback: Dict[str, Any] = field(default_factory=dict)
    rollback_info: Optional[Dict[str, Any]] = None


def _error(code: str, message: str) -> Dict[str, str]:
    return {"code": code, "message": message}


def new_deployment_id(connection: Connection) -> str:
    """A fresh ``d-XXXXXXXXX`` id, as CodeDeploy's look."""
    while True:
        candidate = "d-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))
        taken = connection.execute(
            sa.select(deployments.c.id).where(deployments.c.id == candidate)
        ).first()
        if taken is None:
            return candidate


def walk_order(connection: Connection, group_id: str, names: Sequence[str]) -> List[str]:
    """``names`` in the order a deployment takes them: the hosts whose latest deployment in
    the group did not succeed (or that never had one) first, then the others; by name."""
    recent = (
        sa.select(deployments.c.id)
        .where(deployments.c.deployment_group_id == group_id)
        .order_by(deployments.c.created_at.desc())
        .limit(_HEALTH_HISTORY)
        .subquery()
    )
    rows = connection.execute(
        sa.select(deployment_targets.c.instance_name, deployment_targets.c.status)
        .join(deployments, deployments.c.id == deployment_targets.c.deployment_id)
        .where(deployment_targets.c.deployment_id.in_(sa.select(recent.c.id)))
        .order_by(deployments.c.created_at)
    )
    latest: Dict[str, str] = {}
    for name, status in rows:
        if status != SKIPPED:
            latest[name] = status
    return sorted(names, key=lambda name: (latest.get(name) == SUCCEEDED, name))


def lock_deployment(connection: Connection, deployment_id: str) -> Optional[Dict[str, Any]]:
    """The deployment's row, locked for this transaction (None when there is none)."""
    return _LOCK_DEPLOYMENT.first(connection, {"deployment": deployment_id})


def start_deployment(
    connection: Connection, request: DeploymentRequest, now: float, woken: Set[str]
) -> str:
    """Record a deployment and start it (or fail it at once); its id."""
    deployment_id = new_deployment_id(connection)
    _insert_deployment(connection, deployment_id, request, now)
    if not request.instances:
        _finish(
            connection,
            deployment_id,
            FAILED,
            _error("NO_INSTANCES", "The deployment group has no registered instance to deploy to."),
            now,
            woken,
        )
        return deployment_id
    _insert_targets(connection, deployment_id, request.instances, now)
    if not can_ever_start(request.minimum, len(request.instances)):
        _end_hosts(connection, deployment_id, request.instances, SKIPPED, now)
        needed = request.minimum.hosts(len(request.instances))
        message = (
            f"The deployment configuration {request.config_name} needs {needed} healthy"
            f" host(s) out of {len(request.instances)} at all times, so no host can be"
            " taken out of service to deploy to it."
        )
        _finish(
            connection,
            deployment_id,
            FAILED,
            _error("HEALTH_CONSTRAINTS_INVALID", message),
            now,
            woken,
        )
        return deployment_id
    connection.execute(
        deployments.update()
        .where(deployments.c.id == deployment_id)
        .values(status=IN_PROGRESS, started_at=now)
    )
    advance_deployment(connection, deployment_id, now, woken)
    return deployment_id


def _insert_deployment(
    connection: Connection, deployment_id: str, request: DeploymentRequest, now: float
) -> None:
    group = request.group
    settings = {
        "fileExistsBehavior": request.file_exists_behavior,
        "ignoreApplicationStopFailures": request.ignore_application_stop_failures,
        "autoRollbackConfiguration": request.auto_rollback,
        "minimumHealthyHosts": {"type": request.minimum.type, "value": request.minimum.value},
        "previousRevision": _last_successful_location(connection, group),
    }
    connection.execute(
        deployments.insert().values(
            id=deployment_id,
            application_name=request.application_name,
            deployment_group_name=group["name"],
            deployment_group_id=group["id"],
            revision_id=request.revision_id,
            location=request.location,
            deployment_config_name=request.config_name,
            status=CREATED,
            creator=request.creator,
            description=request.description,
            settings=settings,
            rollback_info=request.rollback_info,
            created_at=now,
        )
    )
    connection.execute(
        deployment_groups.update()
        .where(deployment_groups.c.id == group["id"])
        .values(last_attempted_deployment_id=deployment_id, target_revision_id=request.revision_id)
    )
    if request.revision_id is not None:
        connection.execute(
            application_revisions.update()
            .where(application_revisions.c.id == request.revision_id)
            .values(
                first_used_at=sa.func.coalesce(application_revisions.c.first_used_at, now),
                last_used_at=now,
            )
        )


def _last_successful_location(connection: Connection, group: Record) -> Optional[Dict[str, Any]]:
    last = group.get("last_successful_deployment_id")
    if not last:
        return None
    location = connection.execute(
        sa.select(deployments.c.location).where(deployments.c.id == last)
    ).scalar()
    return dict(location) if location else None


def _insert_targets(
    connection: Connection, deployment_id: str, instances: Sequence[str], now: float
) -> None:
    connection.execute(
        deployment_targets.insert(),
        [
            {
                "deployment_id": deployment_id,
                "instance_name": name,
                "status": PENDING,
                "updated_at": now,
                "position": position,
            }
            for position, name in enumerate(instances)
        ],
    )
    connection.execute(
        lifecycle_events.insert(),
        [
            {
                "deployment_id": deployment_id,
                "instance_name": name,
                "event_name": event,
                "position": position,
                "status": PENDING,
            }
            for name in instances
            for position, event in enumerate(IN_PLACE_COMMANDS)
        ],
    )


def fleet_counts(connection: Connection, deployment_id: str) -> FleetCounts:
    """How many of the deployment's hosts are in each state."""
    rows = _FLEET_COUNTS.run(connection, {"deployment": deployment_id}).rows
    found = {str(status): int(count) for status, count in rows}
    return FleetCounts(
        pending=found.get(PENDING, 0),
        in_progress=found.get(IN_PROGRESS, 0),
        succeeded=found.get(SUCCEEDED, 0),
        failed=found.get(FAILED, 0) + found.get(UNKNOWN, 0),
        skipped=found.get(SKIPPED, 0),
    )


def minimum_of(deployment: Record) -> MinimumHealthy:
    rule = deployment["settings"]["minimumHealthyHosts"]
    return MinimumHealthy(str(rule["type"]), int(rule["value"]))


def advance_deployment(
    connection: Connection,
    deployment_id: str,
    now: float,
    woken: Set[str],
    locked: Optional[Record] = None,
) -> None:
    """Start the hosts the rules allow now, or skip the rest, or end the deployment.
    ``locked``: the deployment's row, when this transaction locked it already."""
    deployment = locked if locked is not None else lock_deployment(connection, deployment_id)
    if deployment is None or deployment["status"] != IN_PROGRESS:
        return
    minimum = minimum_of(deployment)
    counts = fleet_counts(connection, deployment_id)
    stopping = deployment["stop_requested_at"] is not None
    if stopping or cannot_be_met(minimum, counts):
        _end_hosts(
            connection, deployment_id, _pending_hosts(connection, deployment_id), SKIPPED, now
        )
        if counts.in_progress == 0:
            error: Optional[Dict[str, str]] = (
                _error("MANUAL_STOP", "The deployment was stopped by StopDeployment.")
                if stopping
                else _health_error(minimum, counts)
            )
            _finish(connection, deployment_id, STOPPED if stopping else FAILED, error, now, woken)
        return
    outcome = final_status(minimum, counts)
    if outcome is not None:
        ending = None if outcome == SUCCEEDED else _health_error(minimum, counts)
        _finish(connection, deployment_id, outcome, ending, now, woken)
        return
    for name in _pending_hosts(connection, deployment_id, hosts_to_start(minimum, counts)):
        _set_host_status(connection, deployment_id, name, IN_PROGRESS, now)
        queue_command(connection, deployment_id, name, IN_PLACE_COMMANDS[0], now, woken)


def _health_error(minimum: MinimumHealthy, counts: FleetCounts) -> Dict[str, str]:
    needed = max(minimum.hosts(counts.fleet), 1)
    return _error(
        "HEALTH_CONSTRAINTS",
        f"The deployment failed: {counts.failed} of {counts.fleet} host(s) failed, and at least"
        f" {needed} had to succeed while the others stayed healthy; see each host's lifecycle"
        " events (aws deploy get-deployment-target) for why.",
    )


def _pending_hosts(
    connection: Connection, deployment_id: str, limit: Optional[int] = None
) -> List[str]:
    """The hosts not started yet, in the deployment's order (the first ``limit``)."""
    if limit == 0:
        return []
    rows = connection.execute(
        sa.select(deployment_targets.c.instance_name)
        .where(
            deployment_targets.c.deployment_id == deployment_id,
            deployment_targets.c.status == PENDING,
        )
        .order_by(deployment_targets.c.position, deployment_targets.c.instance_name)
        .limit(limit)
    )
    return [str(name) for (name,) in rows]


def queue_command(
    connection: Connection,
    deployment_id: str,
    instance: str,
    command_name: str,
    now: float,
    woken: Set[str],
) -> None:
    """Queue the host's next command; its long poll is woken after the commit."""
    _QUEUE_COMMAND.run(
        connection,
        {
            "id": str(uuid.uuid4()),
            "deployment_id": deployment_id,
            "instance_name": instance,
            "command_name": command_name,
            "status": PENDING,
            "nonce": secrets.randbits(62),
            "created_at": now,
            "last_activity_at": now,
        },
    )
    woken.add(instance)


def next_command(command_name: str) -> Optional[str]:
    """The command that follows ``command_name`` on a host, None after the last."""
    position = IN_PLACE_COMMANDS.index(command_name)
    return IN_PLACE_COMMANDS[position + 1] if position + 1 < len(IN_PLACE_COMMANDS) else None


def _set_host_status(
    connection: Connection, deployment_id: str, instance: str, status: str, now: float
) -> None:
    _SET_HOST_STATUS.run(
        connection,
        {"deployment": deployment_id, "instance": instance, "new_status": status, "now": now},
    )


def end_host(
    connection: Connection, deployment_id: str, instance: str, status: str, now: float
) -> None:
    """The host is done with this deployment; its events not run are Skipped."""
    _SKIP_HOST_EVENTS.run(connection, {"deployment": deployment_id, "instance": instance})
    _set_host_status(connection, deployment_id, instance, status, now)


def _end_hosts(
    connection: Connection, deployment_id: str, instances: Sequence[str], status: str, now: float
) -> None:
    if not instances:
        return
    connection.execute(
        lifecycle_events.update()
        .where(
            lifecycle_events.c.deployment_id == deployment_id,
            lifecycle_events.c.instance_name.in_(instances),
            lifecycle_events.c.status == PENDING,
        )
        .values(status=SKIPPED)
    )
    connection.execute(
        deployment_targets.update()
        .where(
            deployment_targets.c.deployment_id == deployment_id,
            deployment_targets.c.instance_name.in_(instances),
        )
        .values(status=status, updated_at=now)
    )


def _finish(
    connection: Connection,
    deployment_id: str,
    status: str,
    error: Optional[Dict[str, str]],
    now: float,
    woken: Set[str],
) -> None:
    connection.execute(
        deployments.update()
        .where(deployments.c.id == deployment_id)
        .values(status=status, completed_at=now, error_information=error)
    )
    deployment = lock_deployment(connection, deployment_id)
    assert deployment is not None
    if status == SUCCEEDED:
        connection.execute(
            deployment_groups.update()
            .where(deployment_groups.c.id == deployment["deployment_group_id"])
            .values(last_successful_deployment_id=deployment_id)
        )
    elif _rollback_wanted(deployment, status):
        roll_back(connection, deployment, now, woken)


def _rollback_wanted(deployment: Record, status: str) -> bool:
    settings = deployment["settings"]
    rollback = settings.get("autoRollbackConfiguration") or {}
    events = (rollback.get("events") or []) if rollback.get("enabled") else []
    if status == FAILED:
        return DEPLOYMENT_FAILURE in events
    asked = settings.get("rollbackOnStop")
    return bool(asked) if asked is not None else DEPLOYMENT_STOP_ON_REQUEST in events


def changed_hosts(connection: Connection, deployment_id: str) -> List[str]:
    """The hosts that received at least one command of the deployment."""
    rows = connection.execute(
        sa.select(host_commands.c.instance_name)
        .where(
            host_commands.c.deployment_id == deployment_id,
            host_commands.c.handed_out_at.is_not(None),
        )
        .distinct()
    )
    return sorted(str(name) for (name,) in rows)


def roll_back(connection: Connection, failed: Record, now: float, woken: Set[str]) -> None:
    """Deploy the group's last successful revision again, to every host of the group and
    every host the failed deployment changed; or say in ``rollbackInfo`` why not."""
    group = connection.execute(
        sa.select(deployment_groups).where(deployment_groups.c.id == failed["deployment_group_id"])
    ).first()
    changed = changed_hosts(connection, failed["id"])
    last = _rollback_source(connection, None if group is None else group._mapping)
    reason = (
        "the deployment group no longer exists"
        if group is None
        else "no host was changed by the deployment"
        if not changed
        else "the deployment group has no successful deployment to roll back to"
        if last is None
        else ""
    )
    if group is None or last is None or reason:
        _set_rollback_info(connection, failed["id"], {"rollbackMessage": f"No rollback: {reason}."})
        return
    request = _rollback_request(connection, failed, group._mapping, last, changed)
    rollback_id = start_deployment(connection, request, now, woken)
    _set_rollback_info(
        connection,
        failed["id"],
        {
            "rollbackDeploymentId": rollback_id,
            "rollbackMessage": f"Rolled back by {rollback_id} to the revision of {last['id']}.",
        },
    )


def _rollback_source(connection: Connection, group: Optional[Record]) -> Optional[Record]:
    last_id = None if group is None else group["last_successful_deployment_id"]
    if not last_id:
        return None
    row = connection.execute(sa.select(deployments).where(deployments.c.id == last_id)).first()
    return None if row is None else row._mapping


def _rollback_request(
    connection: Connection,
    failed: Record,
    group: Record,
    last: Record,
    changed: Sequence[str],
) -> DeploymentRequest:
    selected = group_instance_names(
        connection, group["on_premises_tag_filters"], group["on_premises_tag_set"]
    )
    registered = {
        str(name)
        for (name,) in connection.execute(
            sa.select(on_premises_instances.c.name).where(
                on_premises_instances.c.name.in_(changed),
                on_premises_instances.c.deregistered_at.is_(None),
            )
        )
    }
    hosts = sorted(set(selected) | registered)
    settings = last["settings"]
    return DeploymentRequest(
        application_name=failed["application_name"],
        group=group,
        revision_id=last["revision_id"],
        location=dict(last["location"]),
        config_name=failed["deployment_config_name"],
        minimum=minimum_of(failed),
        instances=walk_order(connection, group["id"], hosts),
        creator=ROLLBACK_CREATOR,
        description=f"Automatic rollback of {failed['id']}",
        file_exists_behavior=settings.get("fileExistsBehavior", "DISALLOW"),
        ignore_application_stop_failures=bool(settings.get("ignoreApplicationStopFailures")),
        auto_rollback={"enabled": False, "events": []},
        rollback_info={
            "rollbackTriggeringDeploymentId": failed["id"],
            "rollbackMessage": f"Automatic rollback of {failed['id']} ({failed['status']}).",
        },
    )


def _set_rollback_info(connection: Connection, deployment_id: str, info: Dict[str, str]) -> None:
    connection.execute(
        deployments.update().where(deployments.c.id == deployment_id).values(rollback_info=info)
    )


def request_stop(
    connection: Connection,
    deployment: Record,
    rollback: Optional[bool],
    now: float,
    woken: Set[str],
) -> bool:
    """Stop a deployment (locked, still active): no host gets another command, commands
    not handed out yet never will be, hosts not started are Skipped. True when it is
    Stopped already; False while commands already running finish."""
    deployment_id = deployment["id"]
    settings = {**deployment["settings"], "rollbackOnStop": rollback}
    connection.execute(
        deployments.update()
        .where(deployments.c.id == deployment_id)
        .values(
            stop_requested_at=sa.func.coalesce(deployments.c.stop_requested_at, now),
            settings=settings,
        )
    )
    waiting = connection.execute(
        sa.select(host_commands.c.id, host_commands.c.instance_name).where(
            host_commands.c.deployment_id == deployment_id,
            host_commands.c.status == PENDING,
            host_commands.c.handed_out_at.is_(None),
        )
    ).all()
    for command_id, _instance in waiting:
        withdraw_command(connection, command_id, now)
    advance_deployment(connection, deployment_id, now, woken)
    status = connection.execute(
        sa.select(deployments.c.status).where(deployments.c.id == deployment_id)
    ).scalar()
    return status == STOPPED


STOPPED_DIAGNOSTICS = {
    "error_code": 5,
    "script_name": "",
    "message": "The deployment was stopped before this host ran this command.",
    "log": "",
}


def withdraw_command(connection: Connection, command_id: str, now: float) -> bool:
    """Fail a command the host has not started (its deployment stopped): its event is
    Skipped and the host ends (:func:`cut_host_status`). False when the host took it
    meanwhile (then it runs, and ends as it ends)."""
    row = connection.execute(
        sa.select(host_commands).where(host_commands.c.id == command_id)
    ).first()
    if row is None:
        return False
    taken = connection.execute(
        host_commands.update()
        .where(
            host_commands.c.id == command_id,
            host_commands.c.acknowledged_at.is_(None),
            host_commands.c.status.in_((PENDING, IN_PROGRESS)),
        )
        .values(status=FAILED, completed_at=now, diagnostics=STOPPED_DIAGNOSTICS)
    ).rowcount
    if taken != 1:
        return False
    deployment_id, instance = row.deployment_id, row.instance_name
    connection.execute(
        lifecycle_events.update()
        .where(
            lifecycle_events.c.deployment_id == deployment_id,
            lifecycle_events.c.instance_name == instance,
            lifecycle_events.c.event_name == row.command_name,
        )
        .values(status=SKIPPED, ended_at=now)
    )
    end_host(
        connection,
        deployment_id,
        instance,
        cut_host_status(connection, deployment_id, instance),
        now,
    )
    return True


def cut_host_status(connection: Connection, deployment_id: str, instance: str) -> str:
    """The status of a host whose commands a stop cut short: Skipped when it ran none,
    Unknown when it ran some (its state is part old, part new)."""
    ran = connection.execute(
        sa.select(sa.func.count())
        .select_from(host_commands)
        .where(
            host_commands.c.deployment_id == deployment_id,
            host_commands.c.instance_name == instance,
            host_commands.c.acknowledged_at.is_not(None),
        )
    ).scalar_one()
    return UNKNOWN if ran else SKIPPED
