"""Each configuration key is declared once, and the declaration is what the loaders use.

The declarations (type, default, converter, one line of documentation) are the fields of
the two models; these tests hold every key to having all of them, and show that the
loaders accept exactly the declared keys, warn about each key the AWS agent has and this
agent does not support, and load each documented default as the default.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Tuple

import pytest
from structlog.testing import capture_logs

from agent.configuration.keys import ConfigKey, IgnoredKey, yaml_text
from agent.configuration.loader import parse_agent_config
from agent.configuration.model import AGENT_CONFIG_KEYS, IGNORED_AGENT_KEYS, AgentConfig
from agent.configuration.on_premises import (
    ON_PREMISES_KEYS,
    OnPremisesConfig,
    parse_on_premises_config,
)
from agent.local_deployment.flags import LOCAL_FLAGS
from tests.support.checkout import REPO

SESSION_ARN = "arn:aws:sts::123456789012:assumed-role/CodeDeployHost/host-17"


def _documented() -> List[Tuple[str, str]]:
    return (
        [(key.name, key.doc) for key in AGENT_CONFIG_KEYS + ON_PREMISES_KEYS]
        + [(key.name, key.doc) for key in IGNORED_AGENT_KEYS]
        + [(flag.names[-1], flag.doc) for flag in LOCAL_FLAGS]
    )


@pytest.mark.parametrize(("name", "doc"), _documented())
def test_every_key_and_flag_has_one_line_of_documentation(name: str, doc: str) -> None:
    assert doc.strip() == doc and len(doc) >= 10, name
    # One line, fit for a Markdown table's cell.
    assert "\n" not in doc and "|" not in doc, name


def test_every_field_of_the_agent_configuration_is_a_declared_key() -> None:
    fields = {field.name for field in dataclasses.fields(AgentConfig)}
    declared = [key.name for key in AGENT_CONFIG_KEYS]
    assert fields - set(declared) == {"config_file", "warnings"}
    ignored = [key.name for key in IGNORED_AGENT_KEYS]
    assert len(set(declared + ignored)) == len(declared) + len(ignored)


@pytest.mark.parametrize("key", AGENT_CONFIG_KEYS, ids=lambda key: key.name)
def test_each_declared_default_written_in_a_file_is_the_default(key: ConfigKey) -> None:
    text = (
        f":{key.name}:\n" if key.default is None else f":{key.name}: '{yaml_text(key.default)}'\n"
    )
    config = parse_agent_config(text)
    assert config == AgentConfig()
    assert config.warnings == ()


@pytest.mark.parametrize("key", IGNORED_AGENT_KEYS, ids=lambda key: key.name)
def test_each_key_this_agent_does_not_support_is_named_in_one_warning(key: IgnoredKey) -> None:
    config = parse_agent_config(f":{key.name}: 2\n:root_dir: /r\n", source=Path("/etc/a.yml"))
    [warning] = config.warnings
    assert warning.startswith("/etc/a.yml: ") and key.name in warning
    if key.same_as is not None:
        assert parse_agent_config(f":{key.name}: {key.same_as}\n").warnings == ()


def test_a_key_locked_to_its_default_is_named_with_its_reason() -> None:
    [locked] = [key for key in AGENT_CONFIG_KEYS if key.locked_because]
    config = parse_agent_config(f":{locked.name}: {yaml_text(not locked.default)}\n")
    assert getattr(config, locked.name) == locked.default
    assert config.warnings == (
        f"configuration: {locked.name}={yaml_text(not locked.default)} is ignored;"
        f" {locked.locked_because}",
    )


def test_the_on_premises_file_takes_exactly_its_declared_keys(tmp_path: Path) -> None:
    fields = {field.name for field in dataclasses.fields(OnPremisesConfig)}
    assert {key.name for key in ON_PREMISES_KEYS} == fields - {"source"}
    text = (
        f"region: eu-west-1\niam_session_arn: {SESSION_ARN}\n"
        f"aws_credentials_file: {tmp_path / 'credentials'}\n"
    )
    with capture_logs() as logs:
        parse_on_premises_config(text, source=tmp_path / "onprem.yml")
    assert logs == []
    [required] = [key for key in ON_PREMISES_KEYS if key.required]
    assert required.name == "region" and required.default_text == "required"


def test_the_shipped_configuration_names_every_key() -> None:
    """release/codedeployagent.yml has every key, set to its default (the release's tests
    check that) or as a commented example, and the examples are valid together."""
    text = (REPO / "release/codedeployagent.yml").read_text(encoding="utf-8")
    examples = {}
    for line in text.splitlines():
        written = line[len("# ") :] if line.startswith("# :") else line
        if written.startswith(":"):
            name, _, value = written[1:].partition(":")
            examples[name] = value.strip()
    assert sorted({key.name for key in AGENT_CONFIG_KEYS} - set(examples)) == []
    every_example = "".join(f":{name}: {value}\n" for name, value in examples.items())
    assert parse_agent_config(every_example).warnings == ()
