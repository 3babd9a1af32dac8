"""The walk's rules as CodeDeploy documents them: the minimum of healthy hosts with its
rounding, how many hosts go at once, when a deployment gives up, and when it succeeds."""

from __future__ import annotations

from typing import Tuple

import pytest

from server.deployment_rules import (
    FLEET_PERCENT,
    HOST_COUNT,
    MOST_CONCURRENCY,
    FleetCounts,
    MinimumHealthy,
    can_ever_start,
    cannot_be_met,
    final_status,
    hosts_to_start,
)

ONE_AT_A_TIME = MinimumHealthy(MOST_CONCURRENCY, 1)
HALF_AT_A_TIME = MinimumHealthy(FLEET_PERCENT, 50)
ALL_AT_ONCE = MinimumHealthy(HOST_COUNT, 0)


@pytest.mark.parametrize(
    ("fleet", "percent", "minimum"),
    [
        (9, 40, 4),  # 3.6 rounds up to 4 (AWS's own example: five at a time)
        (10, 95, 10),  # 9.5 rounds up to the whole fleet
        (3, 50, 2),
        (4, 50, 2),
        (9, 50, 5),
        (1, 50, 1),
        (7, 33, 3),  # 2.31 rounds up
        (10, 0, 0),
        (10, 99, 10),
        (100, 99, 99),
        (0, 50, 0),
    ],
)
def test_a_fleet_percentage_rounds_up_to_whole_hosts(
    fleet: int, percent: int, minimum: int
) -> None:
    assert MinimumHealthy(FLEET_PERCENT, percent).hosts(fleet) == minimum


@pytest.mark.parametrize(
    ("rule", "fleet", "at_once"),
    [
        (HALF_AT_A_TIME, 9, 4),  # half, rounded down
        (HALF_AT_A_TIME, 4, 2),
        (HALF_AT_A_TIME, 3, 1),
        (HALF_AT_A_TIME, 2, 1),
        (MinimumHealthy(FLEET_PERCENT, 40), 9, 5),
        (MinimumHealthy(HOST_COUNT, 6), 9, 3),
        (MinimumHealthy(HOST_COUNT, 9), 10, 1),
        (MinimumHealthy(HOST_COUNT, 8), 10, 2),
        (ALL_AT_ONCE, 10, 10),
        (ONE_AT_A_TIME, 10, 1),
        (ONE_AT_A_TIME, 1, 1),
    ],
)
def test_as_many_hosts_go_at_once_as_the_minimum_allows(
    rule: MinimumHealthy, fleet: int, at_once: int
) -> None:
    assert can_ever_start(rule, fleet)
    assert hosts_to_start(rule, FleetCounts(pending=fleet)) == at_once


@pytest.mark.parametrize(
    ("rule", "fleet"),
    [
        (HALF_AT_A_TIME, 1),
        (MinimumHealthy(FLEET_PERCENT, 95), 10),
        (MinimumHealthy(HOST_COUNT, 3), 3),
        (MinimumHealthy(HOST_COUNT, 5), 3),
    ],
)
def test_a_minimum_that_leaves_no_host_to_take_out_can_never_start(
    rule: MinimumHealthy, fleet: int
) -> None:
    assert not can_ever_start(rule, fleet)


def test_a_failure_lowers_how_many_hosts_go_at_once() -> None:
    rule = MinimumHealthy(HOST_COUNT, 8)
    # Ten hosts, two at a time; one of the first two failed, the other still runs.
    assert hosts_to_start(rule, FleetCounts(pending=8, in_progress=1, failed=1)) == 0
    assert hosts_to_start(rule, FleetCounts(pending=8, succeeded=1, failed=1)) == 1
    assert not cannot_be_met(rule, FleetCounts(pending=8, succeeded=1, failed=1))
    assert cannot_be_met(rule, FleetCounts(pending=7, succeeded=1, failed=2))


Counts = Tuple[int, int, int]  # succeeded, failed, skipped


@pytest.mark.parametrize(
    ("rule", "done", "outcome"),
    [
        (ONE_AT_A_TIME, (2, 1, 0), "Succeeded"),  # only the last of three failed
        (ONE_AT_A_TIME, (0, 1, 0), "Failed"),  # a single host must succeed
        (ONE_AT_A_TIME, (1, 1, 1), "Failed"),
        (ALL_AT_ONCE, (1, 8, 0), "Succeeded"),  # one healthy host is enough
        (ALL_AT_ONCE, (0, 9, 0), "Failed"),
        (HALF_AT_A_TIME, (5, 4, 0), "Succeeded"),
        (HALF_AT_A_TIME, (4, 5, 0), "Failed"),
        (MinimumHealthy(HOST_COUNT, 8), (8, 2, 0), "Succeeded"),  # the last was the 2nd to fail
        (MinimumHealthy(HOST_COUNT, 8), (7, 2, 1), "Failed"),
    ],
)
def test_the_outcome_once_every_host_is_done(
    rule: MinimumHealthy, done: Counts, outcome: str
) -> None:
    succeeded, failed, skipped = done
    counts = FleetCounts(succeeded=succeeded, failed=failed, skipped=skipped)
    assert final_status(rule, counts) == outcome


def test_no_outcome_while_a_host_is_pending_or_in_progress() -> None:
    assert final_status(ALL_AT_ONCE, FleetCounts(in_progress=1, succeeded=3)) is None
    assert final_status(ALL_AT_ONCE, FleetCounts(pending=1, succeeded=3)) is None


def test_one_at_a_time_gives_up_at_the_first_failure_before_the_last_host() -> None:
    assert cannot_be_met(ONE_AT_A_TIME, FleetCounts(pending=1, succeeded=1, failed=1))
    assert not cannot_be_met(ONE_AT_A_TIME, FleetCounts(succeeded=2, failed=1))
