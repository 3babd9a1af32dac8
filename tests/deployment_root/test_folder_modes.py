"""``restrict_agent_dir_permissions`` and ``restrict_log_dir_permissions``, applied at the
start of the real programs; without them the folders keep the umask's modes."""

from __future__ import annotations

import signal
import stat
from pathlib import Path

from tests.support.command_service import CommandServiceStub
from tests.support.daemon import AgentDaemon
from tests.support.local_agent import LocalAgent
from tests.support.traced_revisions import make_revision
from tests.support.waiting import wait_until


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_daemon_restricts_its_folders_and_log_files_when_asked(
    agent_daemon: AgentDaemon, stub: CommandServiceStub
) -> None:
    log_dir = agent_daemon.log_file.parent
    log_dir.mkdir(parents=True)
    log_dir.chmod(0o755)
    old_log = log_dir / "codedeploy-agent.log.1"
    old_log.write_text("old\n", encoding="utf-8")
    old_log.chmod(0o644)
    with agent_daemon.config.open("a", encoding="utf-8") as config:
        config.write(":restrict_agent_dir_permissions: true\n:restrict_log_dir_permissions: true\n")
    process = agent_daemon.run()
    assert wait_until(lambda: len(stub.requests_for("PollHostCommand")) > 0), process.stderr
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0

    root = agent_daemon.root
    assert mode(root.path) == 0o711
    assert mode(root.ongoing_dir) == 0o700
    assert mode(root.instructions_dir) == 0o700
    assert mode(root.deployments_log.parent) == 0o750
    assert mode(agent_daemon.pid_file.parent) == 0o700
    assert mode(log_dir) == 0o750
    assert mode(agent_daemon.log_file) == 0o640 and mode(old_log) == 0o640
    assert "restrict_" not in agent_daemon.log_file.read_text(encoding="utf-8")  # no warning


def test_without_the_keys_the_folders_keep_their_modes(
    agent_daemon: AgentDaemon, stub: CommandServiceStub
) -> None:
    agent_daemon.root.path.mkdir(parents=True)
    agent_daemon.root.path.chmod(0o755)
    process = agent_daemon.run()
    assert wait_until(lambda: len(stub.requests_for("PollHostCommand")) > 0), process.stderr
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert mode(agent_daemon.root.path) == 0o755


def test_codedeploy_local_restricts_the_deployment_root(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    with local_agent.config.open("a", encoding="utf-8") as config:
        config.write(":restrict_agent_dir_permissions: true\n")
    revision = make_revision(tmp_path / "revision", tmp_path / "trace", tmp_path / "www")
    result = local_agent.run("-l", str(revision))
    assert result.returncode == 0, result.stderr
    root = local_agent.root
    assert mode(root) == 0o711
    assert mode(root / "deployment-instructions") == 0o700
    assert mode(root / "deployment-logs") == 0o750


def test_an_unsupported_key_is_warned_about_once_at_start_up(
    agent_daemon: AgentDaemon, stub: CommandServiceStub
) -> None:
    with agent_daemon.config.open("a", encoding="utf-8") as config:
        config.write(":enable_archive_reuse: true\n")
    process = agent_daemon.run()
    assert wait_until(lambda: len(stub.requests_for("PollHostCommand")) > 1), process.stderr
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    warnings = [
        line
        for line in agent_daemon.log_file.read_text(encoding="utf-8").splitlines()
        if "enable_archive_reuse" in line
    ]
    assert len(warnings) == 1 and "[warning" in warnings[0] and "not supported" in warnings[0]
