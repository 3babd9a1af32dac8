"""Deployments walked by simulated hosts straight against the database, on SQLite and on
PostgreSQL: batches, outcomes, the failures that stop a walk, stop and rollback."""

from __future__ import annotations

from typing import Dict, List, Tuple

import sqlalchemy as sa

from server.database.engine import open_database
from server.database.schema import deployment_groups, host_commands
from server.deployment_engine import IN_PLACE_COMMANDS, lock_deployment, request_stop
from server.deployment_rules import FLEET_PERCENT, HOST_COUNT, MOST_CONCURRENCY, MinimumHealthy
from server.host_command_flow import expire_commands, stale_deployment_ids
from tests.support.simulated_hosts import SimulatedFleet

ONE_AT_A_TIME = MinimumHealthy(MOST_CONCURRENCY, 1)
HALF_AT_A_TIME = MinimumHealthy(FLEET_PERCENT, 50)
ALL_AT_ONCE = MinimumHealthy(HOST_COUNT, 0)


def fails_validate_service_number(number: int):  # type: ignore[no-untyped-def]
    """The ``number``-th host to reach ValidateService fails it (1: the first)."""
    return lambda host, command, before: command == "ValidateService" and before == number - 1


def test_half_at_a_time_walks_three_hosts_one_by_one(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 3)
    deployment_id = fleet.deploy(HALF_AT_A_TIME)
    walk = fleet.walk(deployment_id)
    assert fleet.status(deployment_id) == "Succeeded"
    assert walk.most_in_progress == 1  # half of three, rounded down
    for host in fleet.hosts:
        assert walk.commands_of(host) == list(IN_PLACE_COMMANDS)
        assert fleet.events(deployment_id, host) == [
            (event, "Succeeded") for event in IN_PLACE_COMMANDS
        ]
    with fleet.database.read() as connection:
        group = fleet.group(connection)
    assert group["last_successful_deployment_id"] == deployment_id
    assert group["last_attempted_deployment_id"] == deployment_id


def test_half_at_a_time_takes_half_of_nine_hosts_at_once(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 9)
    deployment_id = fleet.deploy(HALF_AT_A_TIME)
    assert fleet.walk(deployment_id).most_in_progress == 4
    assert fleet.status(deployment_id) == "Succeeded"


def test_one_at_a_time_succeeds_when_only_the_last_host_fails(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 3)
    deployment_id = fleet.deploy(ONE_AT_A_TIME)
    walk = fleet.walk(deployment_id, fails_validate_service_number(3))
    assert walk.most_in_progress == 1
    assert fleet.status(deployment_id) == "Succeeded"
    assert sorted(fleet.host_statuses(deployment_id).values()) == [
        "Failed",
        "Succeeded",
        "Succeeded",
    ]


def test_one_at_a_time_fails_at_a_failure_before_the_last_host_and_skips_the_rest(
    database_url: str,
) -> None:
    fleet = SimulatedFleet(open_database(database_url), 3)
    deployment_id = fleet.deploy(ONE_AT_A_TIME)
    walk = fleet.walk(deployment_id, fails_validate_service_number(2))
    row = fleet.row(deployment_id)
    assert row["status"] == "Failed"
    assert row["error_information"]["code"] == "HEALTH_CONSTRAINTS"
    statuses = fleet.host_statuses(deployment_id)
    assert sorted(statuses.values()) == ["Failed", "Skipped", "Succeeded"]
    skipped = next(host for host, status in statuses.items() if status == "Skipped")
    assert walk.commands_of(skipped) == []
    assert fleet.events(deployment_id, skipped) == [(e, "Skipped") for e in IN_PLACE_COMMANDS]
    failed = next(host for host, status in statuses.items() if status == "Failed")
    assert fleet.events(deployment_id, failed)[-1] == ("ValidateService", "Failed")


def test_all_at_once_needs_one_healthy_host(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 3)
    first = fleet.deploy(ALL_AT_ONCE)
    walk = fleet.walk(first, lambda host, command, before: command == "Install" and before < 2)
    assert walk.most_in_progress == 3
    assert fleet.status(first) == "Succeeded"
    second = fleet.deploy(ALL_AT_ONCE, label="v2")
    fleet.walk(second, lambda host, command, before: command == "Install")
    assert fleet.status(second) == "Failed"


def test_a_host_count_of_eight_of_ten_goes_two_at_a_time(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 10)
    rule = MinimumHealthy(HOST_COUNT, 8)
    # The 10th host to run BeforeInstall is the last one: the second failure, and still a success.
    ok = fleet.deploy(rule)
    walk = fleet.walk(
        ok, lambda host, command, before: command == "BeforeInstall" and before in (0, 9)
    )
    assert walk.most_in_progress == 2
    assert fleet.status(ok) == "Succeeded"
    # Two failures before the end: the minimum can no longer be met.
    failed = fleet.deploy(rule, label="v2")
    fleet.walk(failed, lambda host, command, before: command == "BeforeInstall" and before < 2)
    assert fleet.status(failed) == "Failed"
    assert "Skipped" in fleet.host_statuses(failed).values()


