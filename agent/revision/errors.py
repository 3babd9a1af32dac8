"""The errors of getting a revision onto this host.

A bundle that cannot be put on disk (refused, corrupt, too big, a full disk) and a
revision source this agent cannot use are both the revision's fault, reported with the
protocol's default code; each message names the member, the file or the setting.
"""

from __future__ import annotations

from agent.errors import AgentError


class BundleError(AgentError):
    """The revision cannot be put on disk: a refused member, a corrupt or truncated
    archive, a bundle of the wrong type, an unreadable source or a full disk."""


class RevisionSourceError(AgentError):
    """The revision's source cannot be used by this agent."""
