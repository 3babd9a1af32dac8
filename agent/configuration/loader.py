"""Reading ``codedeployagent.yml`` into an :class:`AgentConfig`.

The AWS agent writes its keys as Ruby symbols (``:root_dir: '/opt/...'``), hand-written
files often use plain ``root_dir:``; both are accepted. A value of the wrong kind is a
start-up error naming the key; an unknown key is only warned about, so a file written for
a newer agent still starts this one.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Type, Union

import yaml

from agent.configuration.model import FIPS_REGIONS, AgentConfig, ConfigError
from agent.deployment_root.names import ROOT_BOOKKEEPING_NAMES, unsafe_root_entry_reason

# Keys the AWS agent knows that this agent accepts but does not support: each is warned
# about once, naming it, so that no key is a silent no-op. ``children: 1`` is what this
# agent does anyway, so it alone is accepted silently.
_UNSUPPORTED_KEYS = frozenset(
    {
        "children",
        "wait_between_spawning_children",
        "shared_dir",
        "user",
        "instance_service_region",
        "instance_service_endpoint",
        "instance_service_port",
        "codedeploy_test_profile",
        "max_runtime",
        "ca_path",
        # Named among the AWS agent v2's keys, but no public description says what it
        # reuses; this agent always reuses the previous install's unchanged files.
        "enable_archive_reuse",
    }
)

# No disk holds more; beyond it float sizes lose their meaning (and 1e400 is infinity).
SIZE_MAX = 1024**5
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_SIZE_UNITS.update({"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4})


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    raise ConfigError(f"configuration key {key} must be true or false, not {value!r}")


def _shown(value: Any) -> str:
    # A huge number from the file is named, not printed in full.
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _as_number(key: str, value: Any, *, minimum: float = 0.0, maximum: float = 3600.0) -> float:
    """A finite number of seconds within ``[minimum, maximum]``: NaN, infinity and absurd
    values would reach timers and sockets that overflow or never fire."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"configuration key {key} must be a number, not {_shown(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        number = math.nan
    if not minimum <= number <= maximum:
        raise ConfigError(
            f"configuration key {key} must be a number from {minimum:g} to {maximum:g},"
            f" not {_shown(value)}"
        )
    return number


def _seconds_up_to(maximum: float, minimum: float = 0.0) -> Callable[[str, Any], float]:
    return lambda key, value: _as_number(key, value, minimum=minimum, maximum=maximum)


def _as_positive_int(key: str, value: Any, *, maximum: int = 1000) -> int:
    number = 0
    if not isinstance(value, bool) and len(str(value)) <= 20:
        try:
            number = int(str(value).strip())
        except ValueError:
            number = 0
    if not 1 <= number <= maximum:
        raise ConfigError(
            f"configuration key {key} must be a whole number from 1 to {maximum},"
            f" not {_shown(value)}"
        )
    return number


def _as_text(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value) == "":
        raise ConfigError(f"configuration key {key} must be a non-empty string, not {value!r}")
    return str(value)


def _as_file_name(key: str, value: Any) -> str:
    """A name the agent puts in a path (``<log_dir>/<program_name>.log``, the
    ``ongoing-deployment`` folder): one safe component, never ``..`` or a ``/``."""
    text = _as_text(key, value)
    reason = unsafe_root_entry_reason(text, ROOT_BOOKKEEPING_NAMES)
    if reason is not None:
        raise ConfigError(f"configuration key {key} {_shown(text)} {reason}")
    return text


def _as_path(key: str, value: Any) -> Path:
    text = _as_text(key, value)
    if not text.startswith("/"):
        raise ConfigError(f"configuration key {key} must be an absolute path, not {value!r}")
    if "\0" in text or len(text) > 4095 or any(len(part) > 255 for part in text.split("/")):
        raise ConfigError(
            f"configuration key {key} must be a path without NUL, of at most 4095 characters"
            f" whose parts are at most 255, not {_shown(text)}"
        )
    return Path(text)


def _as_signer_trust(key: str, value: Any) -> Union[Path, Literal["system"], None]:
    if value is None or value == "":
        return None
    if str(value).strip() == "system":
        return "system"
    return _as_path(key, value)


def _as_optional_text(key: str, value: Any) -> Optional[str]:
    return None if value is None or value == "" else _as_text(key, value)


def _as_url(key: str, value: Any) -> Optional[str]:
    text = _as_optional_text(key, value)
    if text is not None and not re.match(r"^https?://[^/\s]+", text):
        raise ConfigError(f"configuration key {key} must be an http(s) URL, not {value!r}")
    return text


def parse_size(key: str, value: Any) -> Optional[int]:
    """Bytes from ``1048576``, ``"512MB"`` or ``"4GB"`` (units are powers of 1024)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"configuration key {key} must be a size such as 4GB, not {value!r}")
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ConfigError(f"configuration key {key} must be a size such as 4GB, not {value!r}")
    size = float(match.group(1)) * _SIZE_UNITS[unit]
    if not 1 <= size <= SIZE_MAX:
        raise ConfigError(
            f"configuration key {key} must be from 1 byte to 1024TB, not {_shown(value)}"
        )
    return int(size)


def load_symbol_keyed_mapping(
    text: str, name: str, error: Type[ConfigError], *, allow_empty: bool = True
) -> Dict[str, Any]:
    """A YAML mapping whose keys may be written as Ruby symbols (``:root_dir:``).

    Errors say where the YAML is wrong but never quote the line: in the on-premises file
    it may hold a secret key.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{name} is not valid YAML{where}") from None
    if document is None and allow_empty:
        document = {}
    if document is None:
        raise error(f"{name} is empty")
    if not isinstance(document, dict):
        raise error(f"{name} must be a mapping of keys to values")
    return {str(key).lstrip(":"): value for key, value in document.items()}


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def convert(key: str, value: Any) -> str:
        text = str(value).strip().lower() if value is not None else ""
        if text not in choices:
            allowed = " or ".join(choices)
            raise ConfigError(f"configuration key {key} must be {allowed}, not {value!r}")
        return text

    return convert


_CONVERTERS: Dict[str, Callable[[str, Any], Any]] = {
    "log_dir": _as_path,
    "pid_dir": _as_path,
    "program_name": _as_file_name,
    "root_dir": _as_path,
    "ongoing_deployment_tracking": _as_file_name,
    "on_premises_config_file": _as_path,
    "verbose": _as_bool,
    "log_aws_wire": _as_bool,
    "enable_deployments_log": _as_bool,
    "time_zone": _choice("local", "utc"),
    "wait_between_runs": _seconds_up_to(3600.0),
    "wait_after_error": _seconds_up_to(3600.0),
    "http_read_timeout": _seconds_up_to(3600.0, minimum=1.0),
    "kill_agent_max_wait_time_seconds": _seconds_up_to(86400.0),
    "proxy_uri": _as_url,
    "deploy_control_endpoint": _as_url,
    "s3_endpoint_override": _as_url,
    "use_fips_mode": _as_bool,
    "enable_auth_policy": _as_bool,
    "disable_imds_v1": _as_bool,
    "max_revisions": _as_positive_int,
    "reject_symlinks_in_bundle": _as_bool,
    "ignore_ownership_in_bundle": _as_bool,
    "reject_unsafe_permissions_in_bundle": _as_bool,
    "reject_path_traversal_in_bundle": _as_bool,
    "reject_symlink_permission_targets": _as_bool,
    "restrict_agent_dir_permissions": _as_bool,
    "restrict_log_dir_permissions": _as_bool,
    "strip_loader_env_in_hooks": _as_bool,
    "restrict_hook_env_to_allowlist": _as_bool,
    "archive_max_extraction_size": parse_size,
    "deployment_signer_ca_file": _as_signer_trust,
    "deployment_signer_name": _as_optional_text,
    "allow_unsigned_deployment_specs": _as_bool,
    "github_api_endpoint": lambda k, v: _as_url(k, v) or "https://api.github.com",
    "hook_kill_grace_seconds": _seconds_up_to(3600.0),
    "hook_outputs_left_open": _choice("fail", "succeed"),
    "hook_use_cgroups": _as_bool,
}


def parse_agent_config(
    text: str, *, source: Optional[Path] = None, environ: Optional[Mapping[str, str]] = None
) -> AgentConfig:
    """Validate the YAML text of a configuration file; ``source`` only names it in errors."""
    name = str(source) if source else "configuration"
    document = load_symbol_keyed_mapping(text, name, ConfigError)

    values: Dict[str, Any] = {}
    warnings: List[str] = []
    for key, raw_value in document.items():
        if key in _UNSUPPORTED_KEYS:
            if key == "children" and str(raw_value) != "1":
                warnings.append(
                    f"{name}: children={raw_value} is ignored; one command runs at a time"
                )
            elif key != "children":
                warnings.append(
                    f"{name}: configuration key {key} is accepted but not supported by this"
                    " agent; it has no effect"
                )
            continue
        convert = _CONVERTERS.get(key)
        if convert is None:
            warnings.append(f"{name}: unknown configuration key {key} is ignored")
            continue
        try:
            values[key] = convert(key, raw_value)
        except ConfigError as error:
            raise ConfigError(f"{name}: {error.message}") from None

    if values.get("reject_path_traversal_in_bundle") is False:
        warnings.append(
            f"{name}: reject_path_traversal_in_bundle=false is ignored; archive members that"
            " escape the archive folder are always rejected"
        )
        values["reject_path_traversal_in_bundle"] = True
    if values.get("deployment_signer_name") and values.get("deployment_signer_ca_file") is None:
        warnings.append(
            f"{name}: deployment_signer_name is checked only together with"
            " deployment_signer_ca_file (a name proves nothing without a trusted chain);"
            " it is ignored"
        )
    if values.get("use_fips_mode"):
        region = (environ or {}).get("AWS_REGION")
        if region and region not in FIPS_REGIONS:
            raise ConfigError(
                f"configuration key use_fips_mode is true but region {region} has no FIPS"
                f" endpoints (only {', '.join(sorted(FIPS_REGIONS))})"
            )
    return dataclasses.replace(
        AgentConfig(), **values, config_file=source, warnings=tuple(warnings)
    )


def read_agent_config(
    path: Path, *, required: bool = True, environ: Optional[Mapping[str, str]] = None
) -> AgentConfig:
    """Load the configuration file; when not ``required``, a missing file gives the defaults."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"configuration file {path} does not exist") from None
        return AgentConfig()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"configuration file {path} cannot be read: {reason}") from None
    return parse_agent_config(text, source=path, environ=environ)
