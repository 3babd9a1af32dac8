"""The ``codedeploy-server`` program: the key commands, one-line refusals, and ``run``
stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from agent.configuration.on_premises import parse_on_premises_config
from tests.support.server import SERVER_PROGRAM, ServerFiles, ServerProcess, server_environment
from tests.support.signing import localhost_tls_certificate


def _every_byte_under(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file())


def test_keys_are_issued_listed_and_revoked_and_no_secret_is_kept_in_clear(tmp_path: Path) -> None:
    files = ServerFiles(tmp_path)
    files.write_config("account_id: '123456789012'\nregion: eu-west-3\n")
    operator = files.create_operator("alice")
    assert set(operator) == {"AccessKeyId", "SecretAccessKey", "Region"}
    assert operator["Region"] == "eu-west-3"
    host_text = files.admin("keys", "create-host", "web-1").stdout
    host = parse_on_premises_config(host_text, source=tmp_path / "codedeploy.onpremises.yml")
    assert host.iam_user_arn == "arn:aws:iam::123456789012:user/codedeploy-hosts/web-1"
    assert host.region == "eu-west-3"
    host_secret = yaml.safe_load(host_text)["aws_secret_access_key"]
    listing = files.admin("keys", "list").stdout
    assert operator["AccessKeyId"] in listing and "alice" in listing and "web-1" in listing
    revoked = files.admin("keys", "revoke", operator["AccessKeyId"]).stdout
    assert revoked.startswith(f"revoked {operator['AccessKeyId']}")
    listed = json.loads(files.admin("keys", "list", "--json").stdout)
    assert [(k["Kind"], k["Name"], k["Revoked"] is not None) for k in listed] == [
        ("operator", "alice", True),
        ("host", "web-1", False),
    ]
    everything = (
        _every_byte_under(files.data_dir) + files.admin("keys", "list", "--json").stdout.encode()
    )
    for secret in (operator["SecretAccessKey"], host_secret):
        assert secret.encode() not in everything
    assert files.master_key.stat().st_mode & 0o777 == 0o600


def test_an_unknown_key_id_is_one_line_and_exit_1(tmp_path: Path) -> None:
    files = ServerFiles(tmp_path)
    files.write_config()
    completed = files.admin("keys", "revoke", "CDSKNOSUCHKEY0000000", check=False)
    assert (completed.returncode, completed.stderr) == (
        1,
        "codedeploy-server: no access key 'CDSKNOSUCHKEY0000000' (see keys list)\n",
    )


@pytest.mark.parametrize(
    ("config", "arguments", "message"),
    [
        ("listen: nowhere\n", ["run"], "listen must be HOST:PORT"),
        ("colour: blue\n", ["keys", "list"], "unknown key 'colour'"),
        ("", ["run", "--listen", "127.0.0.1:99999"], "--listen must be HOST:PORT"),
        ("region: [\n", ["signer"], "is not valid YAML at line"),
        ("tls_key_file: /x.pem\n", ["run"], "tls_certificate_file and tls_key_file go together"),
    ],
)
def test_a_bad_configuration_or_flag_is_one_line_and_exit_2(
    tmp_path: Path, config: str, arguments: list[str], message: str
) -> None:
    files = ServerFiles(tmp_path)
    files.write_config(config)
    completed = files.admin(*arguments, check=False)
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_master_key_inside_the_data_folder_is_refused(tmp_path: Path) -> None:
    completed = subprocess.run(
        [SERVER_PROGRAM, "--config", "/nonexistent/none.yml", "--data-dir", str(tmp_path), "keys", "list"],
        capture_output=True, text=True, env=server_environment(), check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert (
        completed.stderr
        == "codedeploy-server: configuration file /nonexistent/none.yml does not exist\n"
    )
    files = ServerFiles(tmp_path)
    files.config.write_text(
        f"data_dir: {files.data_dir}\nmaster_key_file: {files.data_dir / 'master.key'}\n",
        encoding="utf-8",
    )
    completed = files.admin("keys", "list", check=False)
    assert completed.returncode == 2 and "is inside the data folder" in completed.stderr


def test_run_serves_health_and_stops_on_sigterm_with_status_0(tmp_path: Path) -> None:
    files = ServerFiles(tmp_path)
    files.write_config()
    server = ServerProcess(files).start()
    try:
        with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ok"}
    finally:
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        status = server.process.wait(30)
    assert status == 0
    assert "Traceback" not in files.log.read_text()


def test_run_serves_https_with_the_configured_certificate(tmp_path: Path) -> None:
    certificate, key = localhost_tls_certificate(tmp_path)
    files = ServerFiles(tmp_path)
    files.write_config(f"tls_certificate_file: {certificate}\ntls_key_file: {key}\n")
    with ServerProcess(files) as server:
        assert server.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(certificate))
        with urllib.request.urlopen(
            server.url + "/health", timeout=10, context=context
        ) as response:
            assert json.loads(response.read()) == {"status": "ok"}


def test_check_config_reports_what_run_would_use_and_changes_nothing(tmp_path: Path) -> None:
    files = ServerFiles(tmp_path)
    files.write_config(
        "listen: 127.0.0.1:9555\n", database_url="postgresql://ops:s3cret@db.example:5432/cd"
    )
    completed = files.admin("check-config")
    assert json.loads(completed.stdout) == {
        "config_file": str(files.config),
        "listen": "127.0.0.1:9555",
        "data_dir": str(files.data_dir),
        "database": "postgresql://ops:***@db.example:5432/cd",
        "tls": False,
    }
    # Nothing made: no data folder, no master key, no signer; the database not reached.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["server.yml"]


def test_check_config_refuses_a_bad_key_and_a_tls_pair_that_does_not_load(tmp_path: Path) -> None:
    files = ServerFiles(tmp_path)
    files.write_config("no_such_key: 1\n")
    completed = files.admin("check-config", check=False)
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and "unknown key 'no_such_key'" in completed.stderr
    certificate, _ = localhost_tls_certificate(tmp_path)
    files.write_config(f"tls_certificate_file: {certificate}\ntls_key_file: {certificate}\n")
    completed = files.admin("check-config", check=False)
    assert completed.returncode == 1 and completed.stdout == ""
    assert completed.stderr.count("\n") == 1 and "cannot be used" in completed.stderr
    assert "Traceback" not in completed.stderr
