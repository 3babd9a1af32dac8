"""The rules of an in-place deployment's walk over its hosts, as CodeDeploy states them
(docs/server.md, "How a deployment walks its hosts"): pure functions of the deployment
configuration's minimum of healthy hosts and of how many hosts are where.

The minimum is a number of hosts, fixed when the deployment starts: ``HOST_COUNT`` as
given, ``FLEET_PERCENT`` of the deployment's hosts rounded up, and OneAtATime's
``MOST_CONCURRENCY`` as every host but one. A host being deployed to, or whose deployment
failed, is not healthy; a host not started yet or done is. The walk takes as many hosts at
once as it can without the healthy ones falling below the minimum, and gives up, skipping
the hosts not started, as soon as too many have failed for the remaining ones ever to be
taken out of service. It succeeds when at least the minimum (and never fewer than one)
succeeded: so the failure of the very last host does not fail a OneAtATime deployment,
and one healthy host is enough for AllAtOnce. A minimum that leaves no host to take out
of service fails the deployment before any host is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

HOST_COUNT = "HOST_COUNT"
FLEET_PERCENT = "FLEET_PERCENT"
MOST_CONCURRENCY = "MOST_CONCURRENCY"

SUCCEEDED = "Succeeded"
FAILED = "Failed"


@dataclass(frozen=True)
class MinimumHealthy:
    """A configuration's minimum of healthy hosts, as GetDeploymentConfig shows it."""

    type: str
    value: int

    def hosts(self, fleet: int) -> int:
        """The minimum as a number of hosts for a deployment to ``fleet`` hosts."""
        if self.type == MOST_CONCURRENCY:
            return max(fleet - 1, 0)
        if self.type == FLEET_PERCENT:
            # Rounded up, in whole numbers: 40 % of 9 hosts is 4, never 3.
            return (fleet * self.value + 99) // 100
        return self.value


@dataclass(frozen=True)
class FleetCounts:
    """Where a deployment's hosts are: not started, in progress, and done each way."""

    pending: int = 0
    in_progress: int = 0
    succeeded: int = 0
    failed: int = 0  # failed, or cut short with an unknown outcome
    skipped: int = 0

    @property
    def fleet(self) -> int:
        return self.pending + self.in_progress + self.succeeded + self.failed + self.skipped


def can_ever_start(minimum: MinimumHealthy, fleet: int) -> bool:
    """Whether a deployment to ``fleet`` hosts may take even one host out of service
    (when not, it fails at once with HEALTH_CONSTRAINTS_INVALID)."""
    return fleet - minimum.hosts(fleet) >= 1


def hosts_to_start(minimum: MinimumHealthy, counts: FleetCounts) -> int:
    """How many more hosts may be started now without the healthy ones falling below the
    minimum."""
    room = counts.fleet - minimum.hosts(counts.fleet) - counts.failed - counts.in_progress
    return max(0, min(room, counts.pending))


def cannot_be_met(minimum: MinimumHealthy, counts: FleetCounts) -> bool:
    """Whether so many hosts failed that the hosts not started can never be taken out of
    service: the deployment stops starting hosts and will fail."""
    return counts.pending > 0 and counts.failed >= counts.fleet - minimum.hosts(counts.fleet)


def final_status(minimum: MinimumHealthy, counts: FleetCounts) -> Optional[str]:
    """Succeeded or Failed once no host is pending or in progress; None before."""
    if counts.pending or counts.in_progress:
        return None
    enough = max(minimum.hosts(counts.fleet), 1)
    return SUCCEEDED if counts.succeeded >= enough else FAILED
