"""Who a hook script runs as.

The AWS agent switches users with ``su <user> -c <path>``, a shell command line built from
appspec strings. We switch in the child itself (uid, primary gid, supplementary groups) and
set what ``su`` would set (HOME, USER, LOGNAME, SHELL: see
:mod:`agent.lifecycle_event.hook_environment`), so no string from a bundle ever reaches a
shell.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Optional, Tuple

from agent.errors import ErrorCode
from agent.lifecycle_event.errors import LifecycleEventError


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
