"""Which API a request is for, which service its signature must be scoped to, and which
kind of key may call it.

The target prefix of ``X-Amz-Target`` names the API. The CodeDeploy API
(``CodeDeploy_20141006``) is signed for the service ``codedeploy`` and is for operator
keys; the command service is signed for ``codedeploy-commands`` (or
``codedeploy-commands-secure`` with the agent's ``enable_auth_policy``; docs/behaviour.md
section 5), as the agent's client signs it, and is for host keys only. A key of the other
kind is refused with AWS's ``AccessDeniedException``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Dict, Optional

from server.access_keys.store import KeyKind
from server.errors import ApiError


class Api(enum.Enum):
    CODEDEPLOY = "codedeploy"
    COMMAND_SERVICE = "command-service"


@dataclass(frozen=True)
class Target:
    api: Api
    prefix: str
    signing_service: str
    caller_kind: KeyKind


TARGETS: Dict[str, Target] = {
    target.prefix: target
    for target in (
        Target(Api.CODEDEPLOY, "CodeDeploy_20141006", "codedeploy", KeyKind.OPERATOR),
        Target(
            Api.COMMAND_SERVICE,
            "CodeDeployCommandService_v20141006",
            "codedeploy-commands",
            KeyKind.HOST,
        ),
        Target(
            Api.COMMAND_SERVICE,
            "CodeDeployCommandService",
            "codedeploy-commands-secure",
            KeyKind.HOST,
        ),
    )
}
SIGNING_SERVICES = frozenset(target.signing_service for target in TARGETS.values())


def split_target(header: Optional[str]) -> tuple[Optional[Target], str]:
    """The API and the operation an ``X-Amz-Target`` value names (None: no API of ours)."""
    prefix, _, operation = (header or "").rpartition(".")
    return TARGETS.get(prefix), operation


def authorise(target: Target, operation: str, kind: KeyKind, caller_arn: str) -> None:
    """Refuse a key of the wrong kind for this API, as IAM would word it."""
    if kind is not target.caller_kind:
        action = "codedeploy-commands" if target.api is Api.COMMAND_SERVICE else "codedeploy"
        raise ApiError(
            "AccessDeniedException",
            f"User: {caller_arn} is not authorized to perform: {action}:{operation[:64]}"
            f" (a {kind.value} key may not call this API)",
        )
