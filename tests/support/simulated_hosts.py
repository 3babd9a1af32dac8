"""Hosts simulated in the test process, straight against the server's database, for fast
tests of the orchestration's rules on SQLite and PostgreSQL.

:class:`SimulatedFleet` makes an application, a deployment group and its registered,
tagged instances with the server's own tables, creates deployments with the engine, and
walks them as agents would: each round, every host polls (the command it is given is
acknowledged at once), then every host that holds a command completes it, Succeeded or
Failed as the test's ``outcome`` says. Times come from a clock the test moves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import sqlalchemy as sa

from server.database.engine import Database
from server.database.schema import (
    applications,
    deployment_groups,
    deployment_targets,
    deployments,
    instance_tags,
    lifecycle_events,
    on_premises_instances,
)
from server.deployment_engine import DeploymentRequest, fleet_counts, start_deployment, walk_order
from server.deployment_rules import MinimumHealthy
from server.group_hosts import group_instance_names
from server.host_command_flow import acknowledge_command, complete_command, hand_out_command

# (host, command name, how many commands of that name ran before, fleet-wide) -> failed?
Outcome = Callable[[str, str, int], bool]
TAG = {"Key": "fleet", "Value": "simulated", "Type": "KEY_AND_VALUE"}


def always_succeeds(host: str, command: str, before: int) -> bool:
    return False


@dataclass
class Walk:
    """What a walk saw: the commands run, in order, and the most hosts in progress at once."""

    ran: List[Tuple[str, str]] = field(default_factory=list)
    most_in_progress: int = 0
    rounds: int = 0

    def commands_of(self, host: str) -> List[str]:
        return [command for name, command in self.ran if name == host]


class SimulatedFleet:
    """One application, one group of ``hosts`` (named host-0, host-1, ...)."""

    def __init__(self, database: Database, hosts: int, *, registered: int = -1) -> None:
        self.database = database
        self.now = 1000.0
        self.group_id = str(uuid.uuid4())
        self.hosts = [f"host-{number}" for number in range(hosts)]
        self.woken: Set[str] = set()
        self.held: Dict[str, str] = {}  # host -> the command it acknowledged
        with database.write() as connection:
            self._make_group(connection)

    def _make_group(self, connection: sa.Connection) -> None:
        self.application_id = str(uuid.uuid4())
        connection.execute(
            applications.insert().values(
                id=self.application_id,
                name="app",
                compute_platform="Server",
                tags=[],
                created_at=1.0,
            )
        )
        self._insert_group(connection, self.group_id, "group")
        for name in self.hosts:
            self.register(connection, name)

    def _insert_group(self, connection: sa.Connection, group_id: str, name: str) -> None:
        connection.execute(
            deployment_groups.insert().values(
                id=group_id,
                application_id=self.application_id,
                name=name,
                deployment_config_name="CodeDeployDefault.OneAtATime",
                service_role_arn="arn:aws:iam::000000000000:role/r",
                on_premises_tag_filters=[TAG],
                on_premises_tag_set=[],
                settings={},
                created_at=1.0,
            )
        )

    def add_group(self, name: str) -> str:
        """Another group of the application with the same tag filter: the same hosts."""
        group_id = str(uuid.uuid4())
        with self.database.write() as connection:
            self._insert_group(connection, group_id, name)
        return group_id

    def register(self, connection: sa.Connection, name: str) -> None:
        connection.execute(
            on_premises_instances.insert().values(
                name=name,
                iam_user_arn=f"arn:aws:iam::000000000000:user/codedeploy-hosts/{name}",
                instance_arn=f"arn:aws:codedeploy:us-east-1:000000000000:instance/{name}",
                registered_at=1.0,
            )
        )
        connection.execute(
            instance_tags.insert().values(instance_name=name, key="fleet", value="simulated")
        )

    def tick(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now

    def group(self, connection: sa.Connection, group_id: Optional[str] = None) -> sa.RowMapping:
        row = connection.execute(
            sa.select(deployment_groups).where(
                deployment_groups.c.id == (group_id or self.group_id)
            )
        ).one()
        return row._mapping

    def deploy(self, minimum: MinimumHealthy, **options: Any) -> str:
        """Create a deployment of revision ``options["label"]`` (default "v1") to the group
        ``options["group_id"]`` (default: the first)."""
        label = options.pop("label", "v1")
        group_id = options.pop("group_id", self.group_id)
        with self.database.write() as connection:
            group = self.group(connection, group_id)
            instances = group_instance_names(connection, [TAG], [])
            request = DeploymentRequest(
                application_name="app",
                group=group,
                revision_id=None,
                location={"revisionType": "S3", "s3Location": {"bucket": "b", "key": label}},
                config_name="test-config",
                minimum=minimum,
                instances=walk_order(connection, group_id, instances),
                **options,
            )
            return start_deployment(connection, request, self.tick(), self.woken)

    def poll(self, host: str, poll_started: Optional[float] = None) -> Optional[sa.RowMapping]:
        """One poll of ``host``: the command handed out (not acknowledged), or None."""
        now = self.tick()
        with self.database.write() as connection:
            instance = hand_out_command(connection, host, poll_started or now, now)
        return instance

    def acknowledge(self, command_id: str) -> str:
        with self.database.write() as connection:
            return acknowledge_command(connection, command_id, self.tick(), self.woken)

    def complete(self, command_id: str, failed: bool, message: str = "") -> None:
        diagnostics = {
            "error_code": 4 if failed else 0,
            "script_name": "scripts/check.sh" if failed else "",
            "message": message or ("Script at specified location failed" if failed else "ok"),
            "log": "[stderr]boom\n" if failed else "",
        }
        status = "Failed" if failed else "Succeeded"
        with self.database.write() as connection:
            complete_command(connection, command_id, status, diagnostics, self.tick(), self.woken)

    def walk(
        self, deployment_id: str, outcome: Outcome = always_succeeds, rounds: int = 200
    ) -> Walk:
        """Run every host as an agent until the deployment ends."""
        walk = Walk()
        seen: Dict[str, int] = {}
        while self.status(deployment_id) in ("Created", "InProgress") and walk.rounds < rounds:
            walk.rounds += 1
            taken: List[Tuple[str, Any]] = []
            for host in self.hosts:
                command = self.poll(host)
                if command is not None and self.acknowledge(command["id"]) == "InProgress":
                    taken.append((host, command))
            walk.most_in_progress = max(
                walk.most_in_progress, self.counts(deployment_id).in_progress
            )
            for host, command in taken:
                name = command["command_name"]
                failed = outcome(host, name, seen.get(name, 0))
                seen[name] = seen.get(name, 0) + 1
                walk.ran.append((host, name))
                self.complete(command["id"], failed)
        return walk

    def row(self, deployment_id: str) -> sa.RowMapping:
        with self.database.read() as connection:
            found = connection.execute(
                sa.select(deployments).where(deployments.c.id == deployment_id)
            ).one()
            return found._mapping

    def status(self, deployment_id: str) -> str:
        return str(self.row(deployment_id)["status"])

    def counts(self, deployment_id: str) -> Any:
        with self.database.read() as connection:
            return fleet_counts(connection, deployment_id)

    def host_statuses(self, deployment_id: str) -> Dict[str, str]:
        with self.database.read() as connection:
            rows = connection.execute(
                sa.select(deployment_targets.c.instance_name, deployment_targets.c.status).where(
                    deployment_targets.c.deployment_id == deployment_id
                )
            )
            return {str(name): str(status) for name, status in rows}

    def events(self, deployment_id: str, host: str) -> List[Tuple[str, str]]:
        with self.database.read() as connection:
            rows = connection.execute(
                sa.select(lifecycle_events.c.event_name, lifecycle_events.c.status)
                .where(
                    lifecycle_events.c.deployment_id == deployment_id,
                    lifecycle_events.c.instance_name == host,
                )
                .order_by(lifecycle_events.c.position)
            )
            return [(str(name), str(status)) for name, status in rows]

    def events_with_diagnostics(self, deployment_id: str, host: str) -> List[str]:
        """The messages of the host's lifecycle events that have diagnostics, in order."""
        with self.database.read() as connection:
            rows = connection.execute(
                sa.select(lifecycle_events.c.diagnostics)
                .where(
                    lifecycle_events.c.deployment_id == deployment_id,
                    lifecycle_events.c.instance_name == host,
                    lifecycle_events.c.diagnostics.is_not(None),
                )
                .order_by(lifecycle_events.c.position)
            )
            return [str(diagnostics["message"]) for (diagnostics,) in rows]
