"""``codedeploy-agent`` as a real process against the command service stub on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from agent.command_poller.ongoing import read_ongoing_records_from_disk
from agent.daemon.pidfile import process_is_running, read_pid_file
from agent.lifecycle_event.process_tree import (
    create_hook_cgroup,
    find_unified_cgroup_mount,
    own_cgroup_v2_path,
)
from tests.support.command_service import HOST, CommandServiceStub, completion_of, queue_deployment
from tests.support.daemon import AgentDaemon
from tests.support.notify_socket import NotifyReceiver
from tests.support.processes import interrupt_during_imports, kill_marked, pids_with_marker
from tests.support.signing import SigningKit
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until


@pytest.fixture
def daemon(agent_daemon: AgentDaemon) -> AgentDaemon:
    """The shared daemon fixture (tests/conftest.py), under this file's shorter name."""
    return agent_daemon


def test_sigterm_during_a_hook_lets_it_finish_reports_it_and_exits_0(
    daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    started, finished = daemon.base / "hook-started", daemon.base / "hook-finished"
    revision = make_revision(
        daemon.base / "revision",
        daemon.trace,
        daemon.base / "www",
        events=("BeforeInstall",),
        scripts={"BeforeInstall": f'touch "{started}"\nsleep 2\ntouch "{finished}"'},
    )
    ids = queue_deployment(
        stub,
        "d-SIGTERM01",
        kit.sign(spec_json("d-SIGTERM01", revision)),
        commands=("DownloadBundle", "BeforeInstall"),
    )
    process = daemon.run()
    assert wait_until(started.exists), process.stderr
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert finished.exists()
    [completion] = completion_of(stub, ids[1])
    assert completion["CommandStatus"] == "Succeeded"
    assert read_ongoing_records_from_disk(daemon.root) == []
    assert not daemon.pid_file.exists()
    log = daemon.log_file.read_text(encoding="utf-8")
    assert "agent stopped" in log
    assert "deployment_id=d-SIGTERM01" in log
    assert "not-a-real-secret" not in log


def test_sigkill_during_a_hook_is_reported_after_restart_and_the_next_deployment_works(
    daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    started = daemon.base / "hook-started"
    revision = make_revision(
        daemon.base / "revision",
        daemon.trace,
        daemon.base / "www",
        events=("BeforeInstall",),
        scripts={"BeforeInstall": f'touch "{started}"\nsleep 1'},
    )
    killed = queue_deployment(
        stub,
        "d-KILLED001",
        kit.sign(spec_json("d-KILLED001", revision)),
        commands=("DownloadBundle", "BeforeInstall"),
    )
    process = daemon.run()
    assert wait_until(started.exists)
    process.kill()
    process.wait(timeout=30)
    assert [r.host_command_identifier for r in read_ongoing_records_from_disk(daemon.root)] == [
        killed[1]
    ]
    assert completion_of(stub, killed[1]) == []

    restarted = daemon.run()
    assert wait_until(lambda: len(completion_of(stub, killed[1])) == 1)
    [report] = completion_of(stub, killed[1])
    assert report["CommandStatus"] == "Failed"
    payload = report["payload"]
    assert isinstance(payload, dict) and payload["error_code"] == 7
    # The record goes right after the service has the report: wait for it, do not race it.
    assert wait_until(lambda: read_ongoing_records_from_disk(daemon.root) == [])

    ids = queue_deployment(
        stub,
        "d-AFTER0001",
        kit.sign(spec_json("d-AFTER0001", revision)),
        commands=("DownloadBundle", "BeforeInstall", "Install"),
    )
    assert wait_until(lambda: all(completion_of(stub, i) for i in ids))
    assert [completion_of(stub, i)[0]["CommandStatus"] for i in ids] == ["Succeeded"] * 3
    assert (daemon.base / "www" / "index.html").exists()
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(timeout=60) == 0
    # The killed command itself was never run again.
    assert daemon.trace.read_text(encoding="utf-8").splitlines() == [
        "BeforeInstall d-KILLED001",
        "BeforeInstall d-AFTER0001",
    ]


def test_start_status_and_stop_manage_the_daemon_through_its_pid_file(
    daemon: AgentDaemon, stub: CommandServiceStub
) -> None:
    before = daemon.manage("status")
    assert before.returncode == 3, before
    assert "is not running" in before.stdout

    started = daemon.manage("start")
    assert started.returncode == 0, started.stderr
    pid = read_pid_file(daemon.pid_file)
    assert pid is not None and f"pid {pid}" in started.stdout
    assert wait_until(lambda: len(stub.requests_for("PollHostCommand")) > 0)

    status = daemon.manage("status")
    assert status.returncode == 0, status
    assert f"is running (pid {pid})" in status.stdout
    assert "polling" in status.stdout

    again = daemon.manage("start")
    assert again.returncode == 0 and "already running" in again.stdout
    assert read_pid_file(daemon.pid_file) == pid

    stopped = daemon.manage("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not process_is_running(pid)
    # Its stderr went to its log file: no journal lines repeat the log there.
    log = daemon.log_file.read_text(encoding="utf-8")
    assert "agent starting" in log and "starting codedeploy-agent" not in log
    assert not daemon.pid_file.exists()
    after = daemon.manage("status")
    assert after.returncode == 3 and "is not running" in after.stdout
    assert daemon.manage("stop").returncode == 0


def test_under_systemd_it_sends_ready_status_watchdog_and_stopping(
    daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit, notify: NotifyReceiver
) -> None:
    revision = make_revision(daemon.base / "revision", daemon.trace, daemon.base / "www")
    process = daemon.run({"NOTIFY_SOCKET": str(notify.address), "WATCHDOG_USEC": "300000"})
    notify.receive_until("READY=1")
    notify.receive_until("WATCHDOG=1")
    ids = queue_deployment(
        stub,
        "d-NOTIFY001",
        kit.sign(spec_json("d-NOTIFY001", revision)),
        commands=("DownloadBundle",),
    )
    assert wait_until(lambda: bool(completion_of(stub, ids[0])))
    notify.receive_until(
        f"STATUS=polling {stub.url} as {HOST}; last: DownloadBundle of d-NOTIFY001: Succeeded"
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    notify.receive_until("STOPPING=1")
    messages = notify.messages
    statuses = [m for m in messages if m.startswith("STATUS=")]
    assert any(
        "running DownloadBundle of d-NOTIFY001 (0 of its commands done)" in m for m in statuses
    ), statuses
    status_file = json.loads(
        (daemon.pid_file.parent / "codedeploy-agent.status.json").read_text(encoding="utf-8")
    )
    assert status_file["state"] == "stopped"


def test_a_bad_configuration_is_one_line_and_exit_1(daemon: AgentDaemon) -> None:
    broken = daemon.base / "broken.yml"
    broken.write_text(":max_revisions: 0\n", encoding="utf-8")
    for verb in ("run", "start", "status"):
        result = daemon.manage(verb, config=broken)
        assert result.returncode == 1, result
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "max_revisions" in result.stderr
        assert "Traceback" not in result.stderr


def test_version_needs_no_configuration(daemon: AgentDaemon) -> None:
    result = daemon.manage("version", config=daemon.base / "missing.yml")
    assert result.returncode == 0
    assert result.stdout.startswith("codedeploy-agent ")


@pytest.mark.root
def test_a_restart_after_sigkill_ends_the_hook_and_its_cgroup_left_behind(
    daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    if create_hook_cgroup() is None:
        pytest.skip("this host does not let us create a cgroup v2")
    marker = f"marker-{uuid.uuid4().hex}"
    started, cgroup_file = daemon.base / "hook-started", daemon.base / "hook.cgroup"
    revision = make_revision(
        daemon.base / "revision",
        daemon.trace,
        daemon.base / "www",
        events=("BeforeInstall",),
        scripts={
            "BeforeInstall": f"cat /proc/self/cgroup > {cgroup_file}\n"
            f"setsid sh -c 'sleep 600; :' {marker} &\n"
            f'touch "{started}"\nsleep 600'
        },
        timeout=600,
    )
    killed = queue_deployment(
        stub,
        "d-CRASHED01",
        kit.sign(spec_json("d-CRASHED01", revision)),
        commands=("DownloadBundle", "BeforeInstall"),
    )
    process = daemon.run()
    try:
        assert wait_until(lambda: started.exists() and bool(pids_with_marker(marker)))
        process.kill()
        process.wait(timeout=30)
        relative = own_cgroup_v2_path(cgroup_file.read_text(encoding="utf-8"))
        mount = find_unified_cgroup_mount(Path("/proc/self/mountinfo").read_text(encoding="utf-8"))
        assert relative is not None and mount is not None
        hook_cgroup = mount[0] / relative.lstrip("/")
        assert hook_cgroup.name.startswith("codedeploy-hook-")
        # What the crash left: the hook's tree, in its cgroup.
        assert hook_cgroup.is_dir() and pids_with_marker(marker)

        restarted = daemon.run()
        assert wait_until(lambda: len(completion_of(stub, killed[1])) == 1)
        [report] = completion_of(stub, killed[1])
        payload = report["payload"]
        assert isinstance(payload, dict) and payload["error_code"] == 7
        assert wait_until(lambda: not pids_with_marker(marker))
        assert not hook_cgroup.exists()
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=60) == 0
    finally:
        kill_marked(marker)


def test_ctrl_c_during_the_imports_is_one_line_and_130(daemon: AgentDaemon) -> None:
    process = subprocess.Popen(
        daemon.command("status"),
        env=daemon.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=daemon.base,
    )
    out, stderr = interrupt_during_imports(process)
    assert process.returncode == 130, stderr
    assert stderr.splitlines() == ["codedeploy-agent: interrupted (SIGINT)"]
    assert out == ""
