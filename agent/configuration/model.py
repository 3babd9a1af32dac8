"""Typed, immutable agent configuration (docs/behaviour.md section 3).

Every key of the AWS agent's ``codedeployagent.yml`` that changes behaviour has a field
here, with the AWS agent's default; the hardening keys of the AWS agent v2 and the keys of
our own follow. The loader fills it once at start-up; everything else takes it as an
argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import FrozenSet, Literal, Optional, Tuple, Union

from agent.errors import AgentError

DEFAULT_CONFIG_FILE = Path("/etc/codedeploy-agent/conf/codedeployagent.yml")

FIPS_REGIONS: FrozenSet[str] = frozenset(
    {"us-east-1", "us-east-2", "us-west-1", "us-west-2", "us-gov-west-1", "us-gov-east-1"}
)


class ConfigError(AgentError):
    """The configuration file is unreadable or a key has an invalid value."""


@dataclass(frozen=True)
class AgentConfig:
    # Where things live.
    log_dir: Path = Path("/var/log/aws/codedeploy-agent/")
    pid_dir: Path = Path("/opt/codedeploy-agent/state/.pid/")
    program_name: str = "codedeploy-agent"
    root_dir: Path = Path("/opt/codedeploy-agent/deployment-root")
    ongoing_deployment_tracking: str = "ongoing-deployment"
    on_premises_config_file: Path = Path("/etc/codedeploy-agent/conf/codedeploy.onpremises.yml")

    # Logging.
    verbose: bool = False
    log_aws_wire: bool = False
    enable_deployments_log: bool = True
    time_zone: str = "local"

    # Polling and the command service.
    wait_between_runs: float = 1.0
    wait_after_error: float = 30.0
    http_read_timeout: float = 80.0
    kill_agent_max_wait_time_seconds: float = 7200.0
    proxy_uri: Optional[str] = None
    deploy_control_endpoint: Optional[str] = None
    s3_endpoint_override: Optional[str] = None
    use_fips_mode: bool = False
    enable_auth_policy: bool = False
    disable_imds_v1: bool = False

    # Revisions.
    max_revisions: int = 5

    # Hardening keys shared with the AWS agent v2. Ours are safe by default where no
    # legitimate bundle depends on the unsafe behaviour.
    reject_symlinks_in_bundle: bool = False
    ignore_ownership_in_bundle: bool = True
    reject_unsafe_permissions_in_bundle: bool = False
    reject_path_traversal_in_bundle: bool = True  # always enforced; false is warned about
    reject_symlink_permission_targets: bool = False
    restrict_agent_dir_permissions: bool = False
    restrict_log_dir_permissions: bool = False
    strip_loader_env_in_hooks: bool = False
    restrict_hook_env_to_allowlist: bool = False
    archive_max_extraction_size: Optional[int] = None

    # Keys of our own. With no CA file a signed specification's integrity is checked and
    # its signer logged (no public fact says who signs AWS's specifications today); a PEM
    # bundle or "system" (the host's CA store) makes the chain, and the name when set, strict.
    deployment_signer_ca_file: Union[Path, Literal["system"], None] = None
    deployment_signer_name: Optional[str] = None
    allow_unsigned_deployment_specs: bool = False
    github_api_endpoint: str = "https://api.github.com"
    hook_kill_grace_seconds: float = 5.0
    hook_outputs_left_open: str = "fail"  # fail | succeed
    hook_use_cgroups: bool = True

    # Where it came from, and what the loader had to say about it.
    config_file: Optional[Path] = None
    warnings: Tuple[str, ...] = ()

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.program_name}.log"

    @property
    def pid_file(self) -> Path:
        return self.pid_dir / f"{self.program_name}.pid"
