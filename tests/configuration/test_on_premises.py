"""The on-premises file: both kinds, every missing key, and session credentials that rotate."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, MutableMapping

import botocore.session
import pytest
from botocore.credentials import CredentialResolver
from structlog.testing import capture_logs

from agent.configuration.model import ConfigError
from agent.configuration.on_premises import (
    CREDENTIALS_FILE_METHOD,
    IAM_SESSION,
    IAM_USER,
    IAM_USER_METHOD,
    OnPremisesConfigError,
    OnPremisesCredentialProvider,
    ReloadingFileCredentials,
    credentials_for,
    parse_on_premises_config,
    read_on_premises_config,
)

USER_ARN = "arn:aws:iam::123456789012:user/codedeploy-host"
SESSION_ARN = "arn:aws:sts::123456789012:assumed-role/CodeDeployHost/host-17"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_SECRET = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token-value"
ROTATED_SECRET = "rotatedSECRETrotatedSECRETrotatedSECRET0"
ROTATED_TOKEN = "FwoGZXIvYXdzROTATED-session-token-value"
ALL_SECRETS = (SECRET, SESSION_SECRET, SESSION_TOKEN, ROTATED_SECRET, ROTATED_TOKEN)

USER_FILE = f"""\
---
:region: eu-west-1
:iam_user_arn: {USER_ARN}
:aws_access_key_id: AKIAIOSFODNN7EXAMPLE
:aws_secret_access_key: {SECRET}
"""


def session_file(credentials_file: Path) -> str:
    return (
        f"region: us-gov-west-1\niam_session_arn: {SESSION_ARN}\n"
        f"aws_credentials_file: {credentials_file}\n"
    )


def write_credentials(
    path: Path, access_key: str, secret: str, token: str, *, bump_mtime: bool = False
) -> None:
    previous = path.stat().st_mtime_ns if path.exists() else None
    path.write_text(
        "[default]\n"
        f"aws_access_key_id = {access_key}\n"
        f"aws_secret_access_key = {secret}\n"
        f"aws_session_token = {token}\n",
        encoding="utf-8",
    )
    if bump_mtime and previous is not None:
        # A rotation within the file system's time granularity must still be seen.
        later = previous + 2_000_000_000
        os.utime(path, ns=(later, later))


def no_secret_in(text: str) -> bool:
    return not any(secret in text for secret in ALL_SECRETS)


def logged_text(logs: List[MutableMapping[str, Any]]) -> str:
    return "\n".join(repr(entry) for entry in logs)


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


def test_an_iam_user_gets_the_fixed_keys_of_the_file() -> None:
    config = parse_on_premises_config(USER_FILE, source=Path("/etc/onprem.yml"))
    with capture_logs() as logs:
        credentials = credentials_for(config)
    frozen = credentials.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        "AKIAIOSFODNN7EXAMPLE",
        SECRET,
        None,
    )
    assert credentials.method == IAM_USER_METHOD
    assert no_secret_in(logged_text(logs))
    assert USER_ARN in logged_text(logs)


def test_session_credentials_are_read_again_when_the_file_changes(tmp_path: Path) -> None:
    credentials_file = tmp_path / "credentials"
    write_credentials(credentials_file, "ASIAFIRSTKEY00000001", SESSION_SECRET, SESSION_TOKEN)
    onprem = tmp_path / "onprem.yml"
    onprem.write_text(session_file(credentials_file), encoding="utf-8")

    with capture_logs() as logs:
        credentials = credentials_for(read_on_premises_config(onprem))
        first = credentials.get_frozen_credentials()
        again = credentials.get_frozen_credentials()
        write_credentials(
            credentials_file, "ASIASECONDKEY0000002", ROTATED_SECRET, ROTATED_TOKEN, bump_mtime=True
        )
        rotated = credentials.get_frozen_credentials()

    assert isinstance(credentials, ReloadingFileCredentials)
    assert credentials.method == CREDENTIALS_FILE_METHOD
    assert (first.access_key, first.secret_key, first.token) == (
        "ASIAFIRSTKEY00000001",
        SESSION_SECRET,
        SESSION_TOKEN,
    )
    assert again == first
    assert (rotated.access_key, rotated.secret_key, rotated.token) == (
        "ASIASECONDKEY0000002",
        ROTATED_SECRET,
        ROTATED_TOKEN,
    )
    assert credentials.access_key == "ASIASECONDKEY0000002"
    events = [entry["event"] for entry in logs]
    assert events.count("on-premises credentials file changed; read it again") == 1
    assert no_secret_in(logged_text(logs))
    assert no_secret_in(repr(credentials))


def test_a_missing_credentials_file_is_a_clear_error(tmp_path: Path) -> None:
    onprem = tmp_path / "onprem.yml"
    onprem.write_text(session_file(tmp_path / "absent"), encoding="utf-8")
    config = read_on_premises_config(onprem)
    with pytest.raises(OnPremisesConfigError, match=f"credentials file {tmp_path / 'absent'} does"):
        credentials_for(config)


def test_a_credentials_file_that_disappears_is_an_error_until_it_is_back(tmp_path: Path) -> None:
    credentials_file = tmp_path / "credentials"
    write_credentials(credentials_file, "ASIAFIRSTKEY00000001", SESSION_SECRET, SESSION_TOKEN)
    credentials = ReloadingFileCredentials(credentials_file)
    credentials_file.unlink()
    with pytest.raises(OnPremisesConfigError, match="does not exist"):
        credentials.get_frozen_credentials()
    write_credentials(credentials_file, "ASIASECONDKEY0000002", ROTATED_SECRET, ROTATED_TOKEN)
    assert credentials.get_frozen_credentials().access_key == "ASIASECONDKEY0000002"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"aws_access_key_id = AKIA\naws_secret_access_key = {SESSION_SECRET}\n", "line 1"),
        (
            f"[default]\naws_secret_access_key = {SESSION_SECRET}\n[default]\nx = 1\n",
            "not in the shared credentials format",
        ),
        (
            f"[other]\naws_access_key_id = A\naws_secret_access_key = {SESSION_SECRET}\n",
            "no [default]",
        ),
        (f"[default]\naws_secret_access_key = {SESSION_SECRET}\n", "no aws_access_key_id"),
        ("[default]\naws_access_key_id = AKIA\n", "no aws_secret_access_key"),
    ],
)
def test_a_malformed_credentials_file_is_a_clear_error_without_its_content(
    tmp_path: Path, content: str, message: str
) -> None:
    credentials_file = tmp_path / "credentials"
    credentials_file.write_text(content, encoding="utf-8")
    with pytest.raises(OnPremisesConfigError) as caught:
        ReloadingFileCredentials(credentials_file)
    assert message in caught.value.message
    assert str(credentials_file) in caught.value.message
    assert no_secret_in(caught.value.message)


def test_a_credentials_file_that_turns_malformed_fails_then_recovers(tmp_path: Path) -> None:
    credentials_file = tmp_path / "credentials"
    write_credentials(credentials_file, "ASIAFIRSTKEY00000001", SESSION_SECRET, SESSION_TOKEN)
    credentials = ReloadingFileCredentials(credentials_file)
    credentials_file.write_text(f"aws_secret_access_key = {ROTATED_SECRET}\n", encoding="utf-8")
    with pytest.raises(OnPremisesConfigError) as caught:
        credentials.get_frozen_credentials()
    assert no_secret_in(caught.value.message)
    write_credentials(
        credentials_file, "ASIASECONDKEY0000002", ROTATED_SECRET, ROTATED_TOKEN, bump_mtime=True
    )
    assert credentials.get_frozen_credentials().token == ROTATED_TOKEN


def test_a_session_token_is_optional(tmp_path: Path) -> None:
    credentials_file = tmp_path / "credentials"
    credentials_file.write_text(
        f"[default]\naws_access_key_id = AKIAPLAIN\naws_secret_access_key = {SECRET}\n",
        encoding="utf-8",
    )
    assert ReloadingFileCredentials(credentials_file).get_frozen_credentials().token is None


class _SigningRecorder:
    """An STS stand-in on 127.0.0.1 that records how each request was signed."""

    RESPONSE = (
        b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        b"<GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/R/S</Arn>"
        b"<UserId>AROAEXAMPLE:S</UserId><Account>123456789012</Account>"
        b"</GetCallerIdentityResult><ResponseMetadata><RequestId>r-1</RequestId>"
        b"</ResponseMetadata></GetCallerIdentityResponse>"
    )

    def __init__(self) -> None:
        self.headers: List[Dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.headers.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(recorder.RESPONSE)))
                self.end_headers()
                self.wfile.write(recorder.RESPONSE)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def signing_recorder() -> Iterator[_SigningRecorder]:
    recorder = _SigningRecorder()
    thread = threading.Thread(
        target=recorder.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield recorder
    recorder.server.shutdown()
    recorder.server.server_close()
    thread.join()


def test_a_botocore_client_signs_with_the_rotated_keys(
    tmp_path: Path, signing_recorder: _SigningRecorder
) -> None:
    credentials_file = tmp_path / "credentials"
    write_credentials(credentials_file, "ASIAFIRSTKEY00000001", SESSION_SECRET, SESSION_TOKEN)
    onprem = tmp_path / "onprem.yml"
    onprem.write_text(session_file(credentials_file), encoding="utf-8")
    config = read_on_premises_config(onprem)

    session = botocore.session.Session()
    session.register_component(
        "credential_provider", CredentialResolver([OnPremisesCredentialProvider(config)])
    )
    client = session.create_client(
        "sts", region_name=config.region, endpoint_url=signing_recorder.url
    )
    client.get_caller_identity()
    write_credentials(
        credentials_file, "ASIASECONDKEY0000002", ROTATED_SECRET, ROTATED_TOKEN, bump_mtime=True
    )
    client.get_caller_identity()

    first, second = signing_recorder.headers
    assert "Credential=ASIAFIRSTKEY00000001/" in first["Authorization"]
    assert first["X-Amz-Security-Token"] == SESSION_TOKEN
    assert "Credential=ASIASECONDKEY0000002/" in second["Authorization"]
    assert second["X-Amz-Security-Token"] == ROTATED_TOKEN
