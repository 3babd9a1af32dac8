"""The error of the lifecycle events: a hook script that did not succeed.

Every module of the hook machinery (the script log, the run-as lookup, the runner) raises
this one; :mod:`agent.lifecycle_event.runner` re-exports it.
"""

from __future__ import annotations

from agent.errors import AgentError, ErrorCode


class LifecycleEventError(AgentError):
    """A script of a lifecycle event is missing, failed, timed out or left its output open.

    ``error_code`` is the protocol code, ``script_name`` the script's location as written in
    the appspec, ``message`` one line for the operator and ``log`` the tail of the script log.
    """

    error_code = ErrorCode.SCRIPT_FAILED