def test_a_group_without_hosts_fails_at_once_with_no_instances(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 0)
    deployment_id = fleet.deploy(ONE_AT_A_TIME)
    row = fleet.row(deployment_id)
    assert (row["status"], row["error_information"]["code"]) == ("Failed", "NO_INSTANCES")
    assert row["completed_at"] is not None


def test_a_minimum_that_can_never_be_met_fails_at_once_touching_no_host(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 1)
    deployment_id = fleet.deploy(HALF_AT_A_TIME)
    row = fleet.row(deployment_id)
    assert (row["status"], row["error_information"]["code"]) == (
        "Failed",
        "HEALTH_CONSTRAINTS_INVALID",
    )
    assert fleet.host_statuses(deployment_id) == {"host-0": "Skipped"}
    assert fleet.poll("host-0") is None
    with fleet.database.read() as connection:
        assert connection.execute(sa.select(host_commands)).all() == []


def test_an_application_stop_failure_fails_the_host_unless_ignored(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 1)
    stop_fails = lambda host, command, before: command == "ApplicationStop"  # noqa: E731
    ignored = fleet.deploy(ONE_AT_A_TIME, ignore_application_stop_failures=True)
    walk = fleet.walk(ignored, stop_fails)
    assert fleet.status(ignored) == "Succeeded"
    assert walk.commands_of("host-0") == list(IN_PLACE_COMMANDS)
    strict = fleet.deploy(ONE_AT_A_TIME, label="v2")
    walk = fleet.walk(strict, stop_fails)
    assert fleet.status(strict) == "Failed"
    assert walk.commands_of("host-0") == ["ApplicationStop"]


def test_a_stop_lets_the_running_command_finish_and_skips_the_rest(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 3)
    deployment_id = fleet.deploy(ONE_AT_A_TIME)
    first_host = next(host for host in fleet.hosts if fleet.poll(host) is not None)
    running = fleet.poll(first_host, poll_started=fleet.tick())  # handed out again: not acked
    assert running is not None and fleet.acknowledge(running["id"]) == "InProgress"
    with fleet.database.write() as connection:
        deployment = lock_deployment(connection, deployment_id)
        assert deployment is not None
        assert request_stop(connection, deployment, None, fleet.tick(), fleet.woken) is False
    fleet.complete(running["id"], failed=False)
    assert fleet.poll(first_host) is None  # no further command
    row = fleet.row(deployment_id)
    assert (row["status"], row["error_information"]["code"]) == ("Stopped", "MANUAL_STOP")
    statuses = fleet.host_statuses(deployment_id)
    assert statuses[first_host] == "Unknown"
    assert sorted(statuses.values()) == ["Skipped", "Skipped", "Unknown"]
    assert fleet.events(deployment_id, first_host)[:2] == [
        ("ApplicationStop", "Succeeded"),
        ("DownloadBundle", "Skipped"),
    ]


def test_a_command_handed_out_before_a_stop_is_refused_at_its_acknowledgement(
    database_url: str,
) -> None:
    fleet = SimulatedFleet(open_database(database_url), 1)
    deployment_id = fleet.deploy(ONE_AT_A_TIME)
    command = fleet.poll("host-0")
    assert command is not None
    with fleet.database.write() as connection:
        deployment = lock_deployment(connection, deployment_id)
        assert deployment is not None
        request_stop(connection, deployment, None, fleet.tick(), fleet.woken)
    assert fleet.acknowledge(command["id"]) == "Failed"
    assert fleet.status(deployment_id) == "Stopped"
    assert fleet.host_statuses(deployment_id) == {"host-0": "Skipped"}
    fleet.complete(command["id"], failed=False)  # an agent's no-op report changes nothing
    assert fleet.events(deployment_id, "host-0")[0] == ("ApplicationStop", "Skipped")


