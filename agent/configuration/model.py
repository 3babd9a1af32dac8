"""Typed, immutable agent configuration, and the one declaration of its keys
(docs/behaviour.md section 3).

Every key of the AWS agent's ``codedeployagent.yml`` that changes behaviour is a field here,
declared with :func:`~agent.configuration.keys.setting`: its type, the AWS agent's default,
its converter and one line of documentation; the hardening keys of the AWS agent v2 and the
keys of our own follow, then the AWS agent's keys that this agent accepts without
supporting. The loader fills the model once at start-up; everything else takes it as an
argument. The README's and docs/behaviour.md's tables are generated from these
declarations (``python -m agent.config_reference``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import FrozenSet, Literal, Optional, Tuple, Union

from agent.configuration import converters as to
from agent.configuration.errors import ConfigError
from agent.configuration.keys import ConfigKey, IgnoredKey, KeyOrigin, declared_keys, setting

__all__ = [
    "AGENT_CONFIG_KEYS",
    "DEFAULT_CONFIG_FILE",
    "FIPS_REGIONS",
    "IGNORED_AGENT_KEYS",
    "AgentConfig",
    "ConfigError",
]

DEFAULT_CONFIG_FILE = Path("/etc/codedeploy-agent/conf/codedeployagent.yml")

FIPS_REGIONS: FrozenSet[str] = frozenset(
    {"us-east-1", "us-east-2", "us-west-1", "us-west-2", "us-gov-west-1", "us-gov-east-1"}
)

_V2 = KeyOrigin.AWS_V2
_OWN = KeyOrigin.OWN


@dataclass(frozen=True)
class AgentConfig:
    # Where things live.
    log_dir: Path = setting(
        Path("/var/log/aws/codedeploy-agent/"), to.as_path, "the agent's log folder"
    )
    pid_dir: Path = setting(
        Path("/opt/codedeploy-agent/state/.pid/"), to.as_path, "pid and status files"
    )
    program_name: str = setting(
        "codedeploy-agent", to.as_file_name, "prefix of the log and pid file names"
    )
    root_dir: Path = setting(
        Path("/opt/codedeploy-agent/deployment-root"),
        to.as_path,
        "the deployment root: a folder per deployment group, with its revisions and logs",
    )
    ongoing_deployment_tracking: str = setting(
        "ongoing-deployment",
        to.as_file_name,
        "folder of the records of running commands, under `root_dir`",
    )
    on_premises_config_file: Path = setting(
        Path("/etc/codedeploy-agent/conf/codedeploy.onpremises.yml"),
        to.as_path,
        "an on-premises host's identity",
    )

    # Logging.
    verbose: bool = setting(False, to.as_bool, "debug lines")
    log_aws_wire: bool = setting(
        False,
        to.as_bool,
        "the wire log `<log_dir>/<program_name>.aws_wire.log`, secrets redacted",
    )
    enable_deployments_log: bool = setting(
        True,
        to.as_bool,
        "also write every hook's output to `deployment-logs/codedeploy-agent-deployments.log`"
        " under `root_dir`",
    )
    time_zone: str = setting(
        "local",
        to.choice("local", "utc"),
        "`local` or `utc`: the time zone of the log lines' timestamps",
    )

    # Polling and the command service.
    wait_between_runs: float = setting(
        1.0, to.seconds_up_to(3600.0), "seconds between polls (0 to 3600)"
    )
    wait_after_error: float = setting(
        30.0,
        to.seconds_up_to(3600.0),
        "base of the back-off after a failed poll, in seconds (0 to 3600)",
    )
    http_read_timeout: float = setting(
        80.0,
        to.seconds_up_to(3600.0, minimum=1.0),
        "seconds (1 to 3600); a poll is a long poll",
    )
    kill_agent_max_wait_time_seconds: float = setting(
        7200.0,
        to.seconds_up_to(86400.0),
        "how long a stop waits for the running command, in seconds (at most 86400)",
    )
    proxy_uri: Optional[str] = setting(None, to.as_url, "proxy for the command service and S3")
    deploy_control_endpoint: Optional[str] = setting(None, to.as_url, "the command service's URL")
    s3_endpoint_override: Optional[str] = setting(None, to.as_url, "another S3-compatible endpoint")
    use_fips_mode: bool = setting(
        False,
        to.as_bool,
        "FIPS endpoints (us-east-1/2, us-west-1/2, us-gov-west-1, us-gov-east-1 only)",
    )
    enable_auth_policy: bool = setting(
        False,
        to.as_bool,
        "the `codedeploy-commands-secure` endpoint, target prefix `CodeDeployCommandService`",
    )
    disable_imds_v1: bool = setting(False, to.as_bool, "never fall back from IMDSv2 to IMDSv1")

    # Revisions.
    max_revisions: int = setting(5, to.as_positive_int, "revisions kept per group (1 to 1000)")

    # Hardening keys shared with the AWS agent v2. Ours are safe by default where no
    # legitimate bundle depends on the unsafe behaviour.
    reject_path_traversal_in_bundle: bool = setting(
        True,
        to.as_bool,
        "members with `..`, absolute names, hard links out of the archive, writes through"
        " symlinks, device files, FIFOs and sockets are always refused; `false` is warned"
        " about and ignored",
        origin=_V2,
        shown_default="always on",
        locked_because="archive members that escape the archive folder are always rejected",
    )
    ignore_ownership_in_bundle: bool = setting(
        True,
        to.as_bool,
        "archive owners are never applied unless set to `false`",
        origin=_V2,
    )
    reject_symlinks_in_bundle: bool = setting(
        False, to.as_bool, "refuse any symlink member", origin=_V2
    )
    reject_unsafe_permissions_in_bundle: bool = setting(
        False,
        to.as_bool,
        "refuse setuid, setgid and world-writable members",
        origin=_V2,
    )
    archive_max_extraction_size: Optional[int] = setting(
        None,
        to.parse_size,
        "bytes or `4GB` (units are powers of 1024); the free space of the target filesystem"
        " always bounds a revision",
        origin=_V2,
    )
    strip_loader_env_in_hooks: bool = setting(
        False,
        to.as_bool,
        "drop `LD_*` variables from the hooks' environment",
        origin=_V2,
    )
    reject_symlink_permission_targets: bool = setting(
        False,
        to.as_bool,
        "`true`: an install whose `permissions` object is (or lies below) a symlink, or whose"
        " permissions match a symlink, is refused in one line before anything changes, and so"
        " is a symlink found on the way to a matched path while permissions are applied."
        " `false`: matched symlinks are skipped, an object reached through a symlink that"
        " existed before (`/var/www -> /srv/www`) is applied through it, and below the object"
        " only root's own symlinks are followed",
        origin=_V2,
    )
    restrict_agent_dir_permissions: bool = setting(
        False,
        to.as_bool,
        "at start-up: the deployment root 0711, `ongoing-deployment/`,"
        " `deployment-instructions/` and the pid folder 0700, `deployment-logs/` 0750",
        origin=_V2,
    )
    restrict_log_dir_permissions: bool = setting(
        False,
        to.as_bool,
        "at the daemon's start-up: `log_dir` 0750, the agent's log files 0640",
        origin=_V2,
    )
    restrict_hook_env_to_allowlist: bool = setting(
        False,
        to.as_bool,
        "hooks inherit only `PATH`, `LANG`, `LC_ALL`, `LC_CTYPE`, `TZ`, `HOME`, `USER`,"
        " `LOGNAME`, `SHELL`, `TERM`, `TMPDIR` plus the hook variables",
        origin=_V2,
    )

    # Keys of our own.
    hook_kill_grace_seconds: float = setting(
        5.0,
        to.seconds_up_to(3600.0),
        "at a script's timeout, seconds between SIGTERM and SIGKILL for its whole process tree",
        origin=_OWN,
    )
    hook_outputs_left_open: str = setting(
        "fail",
        to.choice("fail", "succeed"),
        "a script exited but a background child still holds its stdout/stderr: `fail`"
        " (code 6) or `succeed`; either way we stop waiting about a second after the script"
        " exits",
        origin=_OWN,
    )
    hook_use_cgroups: bool = setting(
        True,
        to.as_bool,
        "run each script in its own cgroup v2 where the host allows it",
        origin=_OWN,
    )
    github_api_endpoint: str = setting(
        "https://api.github.com",
        to.as_url,
        "GitHub or GitHub Enterprise API for GitHub revisions",
        origin=_OWN,
    )
    # With no CA file a signed specification's integrity is checked and its signer logged
    # (no public fact says who signs AWS's specifications today); a PEM bundle or "system"
    # (the host's CA store) makes the chain, and the name when set, strict.
    deployment_signer_ca_file: Union[Path, Literal["system"], None] = setting(
        None,
        to.as_signer_trust,
        "unset: a signed specification's integrity is verified and its signer logged (nothing"
        " public says which CA signs AWS's specifications today); a PEM bundle path, or"
        " `system` (openssl's default CA paths): the signer must chain to those CAs",
        origin=_OWN,
    )
    deployment_signer_name: Optional[str] = setting(
        None,
        to.as_optional_text,
        "the signer certificate's expected common name (`{region}` replaced), checked only"
        " together with `deployment_signer_ca_file`",
        origin=_OWN,
    )
    allow_unsigned_deployment_specs: bool = setting(
        False,
        to.as_bool,
        "accept `TEXT/JSON` specifications (for a self-hosted command service)",
        origin=_OWN,
    )

    # Where it came from, and what the loader had to say about it.
    config_file: Optional[Path] = None
    warnings: Tuple[str, ...] = ()

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.program_name}.log"

    @property
    def pid_file(self) -> Path:
        return self.pid_dir / f"{self.program_name}.pid"


AGENT_CONFIG_KEYS: Tuple[ConfigKey, ...] = declared_keys(AgentConfig)

# Keys the AWS agent knows that this agent accepts but does not support.
IGNORED_AGENT_KEYS: Tuple[IgnoredKey, ...] = (
    IgnoredKey(
        "children",
        "the AWS agent's number of worker processes, which can only be 1; this agent runs one"
        " command at a time (`1` is accepted silently)",
        same_as="1",
        because="one command runs at a time",
    ),
    IgnoredKey(
        "wait_between_spawning_children",
        "the AWS agent's pause between starting worker processes; this agent has none",
    ),
    IgnoredKey("shared_dir", "a folder of the AWS agent's process manager; not used"),
    IgnoredKey(
        "user",
        "the user the AWS agent's process manager runs as; this agent runs as the user that"
        " starts it",
    ),
    IgnoredKey("instance_service_region", "an internal endpoint of the AWS agent; not used"),
    IgnoredKey("instance_service_endpoint", "an internal endpoint of the AWS agent; not used"),
    IgnoredKey("instance_service_port", "an internal endpoint of the AWS agent; not used"),
    IgnoredKey("codedeploy_test_profile", "an internal test profile of the AWS agent; not used"),
    IgnoredKey("max_runtime", "a limit of the AWS agent's process manager; not used"),
    IgnoredKey(
        "ca_path", "CA certificates for the AWS agent's HTTPS calls; botocore's bundle is used"
    ),
    # Named among the AWS agent v2's keys, but no public description says what it reuses.
    IgnoredKey(
        "enable_archive_reuse",
        "this agent always reuses the previous install's unchanged files",
        origin=KeyOrigin.AWS_V2,
    ),
)
