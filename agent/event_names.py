"""The names of an EC2/on-premises deployment's commands and lifecycle events.

A deployment is a sequence of commands; each command is either one of the two reserved
steps the agent performs itself (``DownloadBundle``, ``Install``) or a lifecycle event
whose scripts come from the appspec. The appspec parser, the deployment specification's
parser and the hook runner all name events, so the names sit below all three; which
revision supplies an event's scripts is hook policy (:mod:`agent.lifecycle_event.script_source`).
"""

from __future__ import annotations

import re
from typing import FrozenSet, Tuple

DOWNLOAD_BUNDLE = "DownloadBundle"
INSTALL = "Install"

# The events the agent carries out itself; an appspec cannot attach scripts to them.
RESERVED_EVENTS: FrozenSet[str] = frozenset(
    {DOWNLOAD_BUNDLE, INSTALL, "BlockTraffic", "AllowTraffic"}
)

# Events with scripts, in the order of an in-place deployment.
SCRIPT_EVENTS: Tuple[str, ...] = (
    "BeforeBlockTraffic",
    "AfterBlockTraffic",
    "ApplicationStop",
    "BeforeInstall",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
)

# The order ``codedeploy-local`` runs when no ``--events`` are given.
DEFAULT_LOCAL_EVENTS: Tuple[str, ...] = (
    "BeforeBlockTraffic",
    "AfterBlockTraffic",
    "ApplicationStop",
    DOWNLOAD_BUNDLE,
    "BeforeInstall",
    INSTALL,
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
)

STANDARD_EVENTS: FrozenSet[str] = frozenset(SCRIPT_EVENTS) | {DOWNLOAD_BUNDLE, INSTALL}

# Event names from outside (``--events``, the service's command names and event lists)
# reach log lines, the hooks' environment and the script log: bounded to a safe alphabet.
EVENT_NAME_MAX_LENGTH = 100
EVENT_NAME_RULE = f"1 to {EVENT_NAME_MAX_LENGTH} characters of A-Z a-z 0-9 _ -"
EVENTS_MAX = 100
_EVENT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def is_event_name(name: str) -> bool:
    return len(name) <= EVENT_NAME_MAX_LENGTH and _EVENT_NAME.fullmatch(name) is not None


def is_standard(event: str) -> bool:
    return event in STANDARD_EVENTS
