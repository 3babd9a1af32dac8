"""The error of the configuration files: one line naming the file, the key and what is wrong.

It lives below the key declarations and their converters, which raise it;
:mod:`agent.configuration.model` re-exports it.
"""

from __future__ import annotations

from agent.errors import AgentError


class ConfigError(AgentError):
    """The configuration file is unreadable or a key has an invalid value."""
