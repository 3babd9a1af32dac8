"""The daemon beside codedeploy-local on one deployment group: real processes, one root.

Whoever deploys the group first keeps it until its deployment ends; the other waits
(the daemon, logging who holds the group) or, with ``--no-wait``, is refused in one line.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.support.command_service import CommandServiceStub, completion_of, queue_deployment
from tests.support.daemon import AgentDaemon
from tests.support.local_agent import LocalAgent
from tests.support.signing import SigningKit
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until

GROUP = "group-1"  # the group of spec_json's specifications
EVENTS = ["ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "ApplicationStart"]


def _held_revision(agent_daemon: AgentDaemon, name: str) -> Path:
    """A revision whose BeforeInstall waits (at most a minute) for ``<name>-release``."""
    started, release = agent_daemon.base / f"{name}-started", agent_daemon.base / f"{name}-release"
    wait = (
        f'touch "{started}"\n'
        f'i=0; while [ ! -e "{release}" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n'
    )
    return make_revision(
        agent_daemon.base / f"{name}-revision",
        agent_daemon.trace,
        agent_daemon.base / "www",
        events=("BeforeInstall", "ApplicationStart"),
        scripts={"BeforeInstall": wait},
    )


def _local(agent_daemon: AgentDaemon, revision: Path, *extra: str) -> subprocess.Popen[str]:
    # The daemon's configuration file also serves codedeploy-local: same root, same group.
    return LocalAgent(agent_daemon.base).start(
        "--bundle-location",
        str(revision),
        "--deployment-group",
        GROUP,
        "--file-exists-behavior",
        "OVERWRITE",
        *extra,
        config=agent_daemon.config,
    )


def _log(agent_daemon: AgentDaemon) -> str:
    return (
        agent_daemon.log_file.read_text(encoding="utf-8") if agent_daemon.log_file.exists() else ""
    )


def test_the_daemon_waits_for_codedeploy_local_then_deploys(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    local_revision = _held_revision(agent_daemon, "local")
    local = _local(agent_daemon, local_revision)
    try:
        assert wait_until((agent_daemon.base / "local-started").exists)
        revision = make_revision(
            agent_daemon.base / "revision", agent_daemon.trace, agent_daemon.base / "www"
        )
        ids = queue_deployment(
            stub,
            "d-DAEMON001",
            kit.sign(spec_json("d-DAEMON001", revision, AllPossibleLifecycleEvents=EVENTS)),
            commands=EVENTS,
        )
        daemon = agent_daemon.run()
        assert wait_until(lambda: "waiting for the deployment group's lock" in _log(agent_daemon))
        log = _log(agent_daemon)
        assert f"pid {local.pid}" in log and "codedeploy-local" in log
        assert all(completion_of(stub, i) == [] for i in ids)
        (agent_daemon.base / "local-release").touch()
        assert local.wait(timeout=120) == 0, local.stderr.read() if local.stderr else ""
        assert wait_until(lambda: all(completion_of(stub, i) for i in ids))
        assert [completion_of(stub, i)[0]["CommandStatus"] for i in ids] == ["Succeeded"] * 5
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        (agent_daemon.base / "local-release").touch()
        local.wait(timeout=120)
    ids_in_trace = [line.split()[1] for line in agent_daemon.trace.read_text().splitlines()]
    first_daemon_line = ids_in_trace.index("d-DAEMON001")
    assert all(i != "d-DAEMON001" for i in ids_in_trace[:first_daemon_line])
    assert all(i == "d-DAEMON001" for i in ids_in_trace[first_daemon_line:])


def test_codedeploy_local_is_refused_while_the_daemon_deploys_and_runs_after_it(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    revision = _held_revision(agent_daemon, "daemon")
    ids = queue_deployment(
        stub,
        "d-DAEMON002",
        kit.sign(spec_json("d-DAEMON002", revision, AllPossibleLifecycleEvents=EVENTS)),
        commands=EVENTS,
    )
    daemon = agent_daemon.run()
    try:
        assert wait_until((agent_daemon.base / "daemon-started").exists)
        refused = _local(agent_daemon, revision, "--no-wait")
        out, err = refused.communicate(timeout=120)
        assert refused.returncode == 2, err
        assert out == ""
        assert err == (
            f"codedeploy-local: deployment group {GROUP} is being deployed by deployment"
            f" d-DAEMON002 (codedeploy-agent, pid {daemon.pid})\n"
        )
        (agent_daemon.base / "daemon-release").touch()
        assert wait_until(lambda: all(completion_of(stub, i) for i in ids))
        # Its last lifecycle event done, the daemon lets go of the group at once.
        after = _local(agent_daemon, revision, "--no-wait")
        out, err = after.communicate(timeout=120)
        assert after.returncode == 0, err
    finally:
        (agent_daemon.base / "daemon-release").touch()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
