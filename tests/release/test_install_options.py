"""``install``'s other ways: on a host that systemd does not run, from a bundle given by
its path, with a proxy, and without starting the service.

Without systemd, it falls back to the agent's own ``start`` (a pid file), says so, and
``--uninstall`` stops it the same way: the installer, and so the agent it starts, run in a
mount namespace of their own where ``/run/systemd`` is hidden (tests/support/hide_systemd.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import pytest

from tests.support.checkout import REPO
from tests.support.host_install import CONFIG, Installer
from tests.support.systemd_box import SystemdBox

pytestmark = pytest.mark.root

HIDE = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--",
    sys.executable,
    str(REPO / "tests" / "support" / "hide_systemd.py"),
]


def _without_systemd(script: str, *arguments: str) -> List[str]:
    return [*HIDE, script, *arguments]


def test_install_and_uninstall_without_systemd(
    release_bundle: Path, systemd_box: SystemdBox
) -> None:
    installer = Installer(systemd_box)
    script = installer.unpack(release_bundle)
    before = installer.snapshot()
    # The bundle is the tar.gz given by its path (this unpacked one's own is not used).
    done = installer.run(
        HIDE[0],
        *_without_systemd(
            script, "--bundle", str(release_bundle), "--proxy", "http://127.0.0.1:3128"
        )[1:],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "systemd does not run this host: started the agent with `codedeploy-agent start`" in (
        done.stdout
    )
    status = systemd_box.run(["codedeploy-agent", "status"])
    assert status.returncode == 0, status.stdout + status.stderr
    assert "is running (pid" in status.stdout
    assert ":proxy_uri: 'http://127.0.0.1:3128'" in systemd_box.read_text(CONFIG).splitlines()
    enabled = systemd_box.systemctl("is-enabled", "codedeploy-agent").stdout.strip()
    assert enabled == "disabled"

    done = installer.run(HIDE[0], *_without_systemd(script, "--uninstall", "--purge")[1:])
    assert done.returncode == 0, done.stdout + done.stderr
    assert not systemd_box.exists("/usr/bin/codedeploy-agent")
    pid_file = "/opt/codedeploy-agent/state/.pid/codedeploy-agent.pid"
    assert not systemd_box.exists(pid_file)
    assert installer.snapshot() == before


def test_no_start_installs_and_enables_the_service_without_starting_it(
    release_bundle: Path, systemd_box: SystemdBox
) -> None:
    installer = Installer(systemd_box)
    script = installer.unpack(release_bundle)
    before = installer.snapshot()
    done = installer.run(script, "auto", "--no-start", own_network=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not started (--no-start)" in done.stdout
    shown = systemd_box.systemctl(
        "show", "codedeploy-agent", "--property=ActiveState,UnitFileState"
    ).stdout
    assert shown.split() == ["ActiveState=inactive", "UnitFileState=enabled"]
    done = installer.run(script, "--uninstall", "--purge")
    assert done.returncode == 0, done.stdout + done.stderr
    assert installer.snapshot() == before
