"""The script log: the AWS agent's line formats, lazy creation, appending, and the tail."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from agent.errors import LOG_TAIL_CHARACTERS
from agent.lifecycle_event.script_log import open_script_log

SCRIPT_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$")
DEPLOYMENTS_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\] \[d-42\](.*)$")


def test_entries_are_written_in_both_formats(tmp_path: Path) -> None:
    script_log = tmp_path / "deployment" / "logs" / "scripts.log"
    deployments_log = tmp_path / "root" / "deployment-logs" / "codedeploy-agent-deployments.log"
    before = datetime.datetime.now().replace(microsecond=0)
    with open_script_log(script_log, "d-42", deployments_log) as log:
        log.event_started("ApplicationStart")
        log.script_started("scripts/start.sh")
        log.output_line("stdout", "Starting app")
        log.output_line("stderr", "  warning: indented  ")
        # A line is visible before the log is closed (tail -f).
        assert script_log.read_text(encoding="utf-8").endswith("[stderr]  warning: indented  \n")
    after = datetime.datetime.now()

    lines = script_log.read_text(encoding="utf-8").splitlines()
    matches = [SCRIPT_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [m.group(2) for m in matches if m] == [
        "LifecycleEvent - ApplicationStart",
        "Script - scripts/start.sh",
        "[stdout]Starting app",
        "[stderr]  warning: indented  ",
    ]
    for match in matches:
        assert match is not None
        stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
        assert before <= stamp <= after

    deployment_lines = deployments_log.read_text(encoding="utf-8").splitlines()
    deployment_matches = [DEPLOYMENTS_LINE.match(line) for line in deployment_lines]
    assert all(deployment_matches), deployment_lines
    # The deployments log strips each entry, as the AWS agent does.
    assert [m.group(2) for m in deployment_matches if m] == [
        "LifecycleEvent - ApplicationStart",
        "Script - scripts/start.sh",
        "[stdout]Starting app",
        "[stderr]  warning: indented",
    ]


def test_nothing_is_created_before_the_first_entry(tmp_path: Path) -> None:
    script_log = tmp_path / "deployment" / "logs" / "scripts.log"
    with open_script_log(script_log, "d-1", tmp_path / "deployments.log") as log:
        assert log.tail() == ""
    assert not (tmp_path / "deployment").exists()
    assert not (tmp_path / "deployments.log").exists()


def test_an_existing_log_is_appended_to(tmp_path: Path) -> None:
    script_log = tmp_path / "scripts.log"
    script_log.write_text("2020-01-01 00:00:00 LifecycleEvent - BeforeInstall\n", encoding="utf-8")
    with open_script_log(script_log, "d-1", None) as log:
        log.event_started("AfterInstall")
    lines = script_log.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "2020-01-01 00:00:00 LifecycleEvent - BeforeInstall"
    assert lines[1].endswith(" LifecycleEvent - AfterInstall")
    assert len(lines) == 2


def test_the_tail_is_the_last_characters_without_timestamps(tmp_path: Path) -> None:
    with open_script_log(tmp_path / "scripts.log", "d-1", None) as log:
        log.event_started("ValidateService")
        assert log.tail() == "LifecycleEvent - ValidateService\n"
        for number in range(400):
            log.output_line("stdout", f"line {number:04d}")
        log.output_line("stderr", "the very last line")
        tail = log.tail()
    assert len(tail) == LOG_TAIL_CHARACTERS
    assert tail.endswith("[stdout]line 0399\n[stderr]the very last line\n")
    written = "".join(f"[stdout]line {number:04d}\n" for number in range(400))
    assert (written + "[stderr]the very last line\n").endswith(tail)


def test_an_unwritable_deployments_log_does_not_stop_the_script_log(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    with open_script_log(tmp_path / "scripts.log", "d-1", blocker / "deployments.log") as log:
        log.output_line("stdout", "still logged")
    assert "[stdout]still logged" in (tmp_path / "scripts.log").read_text(encoding="utf-8")
