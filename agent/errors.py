"""The error family shared by every domain of the agent.

Each domain (configuration, appspec, revision, installer, lifecycle event, ...) raises its
own subclass of :class:`AgentError`. Every error carries a one-line message written for the
operator and the diagnostics code that the command service protocol reports for it, so
that the CLI and the daemon can turn any failure into one clear line and a status without
knowing where it came from.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Optional


class ErrorCode(enum.IntEnum):
    """Diagnostics codes of the command service protocol (``error_code``)."""

    SUCCEEDED = 0
    SCRIPT_MISSING = 1
    SCRIPT_NOT_EXECUTABLE = 2
    SCRIPT_TIMED_OUT = 3
    SCRIPT_FAILED = 4
    UNKNOWN_ERROR = 5
    OUTPUTS_LEFT_OPEN = 6
    FAILED_AFTER_RESTART = 7


# The protocol caps a diagnostics payload; the log tail is what gives way.
DIAGNOSTICS_MAX_CHARACTERS = 8192
LOG_TAIL_CHARACTERS = 2048


@dataclass(frozen=True)
class Diagnostics:
    """What a command reports about its outcome (the ``Diagnostics`` JSON payload)."""

    error_code: ErrorCode
    message: str
    script_name: str = ""
    log: str = ""

    def to_payload(self) -> str:
        """Render the JSON payload, trimmed to the protocol's size limit."""
        record = {
            "error_code": int(self.error_code),
            "script_name": self.script_name,
            "message": self.message,
            "log": self.log[-LOG_TAIL_CHARACTERS:],
        }
        payload = json.dumps(record)
        while len(payload) > DIAGNOSTICS_MAX_CHARACTERS and (record["log"] or record["message"]):
            overflow = len(payload) - DIAGNOSTICS_MAX_CHARACTERS
            if record["log"]:
                record["log"] = str(record["log"])[overflow + 16 :]
            else:
                record["message"] = str(record["message"])[: -(overflow + 16)]
            payload = json.dumps(record)
        return payload

    @classmethod
    def succeeded(cls, log: str = "") -> Diagnostics:
        return cls(ErrorCode.SUCCEEDED, "Succeeded", "", log)


class AgentError(Exception):
    """Base of every error the agent reports to an operator.

    ``message`` is one line that names what is wrong; ``error_code`` is the protocol code
    reported to the command service; ``script_name`` and ``log`` are filled in by
    lifecycle-event errors.
    """

    error_code: ErrorCode = ErrorCode.UNKNOWN_ERROR

    def __init__(
        self,
        message: str,
        *,
        error_code: Optional[ErrorCode] = None,
        script_name: str = "",
        log: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code
        self.script_name = script_name
        self.log = log

    def __str__(self) -> str:
        return self.message

    def diagnostics(self) -> Diagnostics:
        return Diagnostics(self.error_code, self.message, self.script_name, self.log)
