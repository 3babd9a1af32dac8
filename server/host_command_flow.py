"""A host command's life in the database: handed out, acknowledged, completed, or timed
out, each a step inside the caller's transaction (docs/server.md, "Commands and crashes").

A host gets one command at a time, the oldest queued for it across its deployments. A
command is handed out by a conditional update (``handed_out_at`` still empty), so two
server processes never both hand it out; it is handed out again, with the same id, only to
a later poll of the same host while it is not acknowledged: the agent runs nothing before
its acknowledgement is answered, so a command whose hand-out was lost (the server killed
before its answer left, a connection cut) is never forgotten and never runs twice. An
acknowledged command is never handed out again: it finishes with the host's completion,
or with its timeout. A completion that comes after the command was decided (timed out,
withdrawn by a stop, completed before) changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.database.compiled import CompiledStatement, one_of
from server.database.schema import (
    deployments,
    host_commands,
    lifecycle_events,
    on_premises_instances,
)
from server.deployment_engine import (
    APPLICATION_STOP,
    FAILED,
    IN_PLACE_COMMANDS,
    IN_PROGRESS,
    PENDING,
    SUCCEEDED,
    UNKNOWN,
    Record,
    advance_deployment,
    end_host,
    lock_deployment,
    next_command,
    queue_command,
    withdraw_command,
)

UNKNOWN_ERROR = 5
DIAGNOSTICS_LIMIT = 8192
_INCOMPLETE = (PENDING, IN_PROGRESS)
# The last command of a host: its completion ends the host.
_LAST = IN_PLACE_COMMANDS[-1]

# The statements of the command path, built once and run compiled (every command runs
# each of them: server/database/compiled.py says why).
_ARN: sa.BindParameter[str] = sa.bindparam("arn")
_OWNED_BY_CALLER = sa.and_(
    sa.or_(
        on_premises_instances.c.iam_user_arn == _ARN,
        on_premises_instances.c.iam_session_arn == _ARN,
    ),
    on_premises_instances.c.deregistered_at.is_(None),
)
# The names of the instances a host (bound as ``arn``) identifies as: at most one.
HOST_INSTANCE_NAMES = sa.select(on_premises_instances.c.name).where(_OWNED_BY_CALLER)
_INSTANCE_OF_HOST = CompiledStatement(HOST_INSTANCE_NAMES)
_COMMAND_OWNER = CompiledStatement(
    sa.select(host_commands.c.deployment_id, on_premises_instances.c.name.label("owner"))
    .select_from(
        host_commands.outerjoin(
            on_premises_instances,
            sa.and_(
                on_premises_instances.c.name == host_commands.c.instance_name, _OWNED_BY_CALLER
            ),
        )
    )
    .where(host_commands.c.id == sa.bindparam("command_id"))
)
# The deployment of a command (bound as ``command_id``) locked, with the command's name
# and the name of the caller's instance when the command is one of its own: one round
# trip where the owner check and the lock were two. Locked exclusively, or shared.
_CALLER_INSTANCE, _COMMAND_NAME = "caller_instance", "locked_command_name"
_DEPLOYMENT_OF_COMMAND = (
    sa.select(
        deployments,
        host_commands.c.command_name.label(_COMMAND_NAME),
        on_premises_instances.c.name.label(_CALLER_INSTANCE),
    )
    .select_from(
        host_commands.join(
            deployments, deployments.c.id == host_commands.c.deployment_id
        ).outerjoin(
            on_premises_instances,
            sa.and_(
                on_premises_instances.c.name == host_commands.c.instance_name, _OWNED_BY_CALLER
            ),
        )
    )
    .where(host_commands.c.id == sa.bindparam("command_id"))
)
_LOCK_DEPLOYMENT_OF_COMMAND = CompiledStatement(
    _DEPLOYMENT_OF_COMMAND.with_for_update(of=deployments)
)
_SHARE_DEPLOYMENT_OF_COMMAND = CompiledStatement(
    _DEPLOYMENT_OF_COMMAND.with_for_update(of=deployments, read=True)
)
_INCOMPLETE_OF_INSTANCE = CompiledStatement(
    sa.select(host_commands)
    .where(
        host_commands.c.instance_name == sa.bindparam("instance"),
        one_of(host_commands.c.status, _INCOMPLETE),
    )
    .order_by(host_commands.c.created_at, host_commands.c.id)
)
_FIND_COMMAND = CompiledStatement(
    sa.select(host_commands).where(host_commands.c.id == sa.bindparam("command_id"))
)
_COMMAND_DEPLOYMENT = CompiledStatement(
    sa.select(host_commands.c.deployment_id).where(host_commands.c.id == sa.bindparam("command_id"))
)
_HAND_OUT_AGAIN = CompiledStatement(
    host_commands.update()
    .where(host_commands.c.id == sa.bindparam("command_id"))
    .values(last_activity_at=sa.bindparam("now"))
)
_TAKE_COMMAND = CompiledStatement(
    host_commands.update()
    .where(
        host_commands.c.id == sa.bindparam("command_id"),
        host_commands.c.handed_out_at.is_(None),
        host_commands.c.status == PENDING,
    )
    .values(
        status=IN_PROGRESS,
        handed_out_at=sa.bindparam("now"),
        last_activity_at=sa.bindparam("now"),
    )
)
_ACKNOWLEDGE = CompiledStatement(
    host_commands.update()
    .where(host_commands.c.id == sa.bindparam("command_id"))
    .values(
        status=IN_PROGRESS,
        handed_out_at=sa.func.coalesce(host_commands.c.handed_out_at, sa.bindparam("now")),
        acknowledged_at=sa.func.coalesce(host_commands.c.acknowledged_at, sa.bindparam("now")),
        last_activity_at=sa.bindparam("now"),
    )
)
_TOUCH = CompiledStatement(
    host_commands.update()
    .where(
        host_commands.c.id == sa.bindparam("command_id"),
        one_of(host_commands.c.status, _INCOMPLETE),
    )
    .values(last_activity_at=sa.bindparam("now"))
)
_COMPLETE = CompiledStatement(
    host_commands.update()
    .where(host_commands.c.id == sa.bindparam("command_id"))
    .values(
        status=sa.bindparam("new_status"),
        completed_at=sa.bindparam("now"),
        diagnostics=sa.bindparam("report", type_=host_commands.c.diagnostics.type),
        last_activity_at=sa.bindparam("now"),
    )
)
_THIS_EVENT = sa.and_(
    lifecycle_events.c.deployment_id == sa.bindparam("deployment"),
    lifecycle_events.c.instance_name == sa.bindparam("instance"),
    lifecycle_events.c.event_name == sa.bindparam("event"),
)
_EVENT_STARTED = CompiledStatement(
    lifecycle_events.update()
    .where(_THIS_EVENT)
    .values(
        status=sa.bindparam("new_status"),
        started_at=sa.func.coalesce(lifecycle_events.c.started_at, sa.bindparam("at")),
    )
)
_EVENT_ENDED = CompiledStatement(
    lifecycle_events.update()
    .where(_THIS_EVENT)
    .values(
        status=sa.bindparam("new_status"),
        ended_at=sa.bindparam("at"),
        started_at=sa.func.coalesce(lifecycle_events.c.started_at, sa.bindparam("at")),
        diagnostics=sa.bindparam("report", type_=lifecycle_events.c.diagnostics.type),
    )
)


def instance_for_host(connection: Connection, host_arn: str) -> Optional[str]:
    """The registered on-premises instance whose IAM ARN the host identifies as."""
    name = _INSTANCE_OF_HOST.scalar(connection, {"arn": host_arn})
    return None if name is None else str(name)


def command_owner(
    connection: Connection, command_id: str, host_arn: str
) -> Optional[Tuple[str, bool]]:
    """The command's deployment, and whether the command is one of the instance's that the
    host identifies as; None when there is no such command."""
    row = _COMMAND_OWNER.first(connection, {"command_id": command_id, "arn": host_arn})
    return None if row is None else (str(row["deployment_id"]), row["owner"] is not None)


class NeedsExclusiveLock(Exception):
    """A step that holds its deployment's row shared found that it changes the deployment
    or ends a host: its transaction is rolled back and run again with the row locked
    exclusively (a shared lock is never upgraded: two holders upgrading would deadlock)."""


@dataclass(frozen=True)
class LockedDeployment:
    """A command's deployment row, locked for this transaction (``shared``: only against
    changes), the command's name, and whether the caller owns the command."""

    row: Record
    command_name: str
    owned: bool
    shared: bool


