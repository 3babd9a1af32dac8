"""Reading ``codedeployagent.yml`` into an :class:`AgentConfig`.

The AWS agent writes its keys as Ruby symbols (``:root_dir: '/opt/...'``), hand-written
files often use plain ``root_dir:``; both are accepted. A value of the wrong kind is a
start-up error naming the key; an unknown key is only warned about, so a file written for
a newer agent still starts this one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Type

import yaml

from agent.configuration.converters import parse_size
from agent.configuration.keys import ConfigKey, IgnoredKey, yaml_text
from agent.configuration.model import (
    AGENT_CONFIG_KEYS,
    FIPS_REGIONS,
    IGNORED_AGENT_KEYS,
    AgentConfig,
    ConfigError,
)

__all__ = ["load_symbol_keyed_mapping", "parse_agent_config", "parse_size", "read_agent_config"]

_KEYS: Dict[str, ConfigKey] = {key.name: key for key in AGENT_CONFIG_KEYS}
_IGNORED: Dict[str, IgnoredKey] = {key.name: key for key in IGNORED_AGENT_KEYS}


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


def parse_agent_config(
    text: str, *, source: Optional[Path] = None, environ: Optional[Mapping[str, str]] = None
) -> AgentConfig:
    """Validate the YAML text of a configuration file; ``source`` only names it in errors."""
    name = str(source) if source else "configuration"
    document = load_symbol_keyed_mapping(text, name, ConfigError)

    values: Dict[str, Any] = {}
    warnings: List[str] = []
    for name_in_file, raw_value in document.items():
        ignored = _IGNORED.get(name_in_file)
        key = _KEYS.get(name_in_file)
        if ignored is not None:
            warnings += _ignored_key_warnings(name, ignored, raw_value)
        elif key is None:
            warnings.append(f"{name}: unknown configuration key {name_in_file} is ignored")
        else:
            values[key.name] = _converted(name, key, raw_value)

    for key in AGENT_CONFIG_KEYS:
        if key.locked_because and values.get(key.name, key.default) != key.default:
            warnings.append(
                f"{name}: {key.name}={yaml_text(values[key.name])} is ignored; {key.locked_because}"
            )
            values[key.name] = key.default
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


def _converted(name: str, key: ConfigKey, raw_value: Any) -> Any:
    """The key's value from the file; a converter's None (an empty value) is the default."""
    try:
        value = key.convert(key.name, raw_value)
    except ConfigError as error:
        raise ConfigError(f"{name}: {error.message}") from None
    return key.default if value is None else value


def _ignored_key_warnings(name: str, key: IgnoredKey, raw_value: Any) -> List[str]:
    """One warning naming a key this agent does not support, unless its value asks for
    what this agent does anyway."""
    if key.same_as is None:
        return [
            f"{name}: configuration key {key.name} is accepted but not supported by this"
            " agent; it has no effect"
        ]
    if str(raw_value) == key.same_as:
        return []
    return [f"{name}: {key.name}={raw_value} is ignored; {key.because}"]


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
