"""The agent configuration file: both key styles, defaults, validation naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.configuration.loader import parse_agent_config, parse_size, read_agent_config
from agent.configuration.model import AgentConfig, ConfigError

AWS_SHIPPED_FILE = """\
---
:log_aws_wire: false
:log_dir: '/var/log/aws/codedeploy-agent/'
:pid_dir: '/opt/codedeploy-agent/state/.pid/'
:program_name: codedeploy-agent
:root_dir: '/opt/codedeploy-agent/deployment-root'
:verbose: false
:wait_between_runs: 1
:proxy_uri:
:max_revisions: 5
"""


def test_the_file_the_aws_agent_ships_loads_with_symbol_keys() -> None:
    config = parse_agent_config(AWS_SHIPPED_FILE)
    assert config.root_dir == Path("/opt/codedeploy-agent/deployment-root")
    assert config.log_file == Path("/var/log/aws/codedeploy-agent/codedeploy-agent.log")
    assert config.pid_file == Path("/opt/codedeploy-agent/state/.pid/codedeploy-agent.pid")
    assert config.wait_between_runs == 1
    assert config.proxy_uri is None
    assert config.warnings == ()


def test_plain_keys_work_too_and_override_defaults() -> None:
    config = parse_agent_config(
        "root_dir: /srv/root\nverbose: true\nmax_revisions: 2\nhttp_read_timeout: 30\n"
        "s3_endpoint_override: http://127.0.0.1:9000\n"
    )
    assert config.root_dir == Path("/srv/root")
    assert config.verbose is True
    assert config.max_revisions == 2
    assert config.http_read_timeout == 30
    assert config.s3_endpoint_override == "http://127.0.0.1:9000"


def test_defaults_match_the_design_table() -> None:
    config = parse_agent_config("")
    assert config == AgentConfig()
    assert config.wait_after_error == 30
    assert config.http_read_timeout == 80
    assert config.kill_agent_max_wait_time_seconds == 7200
    assert config.enable_deployments_log is True
    assert config.ongoing_deployment_tracking == "ongoing-deployment"
    assert config.allow_unsigned_deployment_specs is False
    assert config.ignore_ownership_in_bundle is True
    # No public fact says who signs AWS's specifications: integrity only by default.
    assert config.deployment_signer_ca_file is None
    assert config.deployment_signer_name is None


def test_unknown_keys_are_warned_about_not_fatal() -> None:
    config = parse_agent_config(":root_dir: /r\n:shiny_new_option: 3\n:children: 1\n")
    assert config.root_dir == Path("/r")
    assert len(config.warnings) == 1
    assert "shiny_new_option" in config.warnings[0]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (":max_revisions: 0", "max_revisions"),
        (":max_revisions: many", "max_revisions"),
        (":verbose: sometimes", "verbose"),
        (":root_dir: relative/path", "root_dir"),
        (":wait_between_runs: -1", "wait_between_runs"),
        (":http_read_timeout: soon", "http_read_timeout"),
        (":proxy_uri: not a url", "proxy_uri"),
        (":time_zone: mars", "time_zone"),
        (":archive_max_extraction_size: lots", "archive_max_extraction_size"),
        (":hook_outputs_left_open: maybe", "hook_outputs_left_open"),
        (":hook_kill_grace_seconds: 1e400", "hook_kill_grace_seconds"),
        (":hook_kill_grace_seconds: .inf", "hook_kill_grace_seconds"),
        (":hook_kill_grace_seconds: -1", "hook_kill_grace_seconds"),
        (":wait_between_runs: .nan", "wait_between_runs"),
        (":wait_after_error: 1e300", "wait_after_error"),
        (":wait_after_error: " + "9" * 400, "wait_after_error"),
        (":http_read_timeout: 1000000000000", "http_read_timeout"),
        (":http_read_timeout: 0.5", "http_read_timeout"),
        (":kill_agent_max_wait_time_seconds: .inf", "kill_agent_max_wait_time_seconds"),
        (":kill_agent_max_wait_time_seconds: 86401", "kill_agent_max_wait_time_seconds"),
        (":max_revisions: 100000000000000000000000000000", "max_revisions"),
        (":max_revisions: 1001", "max_revisions"),
        (":archive_max_extraction_size: " + "9" * 400, "archive_max_extraction_size"),
        (":archive_max_extraction_size: 2048TB", "archive_max_extraction_size"),
        (":program_name: ../../tmp/x", "program_name"),
        (':root_dir: "/tmp/a\\0b"', "root_dir"),
        (":log_dir: /tmp/" + "l" * 256, "log_dir"),
        (":program_name: 'a\\nb'", "program_name"),
        (":ongoing_deployment_tracking: ../x", "ongoing_deployment_tracking"),
        (":ongoing_deployment_tracking: deployment-instructions", "ongoing_deployment_tracking"),
    ],
)
def test_a_bad_value_is_one_clear_error_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_agent_config(text, source=Path("/etc/codedeployagent.yml"))
    message = str(raised.value)
    assert key in message
    assert message.startswith("/etc/codedeployagent.yml: ")
    assert "\n" not in message
    assert len(message) < 300


def test_the_largest_sane_numbers_are_accepted() -> None:
    config = parse_agent_config(
        ":wait_between_runs: 3600\n:http_read_timeout: 3600\n:hook_kill_grace_seconds: 0\n"
        ":kill_agent_max_wait_time_seconds: 86400\n:max_revisions: 1000\n"
        ":archive_max_extraction_size: 1024TB\n"
    )
    assert config.kill_agent_max_wait_time_seconds == 86400.0
    assert config.max_revisions == 1000
    assert config.archive_max_extraction_size == 1024**5


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+"):
        parse_agent_config(":root_dir: /r\n:verbose: [unclosed\n")


def test_fips_mode_is_refused_in_a_region_without_fips_endpoints() -> None:
    with pytest.raises(ConfigError, match="use_fips_mode"):
        parse_agent_config(":use_fips_mode: true", environ={"AWS_REGION": "eu-west-1"})
    assert parse_agent_config(
        ":use_fips_mode: true", environ={"AWS_REGION": "us-east-1"}
    ).use_fips_mode


def test_path_traversal_protection_cannot_be_turned_off() -> None:
    config = parse_agent_config(":reject_path_traversal_in_bundle: false")
    assert config.reject_path_traversal_in_bundle is True
    assert any("always rejected" in w for w in config.warnings)


@pytest.mark.parametrize(
    ("value", "size"),
    [(1048576, 1048576), ("4GB", 4 * 1024**3), ("512MB", 512 * 1024**2), ("10 KiB", 10240)],
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size("archive_max_extraction_size", value) == size


def test_reading_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml"
    assert read_agent_config(missing, required=False) == AgentConfig()
    with pytest.raises(ConfigError, match="does not exist"):
        read_agent_config(missing)
    present = tmp_path / "agent.yml"
    present.write_text(":root_dir: /x\n", encoding="utf-8")
    assert read_agent_config(present).config_file == present
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="cannot be read"):
        read_agent_config(binary)


@pytest.mark.parametrize(
    "key",
    ["enable_archive_reuse", "user", "ca_path", "max_runtime", "shared_dir", "children"],
)
def test_keys_this_agent_does_not_support_are_named_in_one_warning_each(key: str) -> None:
    value = "2" if key == "children" else "true"
    config = parse_agent_config(f":root_dir: /r\n:{key}: {value}\n")
    assert len(config.warnings) == 1, config.warnings
    assert key in config.warnings[0]


def test_children_1_is_what_this_agent_does_and_is_not_warned_about() -> None:
    assert parse_agent_config(":children: 1\n").warnings == ()


def test_a_signer_name_without_a_ca_file_is_warned_about() -> None:
    config = parse_agent_config(":deployment_signer_name: signer.example.com\n")
    [warning] = config.warnings
    assert "deployment_signer_name" in warning and "deployment_signer_ca_file" in warning
    pinned = parse_agent_config(
        ":deployment_signer_name: signer.example.com\n:deployment_signer_ca_file: system\n"
    )
    assert pinned.warnings == ()
    assert pinned.deployment_signer_ca_file == "system"


def test_every_key_of_the_configuration_is_read_by_the_agent() -> None:
    """No key may be a silent no-op: each declared key is used somewhere in agent/ outside
    the configuration package (or, locked to its default, warned about by the loader)."""
    import re

    from agent.configuration.model import AGENT_CONFIG_KEYS
    from tests.support.checkout import REPO

    sources = "\n".join(
        path.read_text(encoding="utf-8")
        for path in (REPO / "agent").rglob("*.py")
        if "configuration" not in path.parts
    )
    unused = [
        key.name
        for key in AGENT_CONFIG_KEYS
        if key.locked_because is None and not re.search(rf"\b{key.name}\b", sources)
    ]
    assert unused == []
