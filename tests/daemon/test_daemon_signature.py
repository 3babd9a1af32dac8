"""How the daemon verifies signed specifications, as a real process against the stub.

With no ``deployment_signer_ca_file`` (the default) a specification signed by any CA is
accepted when intact, and its signer is logged for pinning; a configured CA file that
cannot be used stops the start; ``system`` trusts only the host's CA store.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Optional

import pytest

from tests.support.command_service import CommandServiceStub, completion_of, queue_deployment
from tests.support.daemon import AgentDaemon
from tests.support.signing import (
    SigningKit,
    counting_openssl_wrapper,
    make_signing_kit,
    openssl_x509_fields,
    replace_in_pkcs7,
)
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until


def configure_signer_ca(daemon: AgentDaemon, value: Optional[str]) -> None:
    """Replace the daemon's ``deployment_signer_ca_file`` line (None: no such line)."""
    lines = [
        line
        for line in daemon.config.read_text(encoding="utf-8").splitlines()
        if not line.startswith(":deployment_signer_ca_file:")
    ]
    if value is not None:
        lines.append(f":deployment_signer_ca_file: '{value}'")
    daemon.config.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def stranger(tmp_path_factory: pytest.TempPathFactory) -> SigningKit:
    """A CA and signer the host was never told about, with a name nobody configured."""
    return make_signing_kit(
        tmp_path_factory.mktemp("stranger"),
        signer_name="codedeploy-signer-somewhere.example.net",
        root_common_name="Unconfigured Root CA",
    )


def test_without_a_ca_file_an_intact_spec_from_any_ca_runs_and_its_signer_is_logged(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, stranger: SigningKit
) -> None:
    configure_signer_ca(agent_daemon, None)
    revision = make_revision(
        agent_daemon.base / "revision", agent_daemon.trace, agent_daemon.base / "www"
    )
    ids = queue_deployment(
        stub,
        "d-ANYCA0001",
        stranger.sign(spec_json("d-ANYCA0001", revision)),
        commands=("DownloadBundle", "Install"),
    )
    process = agent_daemon.run()
    assert wait_until(lambda: all(completion_of(stub, i) for i in ids)), process.stderr
    assert [completion_of(stub, i)[0]["CommandStatus"] for i in ids] == ["Succeeded"] * 2
    assert (agent_daemon.base / "www" / "index.html").exists()

    status = agent_daemon.manage("status")
    assert "deployment specifications: integrity only, signer logged" in status.stdout
    assert "CA file: none configured" in status.stdout
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0

    log = agent_daemon.log_file.read_text(encoding="utf-8")
    starting = next(line for line in log.splitlines() if "agent starting" in line)
    assert "spec_verification='integrity only, signer logged'" in starting
    assert "signer_ca_file='none configured'" in starting
    signed = [line for line in log.splitlines() if "deployment specification signed by" in line]
    assert len(signed) == 2  # once per command
    assert (
        "signer_sha256="
        + openssl_x509_fields(stranger.signer.certificate, "-fingerprint", "-sha256").split("=", 1)[
            1
        ]
        in signed[0]
    )
    assert "CN=codedeploy-signer-somewhere.example.net" in signed[0]
    assert "signer_issuer='C=US, O=CodeDeploy Test, CN=Unconfigured Root CA'" in signed[0]
    assert "signer_not_after=" in signed[0] and "deployment_id=d-ANYCA0001" in signed[0]


def test_without_a_ca_file_an_altered_spec_is_refused(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, stranger: SigningKit
) -> None:
    configure_signer_ca(agent_daemon, None)
    revision = make_revision(
        agent_daemon.base / "revision", agent_daemon.trace, agent_daemon.base / "www"
    )
    signed = stranger.sign(spec_json("d-ALTERED01", revision))
    ids = queue_deployment(
        stub,
        "d-ALTERED01",
        replace_in_pkcs7(signed, b'"group-name"', b'"group-evil"'),
        commands=("DownloadBundle",),
    )
    process = agent_daemon.run()
    assert wait_until(lambda: bool(completion_of(stub, ids[0]))), process.stderr
    [completion] = completion_of(stub, ids[0])
    assert completion["CommandStatus"] == "Failed"
    payload = completion["payload"]
    assert isinstance(payload, dict)
    assert "does not match its content" in str(payload["message"])
    assert not agent_daemon.trace.exists()


