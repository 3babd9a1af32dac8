"""The environment a hook script gets.

The agent's own environment, plus the variables of the hook contract (docs/behaviour.md section 9):
the event, the deployment and its group, and where the revision came from. The operator's
hardening settings decide which inherited variables stay (an allowlist, no loader
variables); a script that runs as another user gets that user's HOME, USER, LOGNAME and
SHELL, as ``su`` would set them.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Mapping, Optional

from agent.deployment_specification.model import DeploymentSpecification
from agent.lifecycle_event.hook_identity import HookUser
from agent.lifecycle_event.settings import HookRunSettings

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

# Inherited variables a hook keeps when restrict_hook_env_to_allowlist is on.
HOOK_ENV_ALLOWLIST: FrozenSet[str] = frozenset(
    {
        "PATH",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TERM",
        "TMPDIR",
    }
)

# The dynamic loader reads every ``LD_*`` variable (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, ...).
LOADER_VARIABLE_PREFIX = "LD_"


def hook_environment(
    event: str, spec: DeploymentSpecification, environ: Mapping[str, str]
) -> Dict[str, str]:
    """The agent's environment plus the variables of the hook contract (docs/behaviour.md section 9)."""
    env = dict(environ)
    env.update(
        LIFECYCLE_EVENT=event,
        DEPLOYMENT_ID=spec.deployment_id,
        APPLICATION_NAME=spec.application_name,
        DEPLOYMENT_GROUP_NAME=spec.deployment_group_name,
        DEPLOYMENT_GROUP_ID=spec.deployment_group_id,
    )
    env.update(spec.revision.hook_environment())
    return env


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
