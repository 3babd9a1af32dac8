"""Finding the AWS CodeDeploy agent on a host and retiring it in favour of this one.

The AWS agent (the Ruby agent 1.x from its package or its ``install`` script, or the 2.x
agent) runs as a service named ``codedeploy-agent`` (a systemd unit, or an init script that
systemd wraps), lives under ``/opt/codedeploy-agent``, and may have an updater (a cron file or
a unit) that would bring it back. Retiring it: stop it through its own service (which lets
its running command finish), disable it, move aside its init script, a unit file that sits
where ours goes, and its updater's cron file (into a backup folder, so going back is a copy),
mask its updater units. Its configuration file and deployment root stay where they are: this
agent reads the same ``:key:`` file and carries on from the same deployment root. Every step
is recorded in the undo journal, so a failed install brings the AWS agent back as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from host_install.commands import run_command
from host_install.errors import InstallError
from host_install.layout import UNIT_NAME, HostLayout
from host_install.service import read_unit_state, systemctl
from host_install.undo import UndoJournal

log = logging.getLogger("install")

AWS_HOME = Path("/opt/codedeploy-agent")
INIT_SCRIPT = Path("/etc/init.d/codedeploy-agent")
UPDATER_CRON_FILES = (
    Path("/etc/cron.d/codedeploy-agent-update"),
    Path("/etc/cron.d/codedeploy-agent-updater"),
)
UPDATER_UNITS = (
    "codedeploy-agent-updater.timer",
    "codedeploy-agent-updater.service",
    "codedeploy-agent-update.timer",
    "codedeploy-agent-update.service",
)


@dataclass(frozen=True)
class AwsAgent:
    """What of the AWS agent is on the host."""

    version: str
    unit_fragment: Optional[Path]  # its systemd unit file (None without one)
    unit_active: bool
    unit_enabled: bool
    init_script: bool
    cron_files: Tuple[Path, ...]
    updater_units: Tuple[str, ...]

    def describe(self) -> str:
        return f"the AWS CodeDeploy agent {self.version}".rstrip()


def unit_file_is_ours(path: Path, layout: HostLayout) -> bool:
    try:
        return str(layout.agent_program) in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _aws_version_on_disk() -> str:
    try:
        text = (AWS_HOME / ".version").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text.strip().split(":")[-1].strip()[:60]


def find_aws_agent(layout: HostLayout, with_systemd: bool) -> Optional[AwsAgent]:
    """The AWS agent installed here, or None."""
    fragment: Optional[Path] = None
    active = enabled = False
    if with_systemd:
        state = read_unit_state(UNIT_NAME)
        if state.load_state == "loaded" and state.fragment_path:
            path = Path(state.fragment_path)
            if not unit_file_is_ours(path, layout):
                fragment, active, enabled = path, state.active, state.enabled
    init_script = INIT_SCRIPT.is_file()
    program = (AWS_HOME / "bin" / "codedeploy-agent").exists()
    if fragment is None and not init_script and not program:
        return None
    updaters: List[str] = []
    if with_systemd:
        for unit in UPDATER_UNITS:
            state = read_unit_state(unit)
            if state.load_state == "loaded":
                updaters.append(unit)
    return AwsAgent(
        version=_aws_version_on_disk(),
        unit_fragment=fragment,
        unit_active=active,
        unit_enabled=enabled,
        init_script=init_script,
        cron_files=tuple(p for p in UPDATER_CRON_FILES if p.exists()),
        updater_units=tuple(updaters),
    )


def retire_aws_agent(
    agent: AwsAgent, layout: HostLayout, journal: UndoJournal, with_systemd: bool
) -> None:
    """Stop and disable the AWS agent and its updaters so they do not come back."""
    backup = layout.aws_agent_backup
    journal.make_folders_on_disk(backup, 0o700)
    if with_systemd:
        for unit in agent.updater_units:
            _stop_and_mask_unit(unit, journal)
        if agent.unit_fragment is not None or agent.init_script:
            _stop_and_disable_unit(agent, journal)
    elif agent.init_script:
        result = run_command([str(INIT_SCRIPT), "stop"], timeout=7300.0)
        if result.returncode != 0:
            raise InstallError(f"cannot stop the AWS agent with {INIT_SCRIPT} stop")
        journal.record(
            "start the AWS agent again", lambda: _run_quietly([str(INIT_SCRIPT), "start"])
        )
    if with_systemd:
        # Recorded before the files move aside, so an undo reloads after moving them back.
        journal.record("reload systemd", lambda: _run_quietly(["systemctl", "daemon-reload"]))
    for cron in agent.cron_files:
        journal.move_aside_on_disk(cron, backup / "cron.d" / cron.name)
    if agent.init_script:
        journal.move_aside_on_disk(INIT_SCRIPT, backup / "init.d" / INIT_SCRIPT.name)
    if agent.unit_fragment is not None and agent.unit_fragment == layout.unit_file:
        journal.move_aside_on_disk(agent.unit_fragment, backup / "systemd" / UNIT_NAME)
    if with_systemd:
        systemctl("daemon-reload")


def _stop_and_disable_unit(agent: AwsAgent, journal: UndoJournal) -> None:
    # The AWS agent's own stop waits for its running command: give it the time it takes.
    if agent.unit_active:
        result = systemctl("stop", UNIT_NAME, timeout=7300.0)
        if result.returncode != 0:
            raise InstallError(f"cannot stop the AWS agent's service: {result.stderr.strip()}")
        journal.record(
            "start the AWS agent again", lambda: _run_quietly(["systemctl", "start", UNIT_NAME])
        )
    if agent.unit_enabled:
        systemctl("disable", UNIT_NAME)
        journal.record(
            "enable the AWS agent again", lambda: _run_quietly(["systemctl", "enable", UNIT_NAME])
        )


def _stop_and_mask_unit(unit: str, journal: UndoJournal) -> None:
    state = read_unit_state(unit)
    systemctl("stop", unit)
    systemctl("mask", unit)
    journal.record(f"unmask {unit}", lambda: _restore_unit(unit, state.enabled, state.active))


def _restore_unit(unit: str, enabled: bool, active: bool) -> None:
    _run_quietly(["systemctl", "unmask", unit])
    if enabled:
        _run_quietly(["systemctl", "enable", unit])
    if active:
        _run_quietly(["systemctl", "start", unit])


def _run_quietly(argv: List[str]) -> None:
    result = run_command(argv, timeout=7300.0)
    if result.returncode != 0:
        raise InstallError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
