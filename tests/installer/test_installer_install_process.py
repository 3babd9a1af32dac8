"""An install carried out by a helper process (what the daemon does): the same result as
in-process, the split even when the caller runs threads, the helper's log events logged
by the caller, and a helper that ends abnormally is one line."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
from structlog.testing import capture_logs

from agent.application_specification.model import (
    ApplicationSpecification,
    FileExistsBehavior,
    FileMapping,
)
from agent.installer import InstallError
from agent.installer.agent_folders import AgentFolders
from agent.installer.install_process import (
    InstallHelper,
    InstallRequest,
    has_entries_on_disk,
    serve_one_install,
)
from tests.support.install_workspace import GROUP, Entry, Workspace, tree
from tests.support.processes import children_with_marker
from tests.support.waiting import wait_until


def _request(workspace: Workspace, behavior: FileExistsBehavior) -> InstallRequest:
    spec = ApplicationSpecification(files=(FileMapping("/", str(workspace.dest)),))
    return InstallRequest(
        spec,
        workspace.archive,
        workspace.root,
        GROUP,
        behavior,
        AgentFolders.of(workspace.root.path),
        False,
    )


def _revision() -> Dict[str, Entry]:
    entries: Dict[str, Entry] = {
        f"{folder}/file{index}.txt": f"{folder} {index}" for folder in "abcd" for index in range(3)
    }
    entries["b/link"] = ("link", "file0.txt")
    return entries


def _helper_events(logs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [e for e in logs if e["event"] == "install ran in a helper process"]


def test_a_helper_splits_the_install_while_the_caller_runs_threads(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    workspace.write_revision(_revision())
    busy = threading.Event()
    other = threading.Thread(target=busy.wait)  # the caller is not single-threaded
    other.start()
    try:
        with capture_logs() as logs:
            result = InstallHelper(min_entries=0).install_on_disk(
                _request(workspace, FileExistsBehavior.DISALLOW)
            )
    finally:
        busy.set()
        other.join()
    assert result.files_copied == 12 and result.symlinks_created == 1
    assert tree(workspace.dest) == tree(workspace.archive)
    [event] = _helper_events(logs)
    assert event["second_processes"] >= 1 and event["succeeded"] is True


def test_the_helpers_warnings_are_logged_by_the_caller(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    workspace.write_revision(_revision())
    workspace.cleanup_file.parent.mkdir(parents=True)
    # A previous install's list with a line the replay refuses to follow (and warns about).
    workspace.cleanup_file.write_text(f"{tmp_path / 'gone'}\nnot/absolute\n", encoding="utf-8")
    with capture_logs() as logs:
        InstallHelper(min_entries=0).install_on_disk(
            _request(workspace, FileExistsBehavior.DISALLOW)
        )
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["cleanup line ignored: not an absolute path"]
    assert warnings[0]["line"] == "not/absolute"


def test_an_error_in_the_helper_keeps_its_message_and_code(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    workspace.write_revision(_revision())
    foreign = workspace.dest / "d" / "file1.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("not ours", encoding="utf-8")
    with pytest.raises(InstallError, match=str(foreign)) as raised:
        InstallHelper(min_entries=0).install_on_disk(
            _request(workspace, FileExistsBehavior.DISALLOW)
        )
    assert "\n" not in raised.value.message
    assert raised.value.error_code == InstallError.error_code
    assert tree(workspace.dest) == {"d": "dir", "d/file1.txt": "not ours"}


def test_a_helper_that_ends_abnormally_is_one_line(tmp_path: Path) -> None:
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nexit 3\n", encoding="utf-8")
    crashing.chmod(0o755)
    workspace = Workspace(tmp_path)
    workspace.write_revision(_revision())
    with pytest.raises(InstallError) as raised:
        InstallHelper(python=str(crashing), min_entries=0).install_on_disk(
            _request(workspace, FileExistsBehavior.DISALLOW)
        )
    assert raised.value.message == "the install's helper process ended abnormally (exit status 3)"
    assert not workspace.dest.exists()


def test_a_helper_started_ahead_is_used_once_and_a_new_one_serves_the_next(
    tmp_path: Path,
) -> None:
    workspace = Workspace(tmp_path)
    workspace.write_revision(_revision())
    helper = InstallHelper(min_entries=0)
    helper.start_ahead()
    helper.start_ahead()  # one is waiting already: no second one
    with capture_logs() as logs:
        helper.install_on_disk(_request(workspace, FileExistsBehavior.DISALLOW))
        again = helper.install_on_disk(_request(workspace, FileExistsBehavior.DISALLOW))
    helper.close()
    assert again.files_unchanged == 13
    first, second = _helper_events(logs)
    assert first["helper_pid"] != second["helper_pid"]


def _waiting_helpers() -> List[int]:
    """This process's install helpers not reaped yet."""
    return children_with_marker(os.getpid(), serve_one_install.__name__)


def test_a_small_tree_is_installed_here_and_the_helper_started_ahead_is_ended(
    tmp_path: Path,
) -> None:
    workspace = Workspace(tmp_path)
    workspace.write_revision(_revision())
    helper = InstallHelper(min_entries=100)
    helper.start_ahead()
    assert wait_until(lambda: len(_waiting_helpers()) == 1)
    with capture_logs() as logs:
        result = helper.install_on_disk(_request(workspace, FileExistsBehavior.DISALLOW))
    assert _helper_events(logs) == []
    assert result.files_copied == 12 and result.symlinks_created == 1
    assert tree(workspace.dest) == tree(workspace.archive)
    assert _waiting_helpers() == []


def test_a_tree_at_the_threshold_goes_to_a_helper(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    workspace.write_revision(_revision())
    entries = sum(1 for _ in workspace.archive.rglob("*"))
    with capture_logs() as logs:
        InstallHelper(min_entries=entries).install_on_disk(
            _request(workspace, FileExistsBehavior.DISALLOW)
        )
    [event] = _helper_events(logs)
    assert event["succeeded"] is True


def test_entries_are_counted_across_folders(tmp_path: Path) -> None:
    for folder in ("a", "a/b", "c"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "file").touch()
    (tmp_path / "link").symlink_to("a")  # counted, not followed
    assert has_entries_on_disk(tmp_path, 7)
    assert not has_entries_on_disk(tmp_path, 8)
    assert has_entries_on_disk(tmp_path, 0)
    assert not has_entries_on_disk(tmp_path / "missing", 1)


def test_a_helper_is_started_ahead_only_when_the_block_outlasts_the_delay() -> None:
    helper = InstallHelper()
    with helper.started_ahead_if_slow(60.0):
        pass
    assert _waiting_helpers() == []
    with helper.started_ahead_if_slow(0.0):
        assert wait_until(lambda: len(_waiting_helpers()) == 1)
    helper.close()
    assert _waiting_helpers() == []


def test_a_helper_started_ahead_is_ended_when_the_block_fails() -> None:
    helper = InstallHelper()
    with (
        pytest.raises(RuntimeError, match="the download failed"),
        helper.started_ahead_if_slow(0.0),
    ):
        assert wait_until(lambda: len(_waiting_helpers()) == 1)
        raise RuntimeError("the download failed")
    assert _waiting_helpers() == []
