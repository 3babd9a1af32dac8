"""codedeploy-local refuses every number and name from outside that it cannot hold.

Each case is a real ``codedeploy-local`` subprocess: a refusal is exit 2 and one line,
and nothing is created under the deployment root's own folders.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.archives import write_tree
from tests.support.local_agent import LocalAgent


def _revision(where: Path, timeout: str = "30") -> Path:
    return write_tree(
        where,
        {
            "appspec.yml": "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n"
            f"    - location: start.sh\n      timeout: {timeout}\n",
            "start.sh": "#!/bin/sh\necho started\n",
        },
    )


def _assert_refused(agent: LocalAgent, *arguments: str) -> str:
    result = agent.run(*arguments)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("codedeploy-local: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return result.stderr


@pytest.mark.parametrize(
    "group",
    [
        "g" * 300,
        "deployment-instructions",
        "deployment-logs",
        "ongoing-deployment",
        "line\nbreak",
        "bell\x07",
        "..",
        ".hidden",
    ],
)
def test_a_group_id_that_cannot_name_a_folder_is_one_line(
    local_agent: LocalAgent, tmp_path: Path, group: str
) -> None:
    revision = _revision(tmp_path / "revision")
    message = _assert_refused(
        local_agent, "--bundle-location", str(revision), "--deployment-group", group
    )
    assert "--deployment-group " in message
    for own in ("deployment-instructions", "deployment-logs", "ongoing-deployment"):
        folder = local_agent.root / own
        assert not folder.exists() or not any(p.is_dir() for p in folder.iterdir())
    assert not (local_agent.root / group[:200]).exists()


def test_the_configured_tracking_folder_is_no_group_id_either(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    local_agent.config.write_text(
        local_agent.config.read_text(encoding="utf-8") + ":ongoing_deployment_tracking: busy\n",
        encoding="utf-8",
    )
    revision = _revision(tmp_path / "revision")
    message = _assert_refused(
        local_agent, "--bundle-location", str(revision), "--deployment-group", "busy"
    )
    assert "root's own folders" in message


@pytest.mark.parametrize("timeout", ["1000000000000000", "3601", ".inf", ".nan"])
def test_a_hook_timeout_beyond_an_hour_is_one_line_naming_the_field(
    local_agent: LocalAgent, tmp_path: Path, timeout: str
) -> None:
    revision = _revision(tmp_path / "revision", timeout)
    message = _assert_refused(local_agent, "--bundle-location", str(revision))
    assert "hooks.ApplicationStart[0].timeout" in message
    assert "at most 3600" in message


@pytest.mark.parametrize(
    "line",
    [
        ":hook_kill_grace_seconds: 1e400",
        ":hook_kill_grace_seconds: .nan",
        ":max_revisions: 100000000000000000000000000",
        ":archive_max_extraction_size: " + "9" * 400,
        ":program_name: ../../escape",
    ],
)
def test_a_configuration_number_out_of_bounds_is_one_line_naming_the_key(
    local_agent: LocalAgent, tmp_path: Path, line: str
) -> None:
    local_agent.config.write_text(
        local_agent.config.read_text(encoding="utf-8").replace(":hook_kill_grace_seconds: 1\n", "")
        + line
        + "\n",
        encoding="utf-8",
    )
    revision = _revision(tmp_path / "revision")
    message = _assert_refused(local_agent, "--bundle-location", str(revision))
    assert line.split(":")[1] in message


def test_an_hour_long_timeout_and_an_aws_group_id_still_deploy(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    revision = _revision(tmp_path / "revision", "3600")
    group = "2a3b4c5d-6e7f-8091-a2b3-c4d5e6f70819"
    result = local_agent.run("--bundle-location", str(revision), "--deployment-group", group)
    assert result.returncode == 0, result.stderr
    assert (local_agent.root / group).is_dir()


def test_a_bundle_location_no_file_can_have_is_one_line(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    message = _assert_refused(local_agent, "--bundle-location", str(tmp_path / ("b" * 300)))
    assert "--bundle-location" in message and "File name too long" in message


def test_an_appspec_path_no_file_can_have_is_refused_before_anything_runs(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    revision = _revision(tmp_path / "revision")
    (revision / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nfiles:\n  - source: /\n"
        f"    destination: {tmp_path / ('d' * 300)}\n",
        encoding="utf-8",
    )
    message = _assert_refused(local_agent, "--bundle-location", str(revision))
    assert "files[0].destination" in message
