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
from typing import Any, Dict, List, Optional, Set

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.database.schema import host_commands, lifecycle_events, on_premises_instances
from server.deployment_engine import (
    APPLICATION_STOP,
    FAILED,
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


def instance_for_host(connection: Connection, host_arn: str) -> Optional[str]:
    """The registered on-premises instance whose IAM ARN the host identifies as."""
    row = connection.execute(
        sa.select(on_premises_instances.c.name).where(
            sa.or_(
                on_premises_instances.c.iam_user_arn == host_arn,
                on_premises_instances.c.iam_session_arn == host_arn,
            ),
            on_premises_instances.c.deregistered_at.is_(None),
        )
    ).first()
    return None if row is None else str(row.name)


def _incomplete_commands(connection: Connection, instance: str) -> List[sa.RowMapping]:
    rows = connection.execute(
        sa.select(host_commands)
        .where(
            host_commands.c.instance_name == instance,
            host_commands.c.status.in_(_INCOMPLETE),
        )
        .order_by(host_commands.c.created_at, host_commands.c.id)
    )
    return [row._mapping for row in rows]


def host_may_have_command(connection: Connection, instance: str) -> bool:
    """Whether a poll of this host might get a command now (a read, to spare writes)."""
    return bool(_incomplete_commands(connection, instance))


def hand_out_command(
    connection: Connection, instance: str, poll_started: float, now: float
) -> Optional[sa.RowMapping]:
    """The command to give the host's poll that began at ``poll_started``, or None."""
    commands = _incomplete_commands(connection, instance)
    for command in commands:
        if command["handed_out_at"] is None:
            continue
        if command["acknowledged_at"] is None and command["handed_out_at"] <= poll_started:
            connection.execute(
                host_commands.update()
                .where(host_commands.c.id == command["id"])
                .values(last_activity_at=now)
            )
            return command  # handed out again: the host never started it
        return None  # the host is busy with it
    for command in commands:
        taken = connection.execute(
            host_commands.update()
            .where(
                host_commands.c.id == command["id"],
                host_commands.c.handed_out_at.is_(None),
                host_commands.c.status == PENDING,
            )
            .values(status=IN_PROGRESS, handed_out_at=now, last_activity_at=now)
        ).rowcount
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
    values: Dict[str, Any] = {"status": status}
    if started is not None:
        values["started_at"] = sa.func.coalesce(lifecycle_events.c.started_at, started)
    if ended is not None:
        values["ended_at"] = ended
        values["started_at"] = sa.func.coalesce(lifecycle_events.c.started_at, ended)
    if diagnostics is not None:
        values["diagnostics"] = diagnostics
    connection.execute(
        lifecycle_events.update()
        .where(
            lifecycle_events.c.deployment_id == command["deployment_id"],
            lifecycle_events.c.instance_name == command["instance_name"],
            lifecycle_events.c.event_name == command["command_name"],
        )
        .values(**values)
    )


def find_command(connection: Connection, command_id: str) -> Optional[sa.RowMapping]:
    row = connection.execute(
        sa.select(host_commands).where(host_commands.c.id == command_id)
    ).first()
    return None if row is None else row._mapping


def _locked_command(connection: Connection, command_id: str) -> Optional[sa.RowMapping]:
    """The command read again after its deployment's row was locked (the lock order)."""
    command = find_command(connection, command_id)
    if command is None or lock_deployment(connection, command["deployment_id"]) is None:
        return None
    return find_command(connection, command_id)


def acknowledge_command(
    connection: Connection, command_id: str, now: float, woken: Set[str]
) -> str:
    """The status the acknowledgement answers: InProgress (run it), or the command's final
    status; Failed, and the command withdrawn, when its deployment was stopped first."""
    command = _locked_command(connection, command_id)
    if command is None:
        return FAILED
    if command["status"] in (SUCCEEDED, FAILED):
        return str(command["status"])
    deployment = lock_deployment(connection, command["deployment_id"])
    assert deployment is not None
    stopped = deployment["stop_requested_at"] is not None and command["acknowledged_at"] is None
    if stopped and withdraw_command(connection, command_id, now):
        advance_deployment(connection, command["deployment_id"], now, woken)
        return FAILED
    connection.execute(
        host_commands.update()
        .where(host_commands.c.id == command_id)
        .values(
            status=IN_PROGRESS,
            handed_out_at=sa.func.coalesce(host_commands.c.handed_out_at, now),
            acknowledged_at=sa.func.coalesce(host_commands.c.acknowledged_at, now),
            last_activity_at=now,
        )
    )
    return IN_PROGRESS


def touch_command(connection: Connection, command_id: str, now: float) -> str:
    """A progress report: the command's timeout starts again; its status."""
    connection.execute(
        host_commands.update()
        .where(host_commands.c.id == command_id, host_commands.c.status.in_(_INCOMPLETE))
        .values(last_activity_at=now)
    )
    command = find_command(connection, command_id)
    return FAILED if command is None else str(command["status"])


def complete_command(
    connection: Connection,
    command_id: str,
    status: str,
    diagnostics: Dict[str, Any],
    now: float,
    woken: Set[str],
) -> None:
    """Record a host's report of a command and move its host and deployment on."""
    command = _locked_command(connection, command_id)
    if command is None or command["status"] not in _INCOMPLETE:
        return
    connection.execute(
        host_commands.update()
        .where(host_commands.c.id == command_id)
        .values(status=status, completed_at=now, diagnostics=diagnostics, last_activity_at=now)
    )
    _set_event(connection, command, status, ended=now, diagnostics=diagnostics)
    _after_command(connection, command, status, now, woken)
    advance_deployment(connection, command["deployment_id"], now, woken)


def _after_command(
    connection: Connection, command: Record, status: str, now: float, woken: Set[str]
) -> None:
    deployment = lock_deployment(connection, command["deployment_id"])
    assert deployment is not None
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