def test_a_failed_deployment_rolls_back_to_the_last_successful_revision(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 2)
    good = fleet.deploy(ALL_AT_ONCE)
    fleet.walk(good)
    rollback = {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
    bad = fleet.deploy(ALL_AT_ONCE, label="v2", auto_rollback=rollback)
    fleet.walk(bad, lambda host, command, before: command == "AfterInstall")
    failed = fleet.row(bad)
    assert failed["status"] == "Failed"
    rollback_id = failed["rollback_info"]["rollbackDeploymentId"]
    again = fleet.row(rollback_id)
    assert again["creator"] == "codeDeployRollback"
    assert again["rollback_info"]["rollbackTriggeringDeploymentId"] == bad
    assert again["location"] == fleet.row(good)["location"]
    assert sorted(fleet.host_statuses(rollback_id)) == fleet.hosts
    fleet.walk(rollback_id)
    assert fleet.status(rollback_id) == "Succeeded"
    with fleet.database.read() as connection:
        group = connection.execute(
            sa.select(deployment_groups).where(deployment_groups.c.id == fleet.group_id)
        ).one()
    assert group.last_successful_deployment_id == rollback_id


def test_no_rollback_without_an_earlier_success(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 1)
    rollback = {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
    bad = fleet.deploy(ONE_AT_A_TIME, auto_rollback=rollback)
    fleet.walk(bad, lambda host, command, before: command == "Install")
    info = fleet.row(bad)["rollback_info"]
    assert "rollbackDeploymentId" not in info
    assert "no successful deployment" in info["rollbackMessage"]


def test_hosts_whose_last_deployment_failed_go_first(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 3)
    first = fleet.deploy(ALL_AT_ONCE)
    fleet.walk(first, lambda host, command, before: host == "host-2" and command == "Install")
    second = fleet.deploy(ONE_AT_A_TIME, label="v2")
    walk = fleet.walk(second)
    assert walk.ran[0] == ("host-2", "ApplicationStop")


def test_a_stop_asked_to_roll_back_rolls_back(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 2)
    fleet.walk(fleet.deploy(ALL_AT_ONCE))
    stopped = fleet.deploy(ALL_AT_ONCE, label="v2")
    with fleet.database.write() as connection:
        deployment = lock_deployment(connection, stopped)
        assert deployment is not None
        assert request_stop(connection, deployment, True, fleet.tick(), fleet.woken) is True
    row = fleet.row(stopped)
    assert row["status"] == "Stopped"
    # Nothing was handed out yet: no host was changed, so there is nothing to roll back.
    assert "no host was changed" in row["rollback_info"]["rollbackMessage"]
    changed = fleet.deploy(ALL_AT_ONCE, label="v3")
    command = fleet.poll("host-0")
    assert command is not None and fleet.acknowledge(command["id"]) == "InProgress"
    with fleet.database.write() as connection:
        deployment = lock_deployment(connection, changed)
        assert deployment is not None
        assert request_stop(connection, deployment, True, fleet.tick(), fleet.woken) is False
    fleet.complete(command["id"], failed=False)
    rollback_id = fleet.row(changed)["rollback_info"]["rollbackDeploymentId"]
    assert fleet.row(rollback_id)["creator"] == "codeDeployRollback"


def test_commands_that_show_no_sign_of_life_time_out(database_url: str) -> None:
    fleet = SimulatedFleet(open_database(database_url), 2)
    deployment_id = fleet.deploy(ALL_AT_ONCE)
    command = fleet.poll("host-0")
    assert command is not None and fleet.acknowledge(command["id"]) == "InProgress"
    now = fleet.tick(100)
    with fleet.database.write() as connection:
        assert stale_deployment_ids(connection, 50, now) == [deployment_id]
        assert expire_commands(connection, deployment_id, 50, now, fleet.woken) == 2
    assert fleet.status(deployment_id) == "Failed"
    messages = {host: fleet.events_with_diagnostics(deployment_id, host)[0] for host in fleet.hosts}
    assert "did not report this command's outcome" in messages["host-0"]
    assert "did not ask for this command" in messages["host-1"]
    fleet.complete(command["id"], failed=False)  # too late: changes nothing
    assert fleet.host_statuses(deployment_id) == {"host-0": "Failed", "host-1": "Failed"}


def test_a_host_in_two_groups_runs_both_deployments_one_command_at_a_time(
    database_url: str,
) -> None:
    fleet = SimulatedFleet(open_database(database_url), 2)
    other_group = fleet.add_group("other-group")
    first = fleet.deploy(ALL_AT_ONCE)
    second = fleet.deploy(ALL_AT_ONCE, group_id=other_group, label="v2")
    ran: Dict[str, List[Tuple[str, str]]] = {host: [] for host in fleet.hosts}
    for _ in range(100):
        if all(fleet.status(each) not in ("Created", "InProgress") for each in (first, second)):
            break
        for host in fleet.hosts:
            command = fleet.poll(host)
            if command is None:
                continue
            assert fleet.acknowledge(command["id"]) == "InProgress"
            # While it runs, the host is given nothing else, from either deployment.
            assert fleet.poll(host, poll_started=fleet.tick()) is None
            ran[host].append((command["deployment_id"], command["command_name"]))
            fleet.complete(command["id"], failed=False)
    assert (fleet.status(first), fleet.status(second)) == ("Succeeded", "Succeeded")
    for host in fleet.hosts:
        for deployment_id in (first, second):
            commands = [name for each, name in ran[host] if each == deployment_id]
            assert commands == list(IN_PLACE_COMMANDS)
            assert fleet.events(deployment_id, host) == [
                (event, "Succeeded") for event in IN_PLACE_COMMANDS
            ]
