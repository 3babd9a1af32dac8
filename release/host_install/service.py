"""Running the agent as a service: systemd when it runs the host, the agent's own
``start``/``stop`` (a pid file) when it does not.

``systemctl start`` of the ``Type=notify`` unit returns when the agent has told systemd it
is ready, or fails; so "started" here means ready, and a failure carries the agent's own
last words from the journal. Every call is an argument list; each is logged.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from host_install.commands import first_error_line, run_command
from host_install.errors import InstallError
from host_install.layout import UNIT_NAME

log = logging.getLogger("install")

SYSTEMD_RUNTIME = Path("/run/systemd/system")
START_TIMEOUT_SECONDS = 300.0


def systemd_runs_host() -> bool:
    """True when systemd is PID 1 (what sd_booted checks)."""
    return SYSTEMD_RUNTIME.is_dir()


def systemctl(*arguments: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return run_command(["systemctl", *arguments], timeout=timeout)


@dataclass(frozen=True)
class UnitState:
    load_state: str
    active_state: str
    unit_file_state: str
    fragment_path: str
    main_pid: int
    status_text: str
    n_restarts: int

    @property
    def active(self) -> bool:
        return self.active_state in ("active", "reloading", "activating", "deactivating")

    @property
    def enabled(self) -> bool:
        return self.unit_file_state in ("enabled", "enabled-runtime", "static", "alias")


def read_unit_state(unit: str = UNIT_NAME) -> UnitState:
    properties = (
        "LoadState",
        "ActiveState",
        "UnitFileState",
        "FragmentPath",
        "MainPID",
        "StatusText",
        "NRestarts",
    )
    result = systemctl("show", unit, *(f"--property={p}" for p in properties))
    values: Dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        values[key] = value
    return UnitState(
        load_state=values.get("LoadState", ""),
        active_state=values.get("ActiveState", ""),
        unit_file_state=values.get("UnitFileState", ""),
        fragment_path=values.get("FragmentPath", ""),
        main_pid=int(values.get("MainPID") or 0),
        status_text=values.get("StatusText", ""),
        n_restarts=int(values.get("NRestarts") or 0),
    )


def last_journal_lines(unit: str, count: int = 5) -> List[str]:
    result = run_command(
        ["journalctl", "--unit", unit, "--lines", str(count), "--no-pager", "--output", "cat"]
    )
    return [line for line in result.stdout.splitlines() if line.strip()]


def start_unit_and_wait_ready(unit: str, log_hint: str, what: str = "the agent") -> UnitState:
    """``systemctl start`` (returns when the program said READY=1) and check it stayed up."""
    result = systemctl("start", unit, timeout=START_TIMEOUT_SECONDS)
    state = read_unit_state(unit)
    if result.returncode != 0 or state.active_state != "active":
        reason = _failure_reason(unit, result)
        raise InstallError(f"{what} did not become ready: {reason}; see {log_hint}")
    return state


def _failure_reason(unit: str, result: subprocess.CompletedProcess[str]) -> str:
    # The agent's fatal error is its last line in the journal (it writes one there).
    for line in reversed(last_journal_lines(unit, 20)):
        if unit.split(".")[0] + ":" in line or "error" in line.lower():
            return line.strip()
    return first_error_line(result.stderr, f"systemctl start exit status {result.returncode}")


def agent_status_json(program: Path, config_file: Path) -> Optional[Mapping[str, object]]:
    """What ``codedeploy-agent status --json`` says, or None when it cannot say."""
    if not program.exists():
        return None
    result = run_command([str(program), "--config_file", str(config_file), "status", "--json"])
    try:
        found = json.loads(result.stdout)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def wait_until_idle(program: Path, config_file: Path, limit_seconds: float) -> None:
    """Wait until the installed agent runs no deployment command, up to ``limit_seconds``."""
    deadline = time.monotonic() + limit_seconds
    said = False
    while True:
        status = agent_status_json(program, config_file)
        if status is None or not status.get("busy"):
            return
        if not said:
            print(f"install: waiting for the running command to finish ({status.get('line')})")
            said = True
        if time.monotonic() >= deadline:
            raise InstallError(
                f"a deployment command is still running after {limit_seconds:g} s"
                f" ({status.get('line')}); nothing was changed: run install again later or"
                " give --wait-for-idle more seconds"
            )
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def settled_status_text(unit: str, state: UnitState, limit_seconds: float = 5.0) -> str:
    """The agent's STATUS line once it has found its identity (polling, or why it still
    waits), or what it says after ``limit_seconds``: the first line after READY only says
    that it is about to look."""
    deadline = time.monotonic() + limit_seconds
    while state.status_text in ("", "starting", "waiting for an identity"):
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
        state = read_unit_state(unit)
    return state.status_text
