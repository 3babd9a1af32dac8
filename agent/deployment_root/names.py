"""Which names from outside may become file and folder names under the deployment root.

A deployment group id becomes ``<root>/<group-id>`` and the prefix of four files in
``deployment-instructions/``; a deployment id becomes ``<root>/<group-id>/<deployment-id>``
and an ``ongoing-deployment`` record. Both come from the command service or from
``codedeploy-local``'s flags, so both are checked before anything is created: 1 to 100
characters of ``A-Z a-z 0-9 . _ -``, not starting with a dot (that also rules out ``.``,
``..`` and the hidden ``.partial`` files), and a group id is none of the root's own
folders. Real ids are far inside these bounds: CodeDeploy's group ids are UUIDs, its
deployment ids ``d-`` and 9 characters, and ``codedeploy-local`` adds ``-local``.

Names that only reach the hooks' environment and the log lines (group and application
names) must be printable and at most 1024 characters, so that no control character or
newline reaches a log line. The checks return the reason as text, so that each caller names the flag or field.
"""

from __future__ import annotations

import re
from typing import Collection, Optional

from agent.deployment_root.layout import DEPLOYMENT_LOGS_DIR, INSTRUCTIONS_DIR

NAME_MAX_LENGTH = 100
LABEL_MAX_LENGTH = 1024
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
# The root's bookkeeping folders whose names are fixed.
ROOT_BOOKKEEPING_NAMES = frozenset({INSTRUCTIONS_DIR, DEPLOYMENT_LOGS_DIR})
# Names the root keeps for itself; the ongoing-deployment folder is configurable and is
# added by the callers that know it.
RESERVED_ROOT_NAMES = ROOT_BOOKKEEPING_NAMES | {"ongoing-deployment"}
SAFE_NAME_RULE = f"1 to {NAME_MAX_LENGTH} characters of A-Z a-z 0-9 . _ -, not starting with a dot"


def unsafe_name_reason(name: str) -> Optional[str]:
    """Why ``name`` cannot be a file name under the root, or None when it can."""
    if len(name) > NAME_MAX_LENGTH:
        return f"is {len(name)} characters long; it must be {SAFE_NAME_RULE}"
    if _SAFE_NAME.fullmatch(name) is None:
        return f"must be {SAFE_NAME_RULE}"
    return None


def unsafe_group_id_reason(group_id: str, reserved: Collection[str] = ()) -> Optional[str]:
    """Why ``group_id`` cannot name a group's folder, or None when it can.

    ``reserved`` adds names the root uses besides its fixed ones (the configured
    ``ongoing_deployment_tracking`` folder).
    """
    return unsafe_root_entry_reason(group_id, RESERVED_ROOT_NAMES.union(reserved))


def unsafe_root_entry_reason(name: str, reserved: Collection[str]) -> Optional[str]:
    """Why ``name`` cannot be a safe file name beside the ``reserved`` ones, or None."""
    reason = unsafe_name_reason(name)
    if reason is None and name in reserved:
        reason = "is the name of one of the deployment root's own folders"
    return reason


def unsafe_label_reason(label: str) -> Optional[str]:
    """Why ``label`` (a group or application name: the hooks' environment and the log
    lines show it) is refused, or None: it must be printable and not absurdly long."""
    if not label or len(label) > LABEL_MAX_LENGTH or not label.isprintable():
        return f"must be 1 to {LABEL_MAX_LENGTH} printable characters"
    return None


def shown_name(name: str) -> str:
    """A name from outside as a message may show it: escaped, and cut when long."""
    shown = name if len(name) <= 60 else name[:60] + "..."
    return repr(shown)
