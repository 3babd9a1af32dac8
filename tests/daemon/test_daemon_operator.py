"""What an operator meets at the command line of both programs, as real processes:
``--version``, ``--help``, one-line refusals, the daemon's log on a terminal, durations in
``status``, and a log folder that cannot be made."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from typing import List

import pytest

from agent import __version__
from tests.support.checkout import REPO
from tests.support.command_service import CommandServiceStub, Fault, completion_of, queue_deployment
from tests.support.daemon import AgentDaemon
from tests.support.signing import SigningKit
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until


def program(name: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    module = "agent.daemon" if name == "codedeploy-agent" else "agent.local_deployment"
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_version_flag_prints_the_version_and_exits_0() -> None:
    for name in ("codedeploy-agent", "codedeploy-local"):
        result = program(name, "--version")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{name} {__version__}"


def test_help_explains_verbs_exit_statuses_and_logs() -> None:
    daemon = program("codedeploy-agent", "--help")
    assert daemon.returncode == 0
    for verb in ("run", "start", "stop", "restart", "status", "prepare", "version"):
        assert re.search(rf"^  {verb} ", daemon.stdout, re.M), verb
    assert "with --json" in daemon.stdout
    assert (
        "exit statuses:" in daemon.stdout
        and "3  status: the daemon is not running" in daemon.stdout
    )
    assert "codedeploy-agent.log" in daemon.stdout and "scripts.log" in daemon.stdout

    local = program("codedeploy-local", "--help")
    assert local.returncode == 0
    assert "exit statuses:" in local.stdout
    assert "130 Ctrl-C" in local.stdout and "scripts.log" in local.stdout
    assert "codedeploy-local.log" in local.stdout


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("codedeploy-agent", ["--bogus", "status"]),
        ("codedeploy-agent", ["frobnicate"]),
        ("codedeploy-agent", []),
        ("codedeploy-local", ["--bogus"]),
        ("codedeploy-local", ["-l"]),
    ],
)
def test_a_bad_command_line_is_one_line_and_exit_2(name: str, arguments: List[str]) -> None:
    result = program(name, *arguments)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{name}: ") and f"see {name} --help" in lines[0]


def test_run_in_a_terminal_shows_its_log_lines_there(agent_daemon: AgentDaemon) -> None:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        agent_daemon.command("run"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=agent_daemon.environment(),
        cwd=agent_daemon.base,
        close_fds=True,
    )
    agent_daemon.processes.append(process)  # type: ignore[arg-type]
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 60
    try:
        while b"host identity" not in shown and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    shown += os.read(leader, 65536)
                except OSError:
                    break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        os.close(leader)
    text = shown.decode("utf-8", "replace")
    assert "agent starting" in text and "host identity" in text
    # The journal's lines are left out where the whole log is shown: nothing twice.
    assert "starting codedeploy-agent" not in text
    # The same lines went to the log file.
    assert "host identity" in agent_daemon.log_file.read_text(encoding="utf-8")


def test_status_tells_how_long_a_command_has_been_running(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    started = agent_daemon.base / "hook-started"
    revision = make_revision(
        agent_daemon.base / "revision",
        agent_daemon.trace,
        agent_daemon.base / "www",
        events=("BeforeInstall",),
        scripts={"BeforeInstall": f'touch "{started}"\nsleep 3'},
    )
    ids = queue_deployment(
        stub,
        "d-DURATION1",
        kit.sign(spec_json("d-DURATION1", revision)),
        commands=("DownloadBundle", "BeforeInstall"),
    )
    process = agent_daemon.run()
    assert wait_until(started.exists), process.stderr
    status = agent_daemon.manage("status")
    assert status.returncode == 0
    assert re.search(
        r"running BeforeInstall of d-DURATION1 \(1 of its commands done\) for \d+s", status.stdout
    ), status.stdout
    assert wait_until(lambda: bool(completion_of(stub, ids[1])))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def test_status_tells_how_long_it_waits_after_an_error_and_when_it_tries_again(
    agent_daemon: AgentDaemon, stub: CommandServiceStub
) -> None:
    text = agent_daemon.config.read_text(encoding="utf-8")
    agent_daemon.config.write_text(
        text.replace(":wait_after_error: 0.05", ":wait_after_error: 60"), encoding="utf-8"
    )
    stub.inject_fault("PollHostCommand", Fault.SERVER_ERROR, times=20)
    process = agent_daemon.run()
    shown: List[str] = []

    def waiting() -> bool:
        shown.append(agent_daemon.manage("status").stdout)
        return "backing off after an error" in shown[-1]

    assert wait_until(waiting), (shown[-1:], process.stderr)
    assert re.search(
        r"backing off after an error for \d+s: .*ServerException.*; next try in \d+s", shown[-1]
    ), shown[-1]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def test_start_with_a_log_folder_that_cannot_be_made_names_it(agent_daemon: AgentDaemon) -> None:
    blocker = agent_daemon.base / "a-file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    text = agent_daemon.config.read_text(encoding="utf-8")
    agent_daemon.config.write_text(
        text.replace(f":log_dir: '{agent_daemon.base / 'log'}'", f":log_dir: '{blocker / 'log'}'"),
        encoding="utf-8",
    )
    for verb in ("start", "run"):
        result = agent_daemon.manage(verb)
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(blocker / "log") in lines[0]
    assert not agent_daemon.pid_file.exists()
