"""What the commands of a deployment need from the agent configuration, resolved once.

Each program builds one :class:`EngineSettings` at start-up, from its configuration and
the environment it was started with, and passes it to every command; nothing below reads
the configuration or the environment again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from agent.configuration.model import AgentConfig
from agent.deployment_root.layout import DeploymentRoot
from agent.deployment_root.trash import DeploymentTrash
from agent.installer.agent_folders import AgentFolders
from agent.installer.install_process import InstallHelper
from agent.lifecycle_event.hook_environment import HOOK_ENV_ALLOWLIST
from agent.lifecycle_event.settings import HookRunSettings, OutputsLeftOpenPolicy
from agent.logging.shared_log_file import DEPLOYMENTS_LOG_ROTATION, LogRotation
from agent.revision.bundle import UnpackPolicy
from agent.revision.fetchers.revision_fetcher import RevisionFetcher
from agent.revision.fetchers.settings import FetchSettings


@dataclass(frozen=True)
class EngineSettings:
    """What the engine needs from the agent configuration, resolved once."""

    root: DeploymentRoot
    max_revisions: int = 5
    unpack_policy: UnpackPolicy = field(default_factory=UnpackPolicy)
    hook_settings: HookRunSettings = field(default_factory=HookRunSettings)
    enable_deployments_log: bool = True
    deployments_log_rotation: LogRotation = DEPLOYMENTS_LOG_ROTATION
    fetch: FetchSettings = field(default_factory=FetchSettings)
    reject_symlink_permission_targets: bool = False
    # The agent's other folders, which no files entry may install into (with root).
    log_dir: Optional[Path] = None
    pid_dir: Optional[Path] = None
    # The daemon's: Install runs in a helper process, so that a program with threads
    # still installs large trees with two processes. None: Install runs in this process.
    install_helper: Optional[InstallHelper] = None
    # The environment hooks inherit (docs/behaviour.md section 9): the program's own, as it
    # was when the program started. Kept out of the repr: it may hold secrets.
    inherited_environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Where DownloadBundle gets revisions; None: each from its own source, with ``fetch``
    # (tests of DownloadBundle's own logic put an in-process fetcher here).
    revision_fetcher: Optional[RevisionFetcher] = None
    # Where retention puts old deployment folders to be removed beside the deployment;
    # None: removed at once, in the deployment's way.
    trash: Optional[DeploymentTrash] = None

    @property
    def agent_folders(self) -> AgentFolders:
        return AgentFolders.of(self.root.path, self.log_dir, self.pid_dir)

    @classmethod
    def from_config(
        cls,
        config: AgentConfig,
        fetch: FetchSettings,
        environ: Mapping[str, str],
        install_helper: Optional[InstallHelper] = None,
        trash: Optional[DeploymentTrash] = None,
    ) -> EngineSettings:
        """The engine's settings; ``fetch`` carries what the program found outside the
        configuration (the region, the host's credentials) and ``environ`` is the program's
        environment, which the hooks inherit: nothing here reads the environment."""
        return cls(
            root=DeploymentRoot(config.root_dir, config.ongoing_deployment_tracking),
            max_revisions=config.max_revisions,
            unpack_policy=UnpackPolicy(
                reject_symlinks=config.reject_symlinks_in_bundle,
                apply_ownership=not config.ignore_ownership_in_bundle,
                reject_unsafe_permissions=config.reject_unsafe_permissions_in_bundle,
                max_extraction_size=config.archive_max_extraction_size,
            ),
            hook_settings=HookRunSettings(
                kill_grace_seconds=config.hook_kill_grace_seconds,
                outputs_left_open=OutputsLeftOpenPolicy(config.hook_outputs_left_open),
                use_cgroups=config.hook_use_cgroups,
                strip_loader_env=config.strip_loader_env_in_hooks,
                env_allowlist=HOOK_ENV_ALLOWLIST if config.restrict_hook_env_to_allowlist else None,
            ),
            enable_deployments_log=config.enable_deployments_log,
            fetch=fetch,
            reject_symlink_permission_targets=config.reject_symlink_permission_targets,
            log_dir=config.log_dir,
            pid_dir=config.pid_dir,
            install_helper=install_helper,
            inherited_environment=dict(environ),
            trash=trash,
        )
