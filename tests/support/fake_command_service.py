"""An in-process command service: a fake of the poller's ``CommandServiceClient``.

For tests of the poller's own logic (no-ops, refusals, retries of a report, the records
of a crash), which need no wire: it hands out queued commands per host, serves the
specifications the test provides, answers acknowledgements with ``ack_status``, records
every call with the body the real client would send, and can fail the next calls of an
operation as the real client fails them (the :class:`CommandServiceError` its translation
of that fault gives). Its set-up and recording methods are the stub's, so a test reads
the same either way (``queue_deployment``, ``completion_of``, ``acknowledgements_of`` of
``command_service.py``). The wire (JSON 1.1, SigV4, botocore's retries) is the stub's
business: keep those tests on it.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional

from agent.aws_clients.command_service import (
    DEPLOYMENT_SYSTEM,
    CommandServiceError,
    CommandStatus,
    DeploymentSpecificationEnvelope,
    HostCommand,
)
from agent.errors import Diagnostics
from tests.support.command_service import OPERATIONS, Fault


@dataclass(frozen=True)
class RecordedCall:
    """One call the poller made: the operation, the body the real client would send, and
    the fault it met (None: it was answered)."""

    operation: str
    body: Dict[str, Any]
    fault: Optional[Fault] = None


def _error_for(operation: str, fault: Fault) -> CommandServiceError:
    """What the real client raises when the stub answers ``fault``."""
    prefix = f"command service {operation}"
    if fault is Fault.THROTTLING:
        return CommandServiceError(
            f"{prefix} failed: ThrottlingException (HTTP 400): Rate exceeded",
            operation=operation,
            code="ThrottlingException",
            throttled=True,
        )
    if fault is Fault.SERVER_ERROR:
        return CommandServiceError(
            f"{prefix} failed: ServerException (HTTP 500): injected server error",
            operation=operation,
            code="ServerException",
            retryable=True,
        )
    return CommandServiceError(
        f"{prefix} failed: the connection broke", operation=operation, retryable=True
    )


@dataclass(eq=False)
class FakeCommandService:
    """The command service and its client in one object, in this process."""

    ack_status: Optional[str] = "InProgress"
    endpoint_url: str = "fake://command-service"
    _commands: Dict[str, Deque[HostCommand]] = field(default_factory=dict)
    _specifications: Dict[str, DeploymentSpecificationEnvelope] = field(default_factory=dict)
    _faults: Dict[str, List[Fault]] = field(default_factory=dict)
    _calls: List[RecordedCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what the test sets up (as on the stub) ---------------------------------------

    def queue_command(
        self,
        host_identifier: str,
        command_name: Optional[str],
        deployment_execution_id: str = "d-EXAMPLE111",
        *,
        nonce: Optional[int] = 1,
    ) -> Dict[str, Any]:
        """Queue a command for ``host_identifier``; returns it as the service's JSON."""
        command = HostCommand(
            host_command_identifier=f"hc-{uuid.uuid4()}",
            host_identifier=host_identifier,
            deployment_execution_id=deployment_execution_id,
            command_name=command_name or "",
            nonce=nonce,
        )
        with self._lock:
            self._commands.setdefault(host_identifier, deque()).append(command)
        return {
            "HostCommandIdentifier": command.host_command_identifier,
            "HostIdentifier": host_identifier,
            "DeploymentExecutionId": deployment_execution_id,
            "CommandName": command.command_name,
            "Nonce": nonce,
        }

    def set_specification(
        self, deployment_execution_id: str, payload: str, envelope_format: str = "TEXT/JSON"
    ) -> None:
        with self._lock:
            self._specifications[deployment_execution_id] = DeploymentSpecificationEnvelope(
                DEPLOYMENT_SYSTEM, envelope_format, payload
            )

    def inject_fault(self, operation: str, fault: Fault, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` fail as the real client does on ``fault``."""
        assert operation in OPERATIONS, operation
        with self._lock:
            self._faults.setdefault(operation, []).extend([fault] * times)

    # -- what the test checks (as on the stub) ----------------------------------------

    @property
    def requests(self) -> List[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def requests_for(self, operation: str) -> List[RecordedCall]:
        return [call for call in self.requests if call.operation == operation]

    def completions(self) -> List[Dict[str, Any]]:
        """Bodies of the PutHostCommandComplete calls that were answered."""
        return [
            call.body for call in self.requests_for("PutHostCommandComplete") if call.fault is None
        ]

    # -- the client's side: agent.command_poller.service_client.CommandServiceClient ---

    def _record(self, operation: str, body: Dict[str, Any]) -> None:
        """Record the call; raise the injected fault, if one is due."""
        with self._lock:
            pending = self._faults.get(operation)
            fault = pending.pop(0) if pending else None
            self._calls.append(RecordedCall(operation, body, fault))
        if fault is not None:
            raise _error_for(operation, fault)

    def poll_host_command(self, host_identifier: str) -> Optional[HostCommand]:
        self._record("PollHostCommand", {"HostIdentifier": host_identifier})
        with self._lock:
            queue = self._commands.get(host_identifier)
            command = queue.popleft() if queue else None
        if command is not None and not command.command_name:
            # The real client refuses it so, before the poller sees it.
            raise CommandServiceError(
                "command service returned a command without CommandName",
                operation="PollHostCommand",
            )
        return command

    def get_deployment_specification(
        self, deployment_execution_id: str, host_identifier: str
    ) -> DeploymentSpecificationEnvelope:
        operation = "GetDeploymentSpecification"
        body = {"DeploymentExecutionId": deployment_execution_id, "HostIdentifier": host_identifier}
        self._record(operation, body)
        with self._lock:
            found = self._specifications.get(deployment_execution_id)
        if found is None:
            raise CommandServiceError(
                f"command service {operation} failed: ClientException (HTTP 400):"
                " unknown deployment execution",
                operation=operation,
                code="ClientException",
            )
        return found

    def put_host_command_acknowledgement(
        self, host_command_identifier: str, is_noop: bool
    ) -> Optional[CommandStatus]:
        self._record(
            "PutHostCommandAcknowledgement",
            {
                "HostCommandIdentifier": host_command_identifier,
                "Diagnostics": {
                    "Format": "JSON",
                    "Payload": json.dumps({"IsCommandNoop": is_noop}),
                },
            },
        )
        return CommandStatus(self.ack_status) if self.ack_status else None

    def put_host_command_complete(
        self, host_command_identifier: str, status: CommandStatus, diagnostics: Diagnostics
    ) -> None:
        if status not in (CommandStatus.SUCCEEDED, CommandStatus.FAILED):
            raise ValueError(f"a command completes as Succeeded or Failed, not {status.value}")
        self._record(
            "PutHostCommandComplete",
            {
                "HostCommandIdentifier": host_command_identifier,
                "CommandStatus": status.value,
                "Diagnostics": {"Format": "JSON", "Payload": diagnostics.to_payload()},
            },
        )
