"""Migrating from the AWS agent under a real systemd, with a stand-in for it.

The stand-in is what the installer meets on a host where the AWS agent runs: a unit named
``codedeploy-agent`` (in the package's place, /usr/lib/systemd/system) running a program
under /opt/codedeploy-agent, an updater's cron file, a ``:key:`` configuration, and a
deployment root that an earlier deployment wrote in the AWS agent's layout (written here by
hand, not by this project's code). After ``install``: the stand-in is stopped and disabled
and stays so, and the next deployment runs the previous revision's ApplicationStop and
honours the last install's cleanup file. ``--uninstall`` does not bring the AWS agent back.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Dict

import pytest

from tests.support.command_service import CommandServiceStub, completion_of, queue_deployment
from tests.support.host_install import (
    CONFIG,
    ON_PREMISES,
    ON_PREMISES_TEXT,
    Installer,
)
from tests.support.signing import SigningKit
from tests.support.systemd_box import SystemdBox
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until

pytestmark = pytest.mark.root

GROUP = "group-migrated"
ROOT = "/opt/codedeploy-agent/deployment-root"
OLD_DEPLOYMENT = f"{ROOT}/{GROUP}/d-AWSOLD001"
STAND_IN_SECONDS = str(7_000_000 + uuid.uuid4().int % 1_000_000)  # its marker in ps
AWS_UNIT = """[Unit]
Description=AWS CodeDeploy Host Agent (stand-in)

[Service]
Type=simple
ExecStart=/opt/codedeploy-agent/bin/codedeploy-agent
Restart=always

