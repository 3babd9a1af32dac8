"""Upgrading in place under a real systemd: the next version takes over with the operator's
configuration, deployment root and logs untouched; a busy agent is waited for (bounded);
an upgrade whose agent cannot start puts the previous version back, running.

One box for the module, used in order: this checkout's bundle is installed and deploys once,
then the newer bundle replaces it, then a broken one is refused.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Dict, List

import pytest

from tests.release.conftest import BROKEN_VERSION, NEWER_VERSION
from tests.support.command_service import CommandServiceStub, completion_of, queue_deployment
from tests.support.host_install import (
    ON_PREMISES_TEXT,
    Installer,
    agent_config,
    assert_one_line_failure,
)
from tests.support.signing import SigningKit
from tests.support.systemd_box import SystemdBox
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until

pytestmark = pytest.mark.root

VERSION = __import__("agent").__version__
KEPT = ("/etc/codedeploy-agent", "/opt/codedeploy-agent/deployment-root")
LOG = "/var/log/aws/codedeploy-agent/codedeploy-agent.log"


@pytest.fixture(scope="module")
def installer(
    release_bundle: Path,
    newer_bundle: Path,
    broken_bundle: Path,
    signing: SigningKit,
    service_stub: CommandServiceStub,
    systemd_box: SystemdBox,
) -> Installer:
    installer = Installer(systemd_box)
    systemd_box.write_file(
        "/root/given/codedeployagent.yml", agent_config(service_stub.url, str(signing.ca_bundle))
    )
    systemd_box.write_file("/root/given/onpremises.yml", ON_PREMISES_TEXT, mode=0o600)
    done = installer.run(
        installer.unpack(release_bundle),
        "--config",
        "/root/given/codedeployagent.yml",
        "--on-premises-config",
        "/root/given/onpremises.yml",
    )
    assert done.returncode == 0, done.stdout + done.stderr + systemd_box.diagnostics()
    return installer


def _deploy(
    box: SystemdBox, stub: CommandServiceStub, kit: SigningKit, tmp: Path, hook: str = ""
) -> List[str]:
    tag = uuid.uuid4().hex[:8]
    made = make_revision(
        tmp / f"revision-{tag}",
        Path(f"/root/trace-{tag}.log"),
        Path(f"/srv/app-{tag}"),
        scripts={"BeforeInstall": hook},
    )
    revision = box.copy_tree_in(made, f"/root/revision-{tag}")
    return queue_deployment(
        stub, f"d-UPGRADE{tag}", kit.sign(spec_json(f"d-UPGRADE{tag}", revision))
    )


def _all_succeeded(stub: CommandServiceStub, ids: List[str]) -> bool:
    found = [completion_of(stub, i) for i in ids]
    return all(found) and all(f[0]["CommandStatus"] == "Succeeded" for f in found)


def _checksums(box: SystemdBox) -> str:
    done = box.run(
        ["sh", "-c", "find " + " ".join(KEPT) + " -type f -print0 | sort -z | xargs -0 sha256sum"]
    )
    return done.stdout


def test_an_upgrade_waits_for_a_running_command_within_its_bound(
    installer: Installer,
    newer_bundle: Path,
    service_stub: CommandServiceStub,
    signing: SigningKit,
    tmp_path: Path,
) -> None:
    box = installer.box
    release = box.run(["readlink", "/opt/codedeploy-agent-py/current"]).stdout.strip()
    gate = f"/root/gate-{uuid.uuid4().hex[:8]}"
    ids = _deploy(
        box,
        service_stub,
        signing,
        tmp_path,
        hook=f"touch {gate}.started; while [ ! -e {gate} ]; do sleep 0.1; done",
    )
    assert wait_until(lambda: box.exists(f"{gate}.started"), 60), box.diagnostics()
    script = installer.unpack(newer_bundle)
    before = installer.snapshot()
    done = installer.run(script, "auto", "--wait-for-idle", "1")
    assert_one_line_failure(done, "a deployment command is still running", "--wait-for-idle")
    assert installer.snapshot() == before
    box.run(["touch", gate])
    assert wait_until(lambda: _all_succeeded(service_stub, ids), 120), box.diagnostics()
    assert box.run(["readlink", "/opt/codedeploy-agent-py/current"]).stdout.strip() == release


def test_an_upgrade_keeps_configuration_root_and_logs_and_switches_version(
    installer: Installer,
    newer_bundle: Path,
    service_stub: CommandServiceStub,
    signing: SigningKit,
    tmp_path: Path,
) -> None:
    box = installer.box
    ids = _deploy(box, service_stub, signing, tmp_path)
    assert wait_until(lambda: _all_succeeded(service_stub, ids), 120), box.diagnostics()
    kept = _checksums(box)
    log_before = box.read_text(LOG)
    old_release = box.run(["readlink", "/opt/codedeploy-agent-py/current"]).stdout.strip()

    done = installer.run(installer.unpack(newer_bundle), "auto", own_network=True)
    assert done.returncode == 0, done.stdout + done.stderr + box.diagnostics()

    assert box.run(["codedeploy-agent", "version"]).stdout.strip() == (
        f"codedeploy-agent {NEWER_VERSION}"
    )
    assert _checksums(box) == kept
    log_after = box.read_text(LOG)
    assert log_after.startswith(log_before)
    assert NEWER_VERSION in log_after[len(log_before) :]
    assert box.run(["readlink", "/opt/codedeploy-agent-py/previous"]).stdout.strip() == old_release
    state = box.systemctl("show", "codedeploy-agent", "--property=ActiveState").stdout
    assert state.strip() == "ActiveState=active"
    # The new version deploys.
    ids = _deploy(box, service_stub, signing, tmp_path)
    assert wait_until(lambda: _all_succeeded(service_stub, ids), 120), box.diagnostics()


def test_an_upgrade_that_does_not_become_ready_puts_the_previous_version_back(
    installer: Installer,
    broken_bundle: Path,
    service_stub: CommandServiceStub,
    signing: SigningKit,
    tmp_path: Path,
) -> None:
    box = installer.box
    release = box.run(["readlink", "/opt/codedeploy-agent-py/current"]).stdout.strip()
    script = installer.unpack(broken_bundle)
    done = installer.run(script, "auto", own_network=True)
    line = assert_one_line_failure(
        done, "the agent did not become ready", "this build cannot start"
    )
    assert "/var/log/codedeploy-agent-install.log" in line
    assert box.run(["readlink", "/opt/codedeploy-agent-py/current"]).stdout.strip() == release
    assert box.run(["codedeploy-agent", "version"]).stdout.strip() == (
        f"codedeploy-agent {NEWER_VERSION}"
    )
    releases = box.run(["ls", "/opt/codedeploy-agent-py/releases"]).stdout.split()
    assert not [r for r in releases if r.startswith(BROKEN_VERSION)]
    state = box.systemctl("show", "codedeploy-agent", "--property=ActiveState").stdout
    assert state.strip() == "ActiveState=active", box.diagnostics()
    ids = _deploy(box, service_stub, signing, tmp_path)
    assert wait_until(lambda: _all_succeeded(service_stub, ids), 120), box.diagnostics()


def test_version_names_the_installed_release(installer: Installer) -> None:
    status: Dict[str, object] = installer.status_json()
    assert status["version"] == NEWER_VERSION
    assert VERSION != NEWER_VERSION
