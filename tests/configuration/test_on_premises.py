"""The on-premises file: both kinds, every missing key, every invalid value."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.configuration.model import ConfigError
from agent.configuration.on_premises import (
    IAM_SESSION,
    IAM_USER,
    OnPremisesConfigError,
    parse_on_premises_config,
    read_on_premises_config,
)
from tests.support.on_premises_files import (
    SECRET,
    SESSION_ARN,
    USER_ARN,
    USER_FILE,
    no_secret_in,
    session_file,
)


def test_an_iam_user_file_with_symbol_keys() -> None:
    config = parse_on_premises_config(USER_FILE, source=Path("/etc/onprem.yml"))
    assert config.kind == IAM_USER
    assert config.host_identifier == USER_ARN
    assert config.region == "eu-west-1"
    assert config.aws_access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert config.aws_secret_access_key == SECRET
    assert config.aws_credentials_file is None
    assert SECRET not in repr(config)
    assert "/etc/onprem.yml" in config.credential_source


def test_an_iam_session_file_with_plain_keys(tmp_path: Path) -> None:
    path = tmp_path / "codedeploy.onpremises.yml"
    path.write_text(session_file(tmp_path / "credentials"), encoding="utf-8")
    config = read_on_premises_config(path)
    assert config.kind == IAM_SESSION
    assert config.host_identifier == SESSION_ARN
    assert config.region == "us-gov-west-1"
    assert config.aws_credentials_file == tmp_path / "credentials"
    assert config.iam_user_arn is None and config.aws_secret_access_key is None
    assert config.source == path


def test_both_arns_together_is_an_error() -> None:
    text = USER_FILE + f":iam_session_arn: {SESSION_ARN}\n"
    with pytest.raises(OnPremisesConfigError, match="both iam_user_arn and iam_session_arn"):
        parse_on_premises_config(text, source=Path("/etc/onprem.yml"))


def test_neither_arn_is_an_error() -> None:
    with pytest.raises(OnPremisesConfigError, match="neither iam_user_arn nor iam_session_arn"):
        parse_on_premises_config("region: eu-west-1\n", source=Path("/etc/onprem.yml"))


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("user", "region"),
        ("user", "aws_access_key_id"),
        ("user", "aws_secret_access_key"),
        ("session", "region"),
        ("session", "aws_credentials_file"),
    ],
)
def test_each_missing_key_is_named_with_the_file(kind: str, key: str, tmp_path: Path) -> None:
    text = USER_FILE if kind == "user" else session_file(tmp_path / "credentials")
    kept = "\n".join(line for line in text.splitlines() if key not in line) + "\n"
    path = tmp_path / "onprem.yml"
    path.write_text(kept, encoding="utf-8")
    with pytest.raises(OnPremisesConfigError) as caught:
        read_on_premises_config(path)
    assert caught.value.message.startswith(f"on-premises file {path} lacks {key}")
    assert no_secret_in(caught.value.message)


def test_an_empty_value_counts_as_missing() -> None:
    text = USER_FILE.replace(f":aws_secret_access_key: {SECRET}", ":aws_secret_access_key: ''")
    with pytest.raises(OnPremisesConfigError, match="lacks aws_secret_access_key"):
        parse_on_premises_config(text, source=Path("/etc/onprem.yml"))


def test_invalid_yaml_gives_the_place_but_not_the_line() -> None:
    text = f"region: eu-west-1\naws_secret_access_key: {SECRET}\n  bad: [indent\n"
    with pytest.raises(OnPremisesConfigError) as caught:
        parse_on_premises_config(text, source=Path("/etc/onprem.yml"))
    assert "is not valid YAML at line" in caught.value.message
    assert no_secret_in(caught.value.message)


def test_a_secret_that_yaml_reads_as_a_number_is_not_quoted_in_the_error() -> None:
    text = USER_FILE.replace(f":aws_secret_access_key: {SECRET}", ":aws_secret_access_key: 98765")
    with pytest.raises(OnPremisesConfigError) as caught:
        parse_on_premises_config(text, source=Path("/etc/onprem.yml"))
    assert "aws_secret_access_key must be text" in caught.value.message
    assert "98765" not in caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("- region\n", "must be a mapping"),
        (USER_FILE.replace(USER_ARN, "codedeploy-host"), "iam_user_arn 'codedeploy-host' is not"),
        (USER_FILE.replace("eu-west-1", "Ireland"), "region 'Ireland' is not a region name"),
        (
            f"region: eu-west-1\niam_session_arn: {SESSION_ARN}\naws_credentials_file: creds\n",
            "aws_credentials_file must be an absolute path",
        ),
        (
            f"region: eu-west-1\niam_session_arn: {SESSION_ARN}\n"
            'aws_credentials_file: "/etc/creds\\0x"\n',
            "aws_credentials_file must be an absolute path",
        ),
    ],
)
def test_invalid_files_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(OnPremisesConfigError, match=message):
        parse_on_premises_config(text, source=Path("/etc/onprem.yml"))


def test_errors_are_configuration_errors_and_name_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"on-premises file {tmp_path / 'no.yml'} does not"):
        read_on_premises_config(tmp_path / "no.yml")


def test_unknown_keys_are_warned_about_by_name() -> None:
    with capture_logs() as logs:
        parse_on_premises_config(USER_FILE + "colour: blue\n", source=Path("/etc/onprem.yml"))
    assert [(entry["event"], entry["key"]) for entry in logs] == [
        ("unknown on-premises key is ignored", "colour")
    ]