def lock_deployment_of_command(
    connection: Connection, command_id: str, host_arn: str, *, shared: bool
) -> Optional[LockedDeployment]:
    """The command's deployment row locked for this transaction (shared or exclusive), and
    whether the command is one of the instance's that the host identifies as; None when
    there is no such command."""
    statement = _SHARE_DEPLOYMENT_OF_COMMAND if shared else _LOCK_DEPLOYMENT_OF_COMMAND
    row = statement.first(connection, {"command_id": command_id, "arn": host_arn})
    if row is None:
        return None
    owner, name = row.pop(_CALLER_INSTANCE), row.pop(_COMMAND_NAME)
    return LockedDeployment(row, str(name), owner is not None, shared)


def _incomplete_commands(connection: Connection, instance: str) -> List[Dict[str, Any]]:
    return _INCOMPLETE_OF_INSTANCE.run(connection, {"instance": instance}).mappings()


def hand_out_command(
    connection: Connection, instance: str, poll_started: float, now: float
) -> Optional[Dict[str, Any]]:
    """The command to give the host's poll that began at ``poll_started``, or None."""
    commands = _incomplete_commands(connection, instance)
    for command in commands:
        if command["handed_out_at"] is None:
            continue
        if command["acknowledged_at"] is None and command["handed_out_at"] <= poll_started:
            _HAND_OUT_AGAIN.run(connection, {"command_id": command["id"], "now": now})
            return command  # handed out again: the host never started it
        return None  # the host is busy with it
    for command in commands:
        taken = _TAKE_COMMAND.run(connection, {"command_id": command["id"], "now": now}).rowcount
        if taken == 1:
            _set_event(connection, command, IN_PROGRESS, started=now)
            return command
    return None


