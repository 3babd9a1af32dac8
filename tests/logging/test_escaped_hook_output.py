"""A hook's carriage returns and terminal escapes reach the agent's own log, its stderr and
``status`` escaped, while the script logs keep the raw bytes (real hooks, real programs)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.command_service import CommandServiceStub, completion_of, queue_deployment
from tests.support.daemon import AgentDaemon
from tests.support.local_agent import LocalAgent
from tests.support.signing import SigningKit
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until

# The hook prints a carriage return and a clear-screen sequence, and leaves a background
# process whose name holds them too with its output open: that name is quoted in the
# failure message, which reaches the agent's log, stderr and status.
HOOK = (
    "printf 'progress 10%%\\rprogress 100%%\\033[2J\\n'\n"
    'python3 -c \'import os; os.execv("/bin/sleep", ["sleep\\r\\033[2J", "2"])\' &\n'
)
RAW = "sleep\r\x1b[2J"
ESCAPED = "sleep\\r\\x1b[2J"


def assert_no_terminal_controls(text: str) -> None:
    assert "\x1b" not in text and "\r" not in text, repr(text)


def assert_raw_in_script_log(script_log: Path) -> None:
    raw = script_log.read_bytes()
    assert b"progress 10%\rprogress 100%\x1b[2J" in raw


def test_codedeploy_local_escapes_what_it_prints(local_agent: LocalAgent, tmp_path: Path) -> None:
    revision = make_revision(
        tmp_path / "revision",
        tmp_path / "trace",
        tmp_path / "www",
        events=("BeforeInstall",),
        scripts={"BeforeInstall": HOOK},
    )
    result = local_agent.run("-l", str(revision), "-e", "BeforeInstall")
    assert result.returncode == 1, result.stderr
    assert ESCAPED in result.stderr
    assert_no_terminal_controls(result.stderr + result.stdout)
    [script_log] = local_agent.root.glob("*/*/logs/scripts.log")
    assert_raw_in_script_log(script_log)
    assert RAW.encode() in script_log.read_bytes()


def test_the_daemon_log_and_status_show_hook_output_escaped(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    revision = make_revision(
        agent_daemon.base / "revision",
        agent_daemon.trace,
        agent_daemon.base / "www",
        events=("BeforeInstall",),
        scripts={"BeforeInstall": HOOK},
    )
    ids = queue_deployment(
        stub,
        "d-ESCAPE001",
        kit.sign(spec_json("d-ESCAPE001", revision)),
        commands=("DownloadBundle", "BeforeInstall"),
    )
    process = agent_daemon.run()
    assert wait_until(lambda: bool(completion_of(stub, ids[1]))), process.stderr
    assert completion_of(stub, ids[1])[0]["CommandStatus"] == "Failed"
    status = agent_daemon.manage("status")
    assert ESCAPED in status.stdout, status.stdout
    assert_no_terminal_controls(status.stdout)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0

    log = agent_daemon.log_file.read_text(encoding="utf-8")
    assert ESCAPED in log
    assert_no_terminal_controls(log)
    [script_log] = agent_daemon.root.path.glob("*/*/logs/scripts.log")
    assert_raw_in_script_log(script_log)
    assert_raw_in_script_log(agent_daemon.root.deployments_log)
