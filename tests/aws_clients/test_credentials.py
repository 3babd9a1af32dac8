"""The credentials of an on-premises host: an IAM user's fixed keys, an IAM session's
credentials file read again whenever a rotation rewrites it, and a botocore client that
signs with the rotated keys."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from structlog.testing import capture_logs

from agent.aws_clients.clients import new_botocore_session
from agent.aws_clients.credentials import (
    CREDENTIALS_FILE_METHOD,
    IAM_USER_METHOD,
    ReloadingFileCredentials,
    credentials_for,
)
from agent.configuration.on_premises import (
    OnPremisesConfigError,
    parse_on_premises_config,
    read_on_premises_config,
)
from tests.support.on_premises_files import (
    ROTATED_SECRET,
    ROTATED_TOKEN,
    SECRET,
    SESSION_SECRET,
    SESSION_TOKEN,
    USER_ARN,
    USER_FILE,
    logged_text,
    no_secret_in,
    session_file,
    write_credentials,
)


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

    # The session every client of the agent is built on, with the host's credentials.
    session = new_botocore_session(credentials_for(config))
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
