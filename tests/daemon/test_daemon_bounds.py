"""Numbers the daemon reads from its surroundings are bounded: real daemon processes."""

from __future__ import annotations

import signal

import pytest

from agent.daemon.systemd_notify import watchdog_interval_seconds
from tests.support.command_service import CommandServiceStub
from tests.support.daemon import AgentDaemon
from tests.support.waiting import wait_until


@pytest.mark.parametrize("content", ["9" * 30, "4194305", "0"])
def test_a_pid_file_holding_no_possible_pid_means_not_running(
    agent_daemon: AgentDaemon, content: str
) -> None:
    agent_daemon.pid_file.parent.mkdir(parents=True, exist_ok=True)
    agent_daemon.pid_file.write_text(content, encoding="ascii")
    status = agent_daemon.manage("status")
    assert status.returncode == 3, status.stderr
    assert "is not running" in status.stdout
    assert "Traceback" not in status.stderr
    stop = agent_daemon.manage("stop")
    assert stop.returncode == 0, stop.stderr
    assert "Traceback" not in stop.stderr


def test_an_absurd_watchdog_timeout_neither_crashes_nor_spins(
    agent_daemon: AgentDaemon, stub: CommandServiceStub
) -> None:
    process = agent_daemon.run({"WATCHDOG_USEC": "1" + "0" * 30})
    assert wait_until(lambda: len(stub.requests_for("PollHostCommand")) > 0)
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")


def test_watchdog_pings_stay_between_a_tenth_of_a_second_and_ten_minutes() -> None:
    assert watchdog_interval_seconds({"WATCHDOG_USEC": "1"}, 1) == 0.1
    assert watchdog_interval_seconds({"WATCHDOG_USEC": "300000"}, 1) == 0.15
    assert watchdog_interval_seconds({"WATCHDOG_USEC": "9" * 400}, 1) is None
    assert watchdog_interval_seconds({"WATCHDOG_USEC": "9" * 15}, 1) == 600.0
