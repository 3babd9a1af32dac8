"""What the poller needs of a command service client: a Protocol, the poller's seam.

The poll loop and the per-command flow call the service only through these operations;
the daemon passes the botocore client of :mod:`agent.aws_clients.command_service` (mypy
checks that it fits), and tests of the poller's logic pass an in-process fake. Every
operation raises :class:`~agent.aws_clients.command_service.CommandServiceError` when the
call fails, with the retry hints the poller's back-off reads.
"""

from __future__ import annotations

from typing import Optional, Protocol

from agent.aws_clients.command_service import (
    CommandStatus,
    DeploymentSpecificationEnvelope,
    HostCommand,
)
from agent.errors import Diagnostics


class CommandServiceClient(Protocol):
    """The command service operations the poller calls (docs/behaviour.md section 5)."""

    @property
    def endpoint_url(self) -> str:
        """Where the service is, for the status line (may carry no secret)."""
        ...

    def poll_host_command(self, host_identifier: str) -> Optional[HostCommand]:
        """The next command of this host, or None when there is none."""
        ...

    def get_deployment_specification(
        self, deployment_execution_id: str, host_identifier: str
    ) -> DeploymentSpecificationEnvelope:
        """The command's deployment specification, still in its envelope."""
        ...

    def put_host_command_acknowledgement(
        self, host_command_identifier: str, is_noop: bool
    ) -> Optional[CommandStatus]:
        """Acknowledge a command; the service's status of it, if it gave one."""
        ...

    def put_host_command_complete(
        self, host_command_identifier: str, status: CommandStatus, diagnostics: Diagnostics
    ) -> None:
        """Report a command's outcome."""
        ...
