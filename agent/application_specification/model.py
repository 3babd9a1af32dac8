"""Typed, immutable model of an ``appspec.yml`` for EC2/on-premises deployments.

The parser (:mod:`agent.application_specification.parser`) validates the YAML once and
produces these objects; the installer and the lifecycle-event runner only ever see them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from agent.errors import AgentError, ErrorCode

DEFAULT_APPSPEC_FILENAME = "appspec.yml"
FALLBACK_APPSPEC_FILENAME = "appspec.yaml"
DEFAULT_SCRIPT_TIMEOUT_SECONDS = 3600.0
MAX_SCRIPT_TIMEOUT_SECONDS = 3600.0


def appspec_file_names(filename: str) -> Tuple[str, ...]:
    """The names a revision's appspec is looked for under, in order: the default name
    falls back to ``appspec.yaml``, a name the deployment gives is the only one."""
    if filename == DEFAULT_APPSPEC_FILENAME:
        return (DEFAULT_APPSPEC_FILENAME, FALLBACK_APPSPEC_FILENAME)
    return (filename,)


class AppSpecError(AgentError):
    """The appspec is missing or invalid; the message names the field and the value."""

    error_code = ErrorCode.UNKNOWN_ERROR


class FileExistsBehavior(str, enum.Enum):
    """What Install does with a destination that exists and is not ours."""

    DISALLOW = "DISALLOW"
    OVERWRITE = "OVERWRITE"
    RETAIN = "RETAIN"


class ObjectType(str, enum.Enum):
    FILE = "file"
    DIRECTORY = "directory"


@dataclass(frozen=True)
class FileMapping:
    """One ``files`` entry: ``source`` relative to the revision root, absolute ``destination``."""

    source: str
    destination: str


@dataclass(frozen=True)
class SelinuxRange:
    """An MLS/MCS range ``low[-high]``, each level ``s<N>[:c<N>[.c<N>],...]``."""

    low: str
    high: Optional[str] = None

    def render(self) -> str:
        return self.low if self.high is None else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class SelinuxContext:
    """``context`` of a permission: applied with ``semanage fcontext`` and ``restorecon``."""

    type: str
    name: Optional[str] = None  # the SELinux user, e.g. ``system_u``
    range: Optional[SelinuxRange] = None


@dataclass(frozen=True)
class Permission:
    """One ``permissions`` entry (Linux)."""

    object: str
    pattern: str = "**"
    excepts: Tuple[str, ...] = ()
    types: Tuple[ObjectType, ...] = (ObjectType.FILE, ObjectType.DIRECTORY)
    owner: Optional[str] = None
    group: Optional[str] = None
    # The mode as written in the appspec's text, read as octal: ``mode: 0644`` is 0o644.
    mode: Optional[int] = None
    # setfacl entries, normalised (e.g. ``user:alice:rw-``, ``d:group:web:r-x``).
    acls: Tuple[str, ...] = ()
    context: Optional[SelinuxContext] = None

    def mode_text(self) -> Optional[str]:
        """The mode as the install log records it (``"640"``, ``"2755"``)."""
        return None if self.mode is None else format(self.mode, "o")


@dataclass(frozen=True)
class HookScript:
    """One script of a lifecycle event."""

    location: str  # relative to the revision root
    timeout: float = DEFAULT_SCRIPT_TIMEOUT_SECONDS
    runas: Optional[str] = None
    sudo: bool = False


@dataclass(frozen=True)
class ApplicationSpecification:
    version: str = "0.0"
    os: str = "linux"
    files: Tuple[FileMapping, ...] = ()
    permissions: Tuple[Permission, ...] = ()
    # Event name -> its scripts, in appspec order.
    hooks: Mapping[str, Tuple[HookScript, ...]] = field(default_factory=dict)
    # Overrides the deployment's setting when present.
    file_exists_behavior: Optional[FileExistsBehavior] = None

    def scripts_for(self, event: str) -> Tuple[HookScript, ...]:
        return tuple(self.hooks.get(event, ()))
