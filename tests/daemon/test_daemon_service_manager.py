"""What a service manager and the installer see of ``codedeploy-agent``, without systemd:
readiness and status lines through a real ``NOTIFY_SOCKET`` (an AF_UNIX datagram socket
bound here), the wait for a host identity instead of an exit, the lines for the journal
on stderr, ``status --json`` and ``prepare``. Real daemon processes against the command
service stub on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
from pathlib import Path
from typing import Dict, Optional

import pytest

from agent import __version__
from tests.support.command_service import HOST, CommandServiceStub, completion_of, queue_deployment
from tests.support.daemon import AgentDaemon
from tests.support.notify_socket import NotifyReceiver
from tests.support.signing import SigningKit
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until

WAITING_STATUS = re.compile(
    r"STATUS=waiting for an identity: cannot determine the host identity: EC2 metadata is"
    r" disabled by AWS_EC2_METADATA_DISABLED .*; next try in \d+s$"
)
# The daemon under test has no identity from its environment.
NO_IDENTITY = {"AWS_HOST_IDENTIFIER": "", "AWS_REGION": ""}


def _service_env(notify: NotifyReceiver, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    return {"NOTIFY_SOCKET": str(notify.address), "WATCHDOG_USEC": "400000", **(extra or {})}


def _tries_logged(daemon: AgentDaemon) -> int:
    if not daemon.log_file.exists():
        return 0
    return daemon.log_file.read_text(encoding="utf-8").count("no host identity yet; trying again")


def _write_on_premises_file(daemon: AgentDaemon, region: str = "us-east-1") -> None:
    partial = daemon.base / "on-premises.partial"
    partial.write_text(
        f"region: {region}\niam_user_arn: {HOST}\naws_access_key_id: AKIDONPREMISES000001\n"
        "aws_secret_access_key: on-premises-secret-not-real\n",
        encoding="utf-8",
    )
    partial.replace(daemon.base / "no-onpremises.yml")


def test_without_an_identity_it_stays_up_says_why_and_polls_once_the_file_appears(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, notify: NotifyReceiver
) -> None:
    process = agent_daemon.run(_service_env(notify, NO_IDENTITY))
    # Ready first: systemd's start timeout must not end a daemon that waits.
    notify.receive_until("READY=1")
    notify.receive_until(WAITING_STATUS)
    # The watchdog is fed while it waits.
    assert notify.receive_count("WATCHDOG=1", notify.count("WATCHDOG=1") + 2)
    assert process.poll() is None
    assert stub.requests_for("PollHostCommand") == []
    status = agent_daemon.manage("status")
    assert status.returncode == 0, status
    assert re.search(r"waiting for an identity for \d+s: .*; next try in \d+s", status.stdout), (
        status.stdout
    )

    _write_on_premises_file(agent_daemon)
    notify.receive_until(f"STATUS=polling {stub.url} as {HOST}")
    assert wait_until(lambda: len(stub.requests_for("PollHostCommand")) > 0)
    assert {r.body["HostIdentifier"] for r in stub.requests_for("PollHostCommand")} == {HOST}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    notify.receive_until("STOPPING=1")

    log = agent_daemon.log_file.read_text(encoding="utf-8")
    assert _tries_logged(agent_daemon) >= 1
    assert "host identity found after waiting" in log
    assert "Traceback" not in log and "on-premises-secret-not-real" not in log
    # The journal (stderr) has the start, readiness, why it waited (once), what it polls
    # as whom once it can, and the stop; not the detailed log.
    assert process.stderr is not None
    journal = process.stderr.read().splitlines()
    assert journal[0].startswith(f"starting codedeploy-agent {__version__} (pid {process.pid})")
    assert f"log {agent_daemon.log_file}" in journal[0]
    assert str(agent_daemon.config) in journal[0]
    assert journal[1] == "ready"
    assert len([line for line in journal if line.startswith("waiting for an identity: ")]) == 1
    assert journal[-2:] == [f"polling {stub.url} as {HOST}", "stopped"], journal
    assert not any("host identity found" in line for line in journal)


def test_sigterm_ends_the_wait_for_an_identity_at_once_with_exit_0(
    agent_daemon: AgentDaemon, notify: NotifyReceiver
) -> None:
    process = agent_daemon.run(_service_env(notify, NO_IDENTITY))
    notify.receive_until(WAITING_STATUS)
    tries = _tries_logged(agent_daemon)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    # It did not try again before leaving.
    assert _tries_logged(agent_daemon) == tries
    notify.receive_until("STOPPING=1")
    assert not agent_daemon.pid_file.exists()
    assert process.stderr is not None and process.stderr.read().splitlines()[-1] == "stopped"
    report = json.loads(agent_daemon.manage("status", json_output=True).stdout)
    assert report["running"] is False and report["state"] == "not running"
    assert report["paths"] == {
        "log_dir": str(agent_daemon.base / "log"),
        "pid_dir": str(agent_daemon.base / "pid"),
        "root_dir": str(agent_daemon.root.path),
    }


def test_a_slow_metadata_service_keeps_the_watchdog_fed_and_sigterm_ends_the_try(
    agent_daemon: AgentDaemon, notify: NotifyReceiver
) -> None:
    # A metadata service that takes connections and never answers: one try lasts long.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        process = agent_daemon.run(
            _service_env(
                notify,
                {
                    **NO_IDENTITY,
                    "AWS_EC2_METADATA_DISABLED": "",
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint,
                },
            )
        )
        notify.receive_until("STATUS=waiting for an identity")
        # Pings while the first try hangs on metadata (no try has failed yet).
        assert notify.receive_count("WATCHDOG=1", notify.count("WATCHDOG=1") + 3)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    # The try never ended: SIGTERM ended the wait in the middle of it.
    assert _tries_logged(agent_daemon) == 0
    assert not any(m.startswith("STATUS=waiting for an identity: ") for m in notify.messages)


def test_a_configuration_error_found_with_the_identity_still_exits_1_with_one_line(
    agent_daemon: AgentDaemon, notify: NotifyReceiver
) -> None:
    # The identity is found, but this configuration cannot poll in its region: the
    # operator's to fix, not a wait.
    _write_on_premises_file(agent_daemon, region="eu-west-3")
    text = agent_daemon.config.read_text(encoding="utf-8")
    agent_daemon.config.write_text(
        "\n".join(line for line in text.splitlines() if "deploy_control_endpoint" not in line)
        + "\n:use_fips_mode: true\n",
        encoding="utf-8",
    )
    process = agent_daemon.run(_service_env(notify, NO_IDENTITY))
    assert process.wait(timeout=60) == 1
    assert process.stderr is not None
    lines = process.stderr.read().splitlines()
    assert lines[0].startswith("starting codedeploy-agent"), lines
    fatal = [line for line in lines if line.startswith("codedeploy-agent: ")]
    assert fatal == lines[-1:] and "use_fips_mode" in fatal[0], lines
    assert "Traceback" not in agent_daemon.log_file.read_text(encoding="utf-8")
    assert not agent_daemon.pid_file.exists()


def _status_json(daemon: AgentDaemon) -> Dict[str, object]:
    result = daemon.manage("status", json_output=True)
    assert result.returncode in (0, 3), result
    assert len(result.stdout.splitlines()) == 1, result.stdout
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    assert (result.returncode == 0) is report["running"]
    return report


def test_status_json_says_whether_it_runs_and_whether_a_command_runs_now(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    stopped = _status_json(agent_daemon)
    assert stopped["running"] is False and stopped["pid"] is None
    assert stopped["busy"] is False and stopped["version"] == __version__

    started, release = agent_daemon.base / "hook-started", agent_daemon.base / "release"
    revision = make_revision(
        agent_daemon.base / "revision",
        agent_daemon.trace,
        agent_daemon.base / "www",
        events=("BeforeInstall",),
        scripts={
            "BeforeInstall": f'touch "{started}"\nwhile [ ! -e "{release}" ]; do sleep 0.05; done'
        },
    )
    process = agent_daemon.run()
    assert wait_until(lambda: _status_json(agent_daemon)["state"] == "polling")
    idle = _status_json(agent_daemon)
    assert idle["pid"] == process.pid and idle["busy"] is False
    assert idle["running_version"] == __version__
    assert idle["line"] == f"polling {stub.url} as {HOST}"
    assert isinstance(idle["since"], float)

    ids = queue_deployment(
        stub,
        "d-JSONBUSY1",
        kit.sign(spec_json("d-JSONBUSY1", revision)),
        commands=("DownloadBundle", "BeforeInstall"),
    )
    assert wait_until(started.exists)
    busy = _status_json(agent_daemon)
    assert busy["busy"] is True and busy["state"] == "running"
    assert busy["current"] == "BeforeInstall of d-JSONBUSY1"
    assert busy["line"] == (
        "running BeforeInstall of d-JSONBUSY1 (1 of its commands done);"
        " last: DownloadBundle of d-JSONBUSY1: Succeeded"
    )
    release.touch()
    assert wait_until(lambda: bool(completion_of(stub, ids[1])))
    assert wait_until(lambda: _status_json(agent_daemon)["busy"] is False)
    assert _status_json(agent_daemon)["last"] == "BeforeInstall of d-JSONBUSY1: Succeeded"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


@pytest.mark.parametrize("verb", ["run", "stop", "prepare", "version"])
def test_json_with_another_verb_is_a_bad_command_line(agent_daemon: AgentDaemon, verb: str) -> None:
    result = agent_daemon.manage(verb, json_output=True)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"codedeploy-agent: --json goes with status only, not with {verb}"
        " (see codedeploy-agent --help)"
    ]


def _restricting_config(daemon: AgentDaemon, extra: str = "") -> Path:
    config = daemon.base / "restricting.yml"
    config.write_text(
        f":root_dir: '{daemon.base / 'state' / 'deployment-root'}'\n"
        f":log_dir: '{daemon.base / 'logs'}'\n"
        f":pid_dir: '{daemon.base / 'state' / '.run'}'\n"
        f":on_premises_config_file: '{daemon.base / 'onpremises.yml'}'\n"
        ":restrict_agent_dir_permissions: true\n"
        ":restrict_log_dir_permissions: true\n" + extra,
        encoding="utf-8",
    )
    return config


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_prepare_checks_the_configuration_and_makes_the_folders_with_their_modes(
    agent_daemon: AgentDaemon,
) -> None:
    config = _restricting_config(agent_daemon, ":frobnicate: 1\n")
    old_umask = os.umask(0o022)
    try:
        result = agent_daemon.manage("prepare", config=config)
    finally:
        os.umask(old_umask)
    assert result.returncode == 0, result
    [line] = result.stdout.splitlines()
    assert line.startswith(f"codedeploy-agent: configuration {config} is valid;")
    assert "no on-premises file" in line
    assert "frobnicate" in result.stderr and "Traceback" not in result.stderr
    root = agent_daemon.base / "state" / "deployment-root"
    assert _mode(root) == 0o711
    assert _mode(root / "ongoing-deployment") == 0o700
    assert _mode(root / "deployment-instructions") == 0o700
    assert _mode(root / "deployment-logs") == 0o750
    assert _mode(agent_daemon.base / "state" / ".run") == 0o700
    assert _mode(agent_daemon.base / "logs") == 0o750
    # Again: nothing to do, the same answer.
    again = agent_daemon.manage("prepare", config=config)
    assert again.returncode == 0 and again.stdout == result.stdout


def test_prepare_without_restrictions_makes_the_three_folders(agent_daemon: AgentDaemon) -> None:
    result = agent_daemon.manage("prepare")
    assert result.returncode == 0, result
    for folder in ("log", "pid", "deployment-root"):
        assert (agent_daemon.base / folder).is_dir(), folder
    assert f"deployment root {agent_daemon.root.path}" in result.stdout


@pytest.mark.parametrize(
    ("extra", "on_premises", "named"),
    [
        (":max_revisions: 0\n", None, "max_revisions"),
        (":deployment_signer_ca_file: '/nonexistent/ca.pem'\n", None, "/nonexistent/ca.pem"),
        ("", "region: us-east-1\n", "onpremises.yml"),
    ],
)
def test_prepare_refuses_a_bad_configuration_in_one_line_and_makes_nothing(
    agent_daemon: AgentDaemon, extra: str, on_premises: Optional[str], named: str
) -> None:
    config = _restricting_config(agent_daemon, extra)
    if on_premises is not None:
        (agent_daemon.base / "onpremises.yml").write_text(on_premises, encoding="utf-8")
    result = agent_daemon.manage("prepare", config=config)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith("codedeploy-agent: ") and named in line
    assert result.stdout == ""
    assert not (agent_daemon.base / "state").exists()
    assert not (agent_daemon.base / "logs").exists()


def test_run_in_a_pipe_has_no_log_lines_on_stderr_only_the_journal_lines(
    agent_daemon: AgentDaemon, stub: CommandServiceStub
) -> None:
    process = agent_daemon.run()
    assert wait_until(lambda: len(stub.requests_for("PollHostCommand")) > 0)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0
    assert out == ""
    lines = err.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["starting", "ready", "polling", "stopped"]
    assert "agent starting" not in err  # the log line stays in the log file
    assert "agent starting" in agent_daemon.log_file.read_text(encoding="utf-8")