def _set_event(
    connection: Connection,
    command: Record,
    status: str,
    *,
    started: Optional[float] = None,
    ended: Optional[float] = None,
    diagnostics: Optional[Dict[str, Any]] = None,
) -> None:
    """The command's lifecycle event is ``status``: started at ``started``, or ended at
    ``ended`` with ``diagnostics``."""
    event = {
        "deployment": command["deployment_id"],
        "instance": command["instance_name"],
        "event": command["command_name"],
        "new_status": status,
    }
    if ended is not None:
        _EVENT_ENDED.run(connection, {**event, "at": ended, "report": diagnostics})
    else:
        _EVENT_STARTED.run(connection, {**event, "at": started})


def find_command(connection: Connection, command_id: str) -> Optional[Dict[str, Any]]:
    return _FIND_COMMAND.first(connection, {"command_id": command_id})


def _locked_command(
    connection: Connection, command_id: str, locked: Optional[LockedDeployment]
) -> Tuple[Optional[Dict[str, Any]], Record]:
    """The command, read after its deployment's row was locked (the lock order), and that
    deployment's row; no command when there is none. ``locked``: the row when the caller
    locked it already (lock_deployment_of_command)."""
    if locked is not None:
        return find_command(connection, command_id), locked.row
    deployment_id = _COMMAND_DEPLOYMENT.scalar(connection, {"command_id": command_id})
    deployment = None if deployment_id is None else lock_deployment(connection, deployment_id)
    if deployment is None:
        return None, {}
    return find_command(connection, command_id), deployment


def acknowledge_command(
    connection: Connection,
    command_id: str,
    now: float,
    woken: Set[str],
    locked: Optional[LockedDeployment] = None,
) -> str:
    """The status the acknowledgement answers: InProgress (run it), or the command's final
    status; Failed, and the command withdrawn, when its deployment was stopped first."""
    command, deployment = _locked_command(connection, command_id, locked)
    if command is None:
        return FAILED
    if command["status"] in (SUCCEEDED, FAILED):
        return str(command["status"])
    stopped = deployment["stop_requested_at"] is not None and command["acknowledged_at"] is None
    if stopped and locked is not None and locked.shared:
        raise NeedsExclusiveLock()
    if stopped and withdraw_command(connection, command_id, now):
        advance_deployment(connection, command["deployment_id"], now, woken)
        return FAILED
    _ACKNOWLEDGE.run(connection, {"command_id": command_id, "now": now})
    return IN_PROGRESS


def touch_command(connection: Connection, command_id: str, now: float) -> str:
    """A progress report: the command's timeout starts again; its status."""
    _TOUCH.run(connection, {"command_id": command_id, "now": now})
    command = find_command(connection, command_id)
    return FAILED if command is None else str(command["status"])


