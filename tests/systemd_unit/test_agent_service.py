"""The agent under a real systemd: the repository's unit file in a systemd box (see
``tests/support/systemd_box.py``), the agent polling the command service stub on loopback.

One box for the module; the tests share the service ``codedeploy-agent`` and each puts
it in the state it needs (identity there or not, environment files) before it starts.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from agent import __version__
from tests.support.agent_service import (
    AGENT_ENVIRONMENT_FILE,
    INSTALLED_PROGRAM,
    SYSTEM_ENVIRONMENT_FILE,
    UNIT,
    UNIT_FILE,
    WORKTREE_PROGRAM,
    AgentService,
    new_box_base,
)
from tests.support.command_service import HOST, CommandServiceStub, completion_of
from tests.support.processes import kill_marked, pids_with_marker
from tests.support.signing import SigningKit
from tests.support.systemd_box import SystemdBox
from tests.support.waiting import wait_until

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def service_stub() -> Iterator[CommandServiceStub]:
    # A long poll, as the real service does: an idle agent asks about once a second.
    with CommandServiceStub(poll_wait=1.0, hang_seconds=5) as stub:
        yield stub


@pytest.fixture(scope="module")
def service(
    systemd_box: SystemdBox, service_stub: CommandServiceStub, kit: SigningKit
) -> Iterator[AgentService]:
    if not WORKTREE_PROGRAM.exists():
        pytest.skip(f"{WORKTREE_PROGRAM} is not installed (scripts/setup)")
    agent = AgentService(systemd_box, service_stub, new_box_base())
    agent.install(kit)
    try:
        yield agent
    finally:
        agent.box.systemctl("stop", UNIT, timeout=120)


@pytest.fixture
def polling(service: AgentService) -> AgentService:
    """The service running with its identity and no environment files, polling."""
    service.box.systemctl("stop", UNIT)
    service.write_on_premises_file()
    service.box.run(["rm", "-f", AGENT_ENVIRONMENT_FILE, SYSTEM_ENVIRONMENT_FILE])
    service.systemctl("start", UNIT)
    assert service.wait_polling(), service.status_text()
    return service


def test_the_service_is_active_and_says_what_it_polls_as_whom(polling: AgentService) -> None:
    assert polling.show("ActiveState") == "active"
    shown = polling.systemctl("status", UNIT)
    assert f'Status: "polling {polling.stub.url} as {HOST}"' in shown, shown
    report = polling.status_json()
    assert report["running"] is True and report["pid"] == polling.main_pid()
    assert report["state"] == "polling" and report["busy"] is False
    assert report["line"] == f"polling {polling.stub.url} as {HOST}"
    assert report["version"] == __version__
    # The journal has the start (version, configuration, log file), readiness and what
    # it polls as whom; the detailed log stays in the log file.
    assert polling.wait_for_journal(f"polling {polling.stub.url} as {HOST}")
    journal = polling.journal()
    assert any(
        line.startswith(f"starting codedeploy-agent {__version__}")
        and "/etc/codedeploy-agent/conf/codedeployagent.yml" in line
        and polling.log_file in line
        for line in journal
    ), journal
    assert "ready" in journal
    assert not any("agent starting" in line for line in journal)
    assert "agent starting" in polling.read_log()


def test_hooks_see_the_variables_of_both_environment_files(
    polling: AgentService, kit: SigningKit, tmp_path: Path
) -> None:
    polling.box.write_file(
        SYSTEM_ENVIRONMENT_FILE, "NODE_ENV=production\nCODEDEPLOY_TEST_BOTH=from-etc-environment\n"
    )
    polling.box.write_file(
        AGENT_ENVIRONMENT_FILE,
        "CODEDEPLOY_TEST_AGENT=from-agent-file\nCODEDEPLOY_TEST_BOTH=from-agent-file\n",
    )
    polling.systemctl("restart", UNIT)
    assert polling.wait_polling()
    seen = f"{polling.base}/env-seen"
    ids = polling.deploy(kit, tmp_path, "d-UNITENV01", {"BeforeInstall": f"env > {seen}"})
    assert wait_until(lambda: bool(completion_of(polling.stub, ids[1]))), (
        polling.status_text(),
        polling.read_log()[-6000:],
    )
    assert completion_of(polling.stub, ids[1])[0]["CommandStatus"] == "Succeeded"
    assert polling.box.exists(seen), polling.read_log()[-6000:]
    environment = polling.box.read_text(seen).splitlines()
    assert "NODE_ENV=production" in environment
    assert "CODEDEPLOY_TEST_AGENT=from-agent-file" in environment
    # The agent's own file comes second and wins.
    assert "CODEDEPLOY_TEST_BOTH=from-agent-file" in environment


def test_without_an_identity_it_stays_active_says_why_and_polls_once_it_has_one(
    service: AgentService,
) -> None:
    service.box.systemctl("stop", UNIT)
    service.remove_on_premises_file()
    service.box.write_file(AGENT_ENVIRONMENT_FILE, "AWS_EC2_METADATA_DISABLED=true\n")
    service.box.run(["rm", "-f", SYSTEM_ENVIRONMENT_FILE])
    service.systemctl("start", UNIT)
    assert wait_until(
        lambda: service.status_text().startswith("waiting for an identity: "), timeout=30
    ), service.status_text()
    assert re.search(
        r"^waiting for an identity: .*AWS_EC2_METADATA_DISABLED.*; next try in \d+s$",
        service.status_text(),
    ), service.status_text()
    pid = service.main_pid()
    # Several tries, and still the same process: systemd never restarted it.
    assert wait_until(lambda: service.read_log().count("no host identity yet") >= 2, timeout=30)
    assert service.show("ActiveState") == "active"
    assert service.show("NRestarts") == "0"
    assert service.main_pid() == pid
    assert service.status_json()["state"] == "waiting for an identity"
    assert service.wait_for_journal("waiting for an identity: ")

    service.write_on_premises_file()
    assert service.wait_polling(timeout=60), service.status_text()
    assert service.main_pid() == pid and service.show("NRestarts") == "0"


def test_an_application_survives_a_restart_and_a_timed_out_hook_leaves_nothing(
    polling: AgentService, kit: SigningKit, tmp_path: Path
) -> None:
    application = f"unit-application-{uuid.uuid4().hex}"
    grandchild = f"unit-grandchild-{uuid.uuid4().hex}"
    hook_cgroup = f"{polling.base}/hook-cgroup"
    try:
        ids = polling.deploy(
            kit,
            tmp_path,
            "d-UNITAPP01",
            {
                "ApplicationStart": f"setsid sh -c 'sleep 600; :' {application} "
                "</dev/null >/dev/null 2>&1 &"
            },
        )
        assert wait_until(lambda: bool(completion_of(polling.stub, ids[1])))
        assert completion_of(polling.stub, ids[1])[0]["CommandStatus"] == "Succeeded"
        [running] = pids_with_marker(application)

        polling.systemctl("restart", UNIT)
        assert polling.wait_polling()
        assert pids_with_marker(application) == [running]

        ids = polling.deploy(
            kit,
            tmp_path,
            "d-UNITTIME1",
            {
                "BeforeInstall": f"cat /proc/self/cgroup > {hook_cgroup}\n"
                f"setsid sh -c 'sleep 600; :' {grandchild} </dev/null >/dev/null 2>&1 &\n"
                "sleep 600"
            },
            timeout=2,
        )
        assert wait_until(lambda: bool(pids_with_marker(grandchild)))
        assert wait_until(lambda: bool(completion_of(polling.stub, ids[1])))
        [report] = completion_of(polling.stub, ids[1])
        assert report["CommandStatus"] == "Failed"
        payload = report["payload"]
        assert isinstance(payload, dict) and payload["error_code"] == 3  # timed out
        assert wait_until(lambda: not pids_with_marker(grandchild), timeout=10)
        # The hook ran in a cgroup of its own, below the service's (Delegate=yes).
        assert re.search(
            rf"^0::/system\.slice/{re.escape(UNIT)}/codedeploy-hook-[0-9a-f]+$",
            polling.box.read_text(hook_cgroup),
            re.M,
        ), polling.box.read_text(hook_cgroup)
        # An earlier hook's application is not a later hook's to end.
        assert pids_with_marker(application) == [running]
    finally:
        kill_marked(application)
        kill_marked(grandchild)


def test_a_stop_during_a_hook_lets_the_command_finish_and_be_reported(
    polling: AgentService, kit: SigningKit, tmp_path: Path
) -> None:
    started, finished = f"{polling.base}/stop-started", f"{polling.base}/stop-finished"
    ids = polling.deploy(
        kit,
        tmp_path,
        "d-UNITSTOP1",
        {"BeforeInstall": f"touch {started}\nsleep 3\ntouch {finished}"},
    )
    assert wait_until(lambda: polling.box.exists(started))
    assert polling.status_json()["busy"] is True
    assert polling.status_text().startswith("running BeforeInstall of d-UNITSTOP1")
    polling.systemctl("stop", UNIT)
    # systemctl stop returned only after the agent ended, and the command had finished
    # and been reported by then.
    assert polling.show("ActiveState") == "inactive"
    assert polling.box.exists(finished)
    [report] = completion_of(polling.stub, ids[1])
    assert report["CommandStatus"] == "Succeeded"
    assert polling.show("Result") == "success"
    stopping = "stopping: letting BeforeInstall of d-UNITSTOP1 finish (up to 60 s)"

    def stop_in_journal() -> bool:
        journal = polling.journal()
        return stopping in journal and "stopped" in journal[journal.index(stopping) :]

    assert wait_until(stop_in_journal, timeout=20), polling.journal()[-10:]


def test_systemd_analyze_verify_has_nothing_to_say_about_the_installed_unit(
    systemd_box: SystemdBox,
) -> None:
    # As the installer lays it out: the program behind /opt/.../current, the unit as it is.
    folder = f"/root/verify-{uuid.uuid4().hex[:8]}"
    linked = systemd_box.run(["mkdir", "-p", str(Path(INSTALLED_PROGRAM).parents[2])])
    assert linked.returncode == 0, linked.stderr
    systemd_box.run(
        ["ln", "-sfn", str(WORKTREE_PROGRAM.parents[1]), "/opt/codedeploy-agent-py/current"]
    )
    assert systemd_box.exists(INSTALLED_PROGRAM)
    systemd_box.write_file(f"{folder}/{UNIT}", UNIT_FILE.read_text(encoding="utf-8"))
    verified = systemd_box.run(["systemd-analyze", "verify", f"{folder}/{UNIT}"])
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", "")