def test_a_configured_ca_file_that_is_missing_stops_the_start_in_one_line(
    agent_daemon: AgentDaemon,
) -> None:
    absent = agent_daemon.base / "certs" / "my-ca.pem"
    configure_signer_ca(agent_daemon, str(absent))
    for verb in ("run", "start"):
        result = agent_daemon.manage(verb)
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(absent) in lines[0] and "does not exist" in lines[0]
    assert not agent_daemon.pid_file.exists()

    unreadable = agent_daemon.base / "a-folder.pem"
    unreadable.mkdir()
    configure_signer_ca(agent_daemon, str(unreadable))
    result = agent_daemon.manage("run")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"{unreadable} cannot be read" in result.stderr


def test_a_configured_ca_file_is_named_in_the_start_up_line_and_status(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    process = agent_daemon.run()
    assert wait_until(lambda: len(stub.requests_for("PollHostCommand")) > 0), process.stderr
    status = agent_daemon.manage("status")
    assert status.returncode == 0
    assert f"chain checked against {kit.ca_bundle}, any signer name" in status.stdout
    assert f"CA file: {kit.ca_bundle} (readable)" in status.stdout
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    log = agent_daemon.log_file.read_text(encoding="utf-8")
    assert f"signer_ca_file='{kit.ca_bundle} (readable)'" in log


def test_system_store_without_the_test_ca_refuses_the_spec(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit, stranger: SigningKit
) -> None:
    configure_signer_ca(agent_daemon, "system")
    empty = agent_daemon.base / "no-certs"
    empty.mkdir()
    revision = make_revision(
        agent_daemon.base / "revision", agent_daemon.trace, agent_daemon.base / "www"
    )
    ids = queue_deployment(
        stub,
        "d-SYSTEM001",
        kit.sign(spec_json("d-SYSTEM001", revision)),
        commands=("DownloadBundle",),
    )
    # The host's store, as openssl finds it, holds only another CA.
    process = agent_daemon.run(
        {"SSL_CERT_FILE": str(stranger.ca_bundle), "SSL_CERT_DIR": str(empty)}
    )
    assert wait_until(lambda: bool(completion_of(stub, ids[0]))), process.stderr
    [completion] = completion_of(stub, ids[0])
    assert completion["CommandStatus"] == "Failed"
    payload = completion["payload"]
    assert isinstance(payload, dict)
    assert "not trusted by the CAs in the system CA store" in str(payload["message"])
    status = agent_daemon.manage("status")
    assert "chain checked against the system CA store" in status.stdout


def test_without_openssl_the_daemon_does_not_start(
    agent_daemon: AgentDaemon, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    result = subprocess.run(
        agent_daemon.command("run"),
        env={**agent_daemon.environment(), "PATH": str(empty)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "openssl" in lines[0] and "not on PATH" in lines[0]
    assert not agent_daemon.pid_file.exists()


def test_each_deployment_s_specification_is_verified_by_openssl_once(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit, tmp_path: Path
) -> None:
    # Every command of a deployment fetches the same signed specification.
    wrapper_dir, runs = counting_openssl_wrapper(tmp_path)
    revision = make_revision(
        agent_daemon.base / "revision", agent_daemon.trace, agent_daemon.base / "www"
    )
    ids = []
    for deployment in ("d-ONCE00001", "d-ONCE00002"):
        ids += queue_deployment(
            stub,
            deployment,
            kit.sign(spec_json(deployment, revision)),
            commands=("DownloadBundle", "Install", "ApplicationStart"),
        )
    path = f"{wrapper_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    process = agent_daemon.run({"PATH": path})
    assert wait_until(lambda: all(completion_of(stub, i) for i in ids)), process.stderr
    assert [completion_of(stub, i)[0]["CommandStatus"] for i in ids] == ["Succeeded"] * 6
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0

    verifications = [line for line in runs.read_text(encoding="ascii").split() if line == "smime"]
    assert len(verifications) == 2
