"""The error families of the self-hosted service.

:class:`ServerError` is what an operator reads when the program cannot do what was asked
(a bad configuration, a data folder it cannot use): one line and a status, as the agent's
errors are. :class:`ApiError` is what a client of the HTTP APIs reads: AWS's JSON 1.1
error shape (``__type`` and ``message``, HTTP 400 unless said otherwise), with the
exception names AWS uses, so that the AWS CLI prints it as it does for AWS.
"""

from __future__ import annotations

from typing import Dict

from agent.errors import AgentError


class ServerError(AgentError):
    """The server cannot start or an admin command cannot run; the message names why."""


class ServerConfigError(ServerError):
    """The configuration file or a command-line option has a bad value."""


class ApiError(AgentError):
    """A request refused with AWS's error shape: ``code`` is the ``__type`` a client sees."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def to_document(self) -> Dict[str, str]:
        return {"__type": self.code, "message": self.message}
