"""``codedeploy-agent prepare``: check the configuration and make the agent's folders.

The installer runs it after putting a release in place, before it starts the service, so
that a configuration the daemon would refuse is one line at install time rather than a
service that fails to start. It checks what ``run`` checks before it polls (the
configuration, the signer CA file) and the on-premises file when there is one, then
makes the log folder, the pid folder and the deployment root, with the modes
``restrict_agent_dir_permissions`` and ``restrict_log_dir_permissions`` ask for, exactly
as ``run`` applies them at start-up. Every check comes before the first folder is made.
"""

from __future__ import annotations

from pathlib import Path

from agent.configuration.folder_modes import FolderModeError, restrict_folders_on_disk
from agent.configuration.model import AgentConfig
from agent.configuration.on_premises import read_on_premises_config
from agent.deployment_specification.envelope import REGION_PLACEHOLDER, SignatureSettings
from agent.deployment_specification.signature import (
    check_signer_trust_on_disk,
    describe_signer_ca_file_on_disk,
)


def prepare_agent_on_disk(config: AgentConfig) -> str:
    """Check the configuration's files, make the agent's folders, and say what was checked
    in one line. Raises an :class:`~agent.errors.AgentError` naming the first problem."""
    check_signer_trust_on_disk(config.deployment_signer_ca_file)
    on_premises = config.on_premises_config_file
    if on_premises.exists():
        read_on_premises_config(on_premises)
    restrict_folders_on_disk(config, daemon=True)
    for folder in (config.log_dir, config.pid_dir, config.root_dir):
        _make_folder_on_disk(folder)
    source = (
        f"configuration {config.config_file}" if config.config_file else "default configuration"
    )
    identity = (
        f"on-premises file {on_premises}"
        if on_premises.exists()
        else "no on-premises file (EC2 metadata gives the identity)"
    )
    policy = SignatureSettings.from_config(config, REGION_PLACEHOLDER).policy()
    ca_file = describe_signer_ca_file_on_disk(config.deployment_signer_ca_file)
    return (
        f"{source} is valid; {identity}; log folder {config.log_dir}, pid folder"
        f" {config.pid_dir} and deployment root {config.root_dir} are in place;"
        f" deployment specifications: {policy}; CA file: {ca_file}"
    )


def _make_folder_on_disk(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FolderModeError(f"cannot create {folder} ({error.strerror or error})") from None
    if not folder.is_dir():
        raise FolderModeError(f"cannot create {folder} (something else is there)")
