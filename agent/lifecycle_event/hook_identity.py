"""Who a hook script runs as, and the environment it gets.

The AWS agent switches users with ``su <user> -c <path>``, a shell command line built from
appspec strings. We switch in the child itself (uid, primary gid, supplementary groups) and
set what ``su`` would set (HOME, USER, LOGNAME, SHELL), so no string from a bundle ever
reaches a shell. The operator's hardening settings decide which inherited variables stay.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Dict, FrozenSet, Mapping, Optional, Tuple

from agent.errors import ErrorCode
from agent.lifecycle_event.settings import HookRunSettings, LifecycleEventError

# What the engine adds for every hook; kept even when the environment is allow-listed.
HOOK_VARIABLES: FrozenSet[str] = frozenset(
    {
        "LIFECYCLE_EVENT",
        "DEPLOYMENT_ID",
        "APPLICATION_NAME",
        "DEPLOYMENT_GROUP_NAME",
        "DEPLOYMENT_GROUP_ID",
        "BUNDLE_BUCKET",
        "BUNDLE_KEY",
        "BUNDLE_VERSION",
        "BUNDLE_ETAG",
        "BUNDLE_COMMIT",
    }
)

# The dynamic loader reads every ``LD_*`` variable (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, ...).
LOADER_VARIABLE_PREFIX = "LD_"


@dataclass(frozen=True)
class HookUser:
    """The account a ``runas`` script runs as."""

    name: str
    uid: int
    gid: int
    groups: Tuple[int, ...]
    home: str
    shell: str
    # False when the agent is not root and the user is the agent's own: nothing to switch.
    switch: bool


def look_up_hook_user(runas: Optional[str], sudo: bool, location: str) -> Optional[HookUser]:
    """The account of a script's ``runas`` (read from the user database), or None for ours."""
    effective_uid = os.geteuid()
    if runas is None:
        if sudo and effective_uid != 0:
            raise LifecycleEventError(
                f"Script at specified location: {location} asks for sudo, but the agent does"
                " not run as root and does not call sudo; run the agent as root",
                error_code=ErrorCode.SCRIPT_FAILED,
                script_name=location,
            )
        return None
    try:
        entry = pwd.getpwnam(runas)
    except KeyError:
        raise LifecycleEventError(
            f"Script at specified location: {location} cannot run as user {runas}:"
            " there is no such user on this host",
            error_code=ErrorCode.SCRIPT_FAILED,
            script_name=location,
        ) from None
    if effective_uid != 0 and entry.pw_uid != effective_uid:
        raise LifecycleEventError(
            f"Script at specified location: {location} cannot run as user {runas}:"
            " the agent does not run as root",
            error_code=ErrorCode.SCRIPT_FAILED,
            script_name=location,
        )
    return HookUser(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)),
        home=entry.pw_dir,
        shell=entry.pw_shell or "/bin/sh",
        switch=effective_uid == 0,
    )


def compose_hook_environment(
    base: Mapping[str, str], settings: HookRunSettings, user: Optional[HookUser]
) -> Dict[str, str]:
    """The environment of one script: ``base`` after the settings' filters, plus the user's."""
    environment = dict(base)
    if settings.env_allowlist is not None:
        allowed = settings.env_allowlist | HOOK_VARIABLES
        environment = {name: value for name, value in environment.items() if name in allowed}
    if settings.strip_loader_env:
        environment = {
            name: value
            for name, value in environment.items()
            if not name.startswith(LOADER_VARIABLE_PREFIX)
        }
    if user is not None:
        environment.update(HOME=user.home, USER=user.name, LOGNAME=user.name, SHELL=user.shell)
    return environment
