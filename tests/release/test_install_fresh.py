"""A fresh install from the release bundle under a real systemd, then uninstall and purge.

One box for the module, used in order: the install (run with no network at all) is the
module's fixture; the tests look at the running service, deploy with ``codedeploy-local``
and through the command service, and the last two uninstall, then purge, checking that each
leaves exactly what it promises and that doing it twice is doing it once.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Dict

import pytest

from tests.support.checkout import REPO
from tests.support.command_service import HOST, CommandServiceStub, completion_of, queue_deployment
from tests.support.host_install import (
    CONFIG,
    ON_PREMISES,
    ON_PREMISES_TEXT,
    Installer,
    agent_config,
)
from tests.support.signing import SigningKit
from tests.support.systemd_box import SystemdBox
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until

pytestmark = pytest.mark.root

VERSION = __import__("agent").__version__
# Not the default places: uninstall keeps them and --purge finds them through the agent.
LOG_DIR = "/var/log/codedeploy-fresh"
ROOT_DIR = "/var/lib/codedeploy-fresh-root"


@pytest.fixture(scope="module")
def installed(
    release_bundle: Path,
    signing: SigningKit,
    service_stub: CommandServiceStub,
    systemd_box: SystemdBox,
) -> Dict[str, str]:
    # (The signing kit is made before the box boots: files added under the overlay's lower
    # layer afterwards are not reliably seen in it; later files go in with write_file.)
    installer = Installer(systemd_box)
    before = installer.snapshot()
    script = installer.unpack(release_bundle)
    systemd_box.write_file(
        "/root/given/codedeployagent.yml",
        agent_config(service_stub.url, str(signing.ca_bundle), log_dir=LOG_DIR, root_dir=ROOT_DIR),
    )
    systemd_box.write_file("/root/given/onpremises.yml", ON_PREMISES_TEXT, mode=0o600)
    done = installer.run(
        script,
        "auto",
        "--config",
        "/root/given/codedeployagent.yml",
        "--on-premises-config",
        "/root/given/onpremises.yml",
        own_network=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr + systemd_box.diagnostics()
    return {"before": before, "script": script, "stdout": done.stdout}


def test_the_service_is_active_and_its_status_line_says_what_it_does(
    installed: Dict[str, str], systemd_box: SystemdBox
) -> None:
    assert "the agent is ready" in installed["stdout"]
    state = systemd_box.systemctl(
        "show", "codedeploy-agent", "--property=ActiveState,UnitFileState,StatusText"
    ).stdout
    assert "ActiveState=active" in state
    assert "UnitFileState=enabled" in state
    status = systemd_box.systemctl("status", "codedeploy-agent").stdout
    assert "active (running)" in status
    assert 'Status: "polling' in status
    assert HOST in status


def test_the_files_are_where_the_readme_says(
    installed: Dict[str, str], systemd_box: SystemdBox
) -> None:
    shown = systemd_box.run(["/usr/bin/codedeploy-agent", "version"])
    assert shown.stdout.strip() == f"codedeploy-agent {VERSION}"
    shown = systemd_box.run(["codedeploy-local", "--version"])
    assert shown.stdout.strip() == f"codedeploy-local {VERSION}"
    modes = systemd_box.run(
        [
            "stat",
            "-c",
            "%n %a %U",
            CONFIG,
            ON_PREMISES,
            LOG_DIR,
            ROOT_DIR,
            "/var/log/codedeploy-agent-install.log",
        ]
    ).stdout.splitlines()
    assert modes[0] == f"{CONFIG} 640 root"
    assert modes[1] == f"{ON_PREMISES} 600 root"
    # Hook output and diagnostics are for root; the root stays traversable for runas hooks.
    assert modes[2] == f"{LOG_DIR} 750 root"
    assert modes[3] == f"{ROOT_DIR} 755 root"
    assert modes[4] == "/var/log/codedeploy-agent-install.log 600 root"
    current = systemd_box.run(["readlink", "/opt/codedeploy-agent-py/current"]).stdout.strip()
    assert current.startswith(f"/opt/codedeploy-agent-py/releases/{VERSION}-")
    # The environment sees none of the system's packages, and the program is the unit's.
    cfg = systemd_box.read_text(f"{current}/pyvenv.cfg")
    assert "include-system-site-packages = false" in cfg
    unit = systemd_box.read_text("/etc/systemd/system/codedeploy-agent.service")
    assert "ExecStart=/opt/codedeploy-agent-py/current/bin/codedeploy-agent " in unit


def test_systemd_analyze_verify_says_nothing_about_the_installed_unit(
    installed: Dict[str, str], systemd_box: SystemdBox
) -> None:
    done = systemd_box.run(
        ["systemd-analyze", "verify", "/etc/systemd/system/codedeploy-agent.service"]
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_codedeploy_local_deploys_the_sample_revision(
    installed: Dict[str, str], systemd_box: SystemdBox
) -> None:
    done = systemd_box.run(
        [
            "env",
            "SAMPLE_APP_PORT=18642",
            "codedeploy-local",
            "--bundle-location",
            str(REPO / "hooks"),
            "--type",
            "directory",
            "--file-exists-behavior",
            "OVERWRITE",
            "--deployment-group",
            "sample",
        ],
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert systemd_box.exists("/tmp/codedeploy-sample/app")
    systemd_box.run(["sh", "-c", "kill $(cat /tmp/codedeploy-sample/run/server.pid)"])


def test_a_deployment_from_the_command_service_completes_under_systemd(
    installed: Dict[str, str],
    systemd_box: SystemdBox,
    service_stub: CommandServiceStub,
    signing: SigningKit,
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    trace = f"/root/trace-{tag}.log"
    made = make_revision(tmp_path / "revision", Path(trace), Path(f"/srv/app-{tag}"))
    revision = systemd_box.copy_tree_in(made, f"/root/revision-{tag}")
    ids = queue_deployment(
        service_stub, f"d-SYSTEMD{tag}", signing.sign(spec_json(f"d-SYSTEMD{tag}", revision))
    )
    assert wait_until(lambda: all(completion_of(service_stub, i) for i in ids), 120), (
        systemd_box.diagnostics()
    )
    statuses = [completion_of(service_stub, i)[0]["CommandStatus"] for i in ids]
    assert statuses == ["Succeeded"] * len(ids)
    assert systemd_box.read_text(f"/srv/app-{tag}/index.html") == "hello\n"
    assert "ApplicationStart" in systemd_box.read_text(trace)


def test_installing_again_changes_nothing_and_keeps_the_agent_running(
    installed: Dict[str, str], systemd_box: SystemdBox
) -> None:
    installer = Installer(systemd_box)
    pid = systemd_box.systemctl("show", "codedeploy-agent", "--property=MainPID").stdout
    before = installer.snapshot()
    done = installer.run(installed["script"], "auto", own_network=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is already installed and running" in done.stdout
    assert systemd_box.systemctl("show", "codedeploy-agent", "--property=MainPID").stdout == pid
    assert installer.snapshot() == before


def _kept_files(box: SystemdBox) -> str:
    done = box.run(
        [
            "find",
            "/etc/codedeploy-agent",
            "/opt/codedeploy-agent",
            LOG_DIR,
            ROOT_DIR,
            "-printf",
            "%p %y %m %s\\n",
        ]
    )
    return "\n".join(sorted(done.stdout.splitlines()))


def test_uninstall_keeps_configuration_deployment_root_and_logs(
    installed: Dict[str, str], systemd_box: SystemdBox
) -> None:
    installer = Installer(systemd_box)
    kept = _kept_files(systemd_box)
    systemd_box.systemctl("stop", "codedeploy-agent", timeout=120)  # settles the logs first
    kept = _kept_files(systemd_box)
    for attempt in range(2):
        done = installer.run(installed["script"], "--uninstall")
        assert done.returncode == 0, (attempt, done.stdout + done.stderr)
        assert done.stderr == ""
        for gone in (
            "/opt/codedeploy-agent-py",
            "/usr/bin/codedeploy-agent",
            "/usr/bin/codedeploy-local",
            "/etc/systemd/system/codedeploy-agent.service",
        ):
            assert not systemd_box.exists(gone), gone
        assert _kept_files(systemd_box) == kept
        state = systemd_box.systemctl("show", "codedeploy-agent", "--property=LoadState").stdout
        assert state.strip() == "LoadState=not-found"


def test_purge_leaves_the_host_as_before_the_install(
    installed: Dict[str, str], systemd_box: SystemdBox
) -> None:
    installer = Installer(systemd_box)
    for attempt in range(2):
        done = installer.run(installed["script"], "--uninstall", "--purge")
        assert done.returncode == 0, (attempt, done.stdout + done.stderr)
        assert installer.snapshot() == installed["before"]
        assert not systemd_box.exists(LOG_DIR)
        assert not systemd_box.exists(ROOT_DIR)