def complete_command(
    connection: Connection,
    command_id: str,
    status: str,
    diagnostics: Dict[str, Any],
    now: float,
    woken: Set[str],
    locked: Optional[LockedDeployment] = None,
) -> None:
    """Record a host's report of a command and move its host and deployment on.

    The deployment's walk is looked at again only when the host ended: a command that
    succeeded and queued the host's next one changes no host's status, so the walk would
    decide what it decided when it last moved."""
    shared = locked is not None and locked.shared
    if shared and (status != SUCCEEDED or (locked is not None and locked.command_name == _LAST)):
        raise NeedsExclusiveLock()  # the host ends: decided before anything is read
    command, deployment = _locked_command(connection, command_id, locked)
    if command is None or command["status"] not in _INCOMPLETE:
        return
    if shared and deployment["stop_requested_at"] is not None:
        raise NeedsExclusiveLock()
    _COMPLETE.run(
        connection,
        {"command_id": command_id, "new_status": status, "now": now, "report": diagnostics},
    )
    _set_event(connection, command, status, ended=now, diagnostics=diagnostics)
    if _after_command(connection, command, deployment, status, now, woken):
        advance_deployment(connection, command["deployment_id"], now, woken, locked=deployment)


def _after_command(
    connection: Connection,
    command: Record,
    deployment: Record,
    status: str,
    now: float,
    woken: Set[str],
) -> bool:
    """End the host or queue its next command; whether the host ended."""
    deployment_id, instance = command["deployment_id"], command["instance_name"]
    ignored = (
        status == FAILED
        and command["command_name"] == APPLICATION_STOP
        and bool(deployment["settings"].get("ignoreApplicationStopFailures"))
    )
    following = next_command(command["command_name"])
    if status == FAILED and not ignored:
        end_host(connection, deployment_id, instance, FAILED, now)
    elif following is None:
        end_host(connection, deployment_id, instance, SUCCEEDED, now)
    elif deployment["stop_requested_at"] is not None:
        end_host(connection, deployment_id, instance, UNKNOWN, now)
    else:
        queue_command(connection, deployment_id, instance, following, now, woken)
        return False
    return True


def diagnostics_from_envelope(envelope: Optional[Record]) -> Dict[str, Any]:
    """The agent's diagnostics (``{"error_code", "script_name", "message", "log"}``) from
    the envelope it sent; text that is not that JSON is kept as the message."""
    payload = str((envelope or {}).get("Payload") or "")[:DIAGNOSTICS_LIMIT]
    try:
        document = json.loads(payload) if payload else {}
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return {"error_code": UNKNOWN_ERROR, "script_name": "", "message": payload, "log": ""}
    code = document.get("error_code")
    return {
        "error_code": code if isinstance(code, int) and not isinstance(code, bool) else None,
        "script_name": str(document.get("script_name") or ""),
        "message": str(document.get("message") or ""),
        "log": str(document.get("log") or ""),
    }


def stale_deployment_ids(connection: Connection, timeout: float, now: float) -> List[str]:
    """Deployments with a command that showed no sign of life for ``timeout`` seconds."""
    rows = connection.execute(
        sa.select(host_commands.c.deployment_id)
        .where(
            host_commands.c.status.in_(_INCOMPLETE),
            host_commands.c.last_activity_at < now - timeout,
        )
        .distinct()
    )
    return sorted(str(deployment_id) for (deployment_id,) in rows)


def _timeout_message(command: Record, timeout: float) -> str:
    if command["handed_out_at"] is None:
        what = "did not ask for this command (is its agent running and polling this server?)"
    elif command["acknowledged_at"] is None:
        what = "received this command but did not acknowledge it"
    else:
        what = "did not report this command's outcome"
    return f"The host {what} within {timeout:g} seconds."


def expire_commands(
    connection: Connection, deployment_id: str, timeout: float, now: float, woken: Set[str]
) -> int:
    """Fail the deployment's commands that timed out (and so their hosts); how many."""
    if lock_deployment(connection, deployment_id) is None:
        return 0
    stale = connection.execute(
        sa.select(host_commands).where(
            host_commands.c.deployment_id == deployment_id,
            host_commands.c.status.in_(_INCOMPLETE),
            host_commands.c.last_activity_at < now - timeout,
        )
    ).all()
    for row in stale:
        command = row._mapping
        diagnostics = {
            "error_code": UNKNOWN_ERROR,
            "script_name": "",
            "message": _timeout_message(command, timeout),
            "log": "",
        }
        connection.execute(
            host_commands.update()
            .where(host_commands.c.id == command["id"])
            .values(status=FAILED, completed_at=now, diagnostics=diagnostics)
        )
        _set_event(connection, command, FAILED, ended=now, diagnostics=diagnostics)
        end_host(connection, deployment_id, command["instance_name"], FAILED, now)
    if stale:
        advance_deployment(connection, deployment_id, now, woken)
    return len(stale)