[Install]
WantedBy=basic.target
"""


def _aws_config(endpoint: str) -> str:
    # The AWS agent's own file, as its installer writes it, plus the endpoint of the test
    # command service and a shorter poll.
    return (
        "---\n"
        ":log_aws_wire: false\n"
        ":log_dir: '/var/log/aws/codedeploy-agent/'\n"
        ":pid_dir: '/opt/codedeploy-agent/state/.pid/'\n"
        ":program_name: codedeploy-agent\n"
        ":root_dir: '/opt/codedeploy-agent/deployment-root'\n"
        ":verbose: false\n"
        ":wait_between_runs: 1\n"
        ":proxy_uri:\n"
        ":max_revisions: 5\n"
        f":deploy_control_endpoint: '{endpoint}'\n"
    )


def _plant_aws_agent(box: SystemdBox, endpoint: str) -> None:
    box.write_file(
        "/opt/codedeploy-agent/bin/codedeploy-agent",
        f"#!/bin/sh\nexec sleep {STAND_IN_SECONDS}\n",
        mode=0o755,
    )
    box.write_file("/opt/codedeploy-agent/.version", "agent_version: OFFICIAL_1.7.1-110_rpm\n")
    box.write_file("/usr/lib/systemd/system/codedeploy-agent.service", AWS_UNIT)
    box.write_file(
        "/etc/cron.d/codedeploy-agent-update",
        "0 */12 * * * root /opt/codedeploy-agent/bin/install auto\n",
    )
    box.write_file(CONFIG, _aws_config(endpoint))
    box.write_file(ON_PREMISES, ON_PREMISES_TEXT, mode=0o600)
    # The earlier deployment: its revision with an ApplicationStop hook, the markers that
    # name it, and the cleanup file of its install (one file it copied, one folder it made).
    archive = f"{OLD_DEPLOYMENT}/deployment-archive"
    box.write_file(
        f"{archive}/appspec.yml",
        "version: 0.0\nos: linux\nfiles:\n  - source: content\n"
        "    destination: /srv/migrated\nhooks:\n  ApplicationStop:\n"
        "    - location: scripts/stop.sh\n      timeout: 30\n",
    )
    box.write_file(
        f"{archive}/scripts/stop.sh",
        '#!/bin/sh\necho "$LIFECYCLE_EVENT" > /root/old-stop-ran\n',
        mode=0o755,
    )
    box.write_file(f"{archive}/content/old-only.txt", "old\n")
    box.write_file("/srv/migrated/old-only.txt", "old\n")
    instructions = f"{ROOT}/deployment-instructions"
    box.write_file(f"{instructions}/{GROUP}_last_successful_install", OLD_DEPLOYMENT)
    box.write_file(f"{instructions}/{GROUP}_most_recent_install", OLD_DEPLOYMENT)
    box.write_file(f"{instructions}/{GROUP}-cleanup", "/srv/migrated\n/srv/migrated/old-only.txt\n")
    for argv in (
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "codedeploy-agent"],
    ):
        done = box.run(argv)
        assert done.returncode == 0, done.stderr


def _stand_in_runs(box: SystemdBox) -> bool:
    return box.run(["pgrep", "-f", f"sleep {STAND_IN_SECONDS}"]).returncode == 0


@pytest.fixture(scope="module")
def migrated(
    release_bundle: Path,
    signing: SigningKit,
    service_stub: CommandServiceStub,
    systemd_box: SystemdBox,
) -> Dict[str, str]:
    _plant_aws_agent(systemd_box, service_stub.url)
    assert _stand_in_runs(systemd_box)
    config_before = systemd_box.read_text(CONFIG)
    installer = Installer(systemd_box)
    script = installer.unpack(release_bundle)
    done = installer.run(script, "auto", own_network=True)
    assert done.returncode == 0, done.stdout + done.stderr + systemd_box.diagnostics()
    return {"script": script, "stdout": done.stdout, "config_before": config_before}


def test_the_aws_agent_is_stopped_and_disabled_and_its_updater_put_aside(
    migrated: Dict[str, str], systemd_box: SystemdBox
) -> None:
    assert "retiring the AWS CodeDeploy agent OFFICIAL_1.7.1-110_rpm" in migrated["stdout"]
    assert not _stand_in_runs(systemd_box)
    shown = systemd_box.systemctl(
        "show", "codedeploy-agent", "--property=FragmentPath,ActiveState,UnitFileState"
    ).stdout
    assert "FragmentPath=/etc/systemd/system/codedeploy-agent.service" in shown
    assert "ActiveState=active" in shown
    assert not systemd_box.exists("/etc/cron.d/codedeploy-agent-update")
    assert systemd_box.exists(
        "/etc/codedeploy-agent/aws-agent-backup/cron.d/codedeploy-agent-update"
    )
    assert systemd_box.read_text(CONFIG) == migrated["config_before"]


def test_the_next_deployment_carries_on_from_the_aws_deployment_root(
    migrated: Dict[str, str],
    systemd_box: SystemdBox,
    service_stub: CommandServiceStub,
    signing: SigningKit,
    tmp_path: Path,
) -> None:
    made = make_revision(tmp_path / "revision", Path("/root/trace-new.log"), Path("/srv/migrated"))
    revision = systemd_box.copy_tree_in(made, "/root/revision-new")
    ids = queue_deployment(
        service_stub,
        "d-MIGRATED1",
        signing.sign(spec_json("d-MIGRATED1", revision, group_id=GROUP)),
    )
    assert wait_until(lambda: all(completion_of(service_stub, i) for i in ids), 120), (
        systemd_box.diagnostics()
    )
    statuses = [completion_of(service_stub, i)[0]["CommandStatus"] for i in ids]
    assert statuses == ["Succeeded"] * len(ids), systemd_box.diagnostics()
    # The previous revision's ApplicationStop ran (its script exists only in the old revision).
    assert systemd_box.read_text("/root/old-stop-ran") == "ApplicationStop\n"
    # The cleanup file was honoured: what the old install copied is gone, the new is there.
    assert not systemd_box.exists("/srv/migrated/old-only.txt")
    assert systemd_box.read_text("/srv/migrated/index.html") == "hello\n"


def test_uninstall_does_not_bring_the_aws_agent_back(
    migrated: Dict[str, str], systemd_box: SystemdBox
) -> None:
    done = Installer(systemd_box).run(migrated["script"], "--uninstall")
    assert done.returncode == 0, done.stdout + done.stderr
    shown = systemd_box.systemctl(
        "show", "codedeploy-agent", "--property=FragmentPath,ActiveState,UnitFileState"
    ).stdout
    # The package's unit again (/usr/lib, or /lib as systemd names it on merged-/usr hosts).
    assert "lib/systemd/system/codedeploy-agent.service\n" in shown
    assert "FragmentPath=/etc/" not in shown
    assert "ActiveState=inactive" in shown
    assert "UnitFileState=disabled" in shown
    assert not _stand_in_runs(systemd_box)
    assert not systemd_box.exists("/etc/cron.d/codedeploy-agent-update")
