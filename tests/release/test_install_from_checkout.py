"""``scripts/install`` run from a checkout: it builds a bundle there first (the wheel, and
the dependencies from the package index) and installs it as it would install a release
bundle. The package index here is local and needs no network: the stores pip is configured
with, a folder of wheels given through ``PIP_FIND_LINKS`` with ``PIP_NO_INDEX`` (as an operator may
set pip up): the wheels of this checkout's release bundle and the build backend, gathered
before the box boots so that the box sees them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.support.checkout import REPO
from tests.support.host_install import Installer
from tests.support.systemd_box import SystemdBox

pytestmark = pytest.mark.root

VERSION = __import__("agent").__version__


@pytest.fixture(scope="module")
def wheelhouse(release_bundle: Path, bundles_home: Path) -> Path:
    """The bundle's wheels, its pip, and setuptools (the project's build backend)."""
    where = bundles_home / "checkout-index"
    with tarfile.open(release_bundle) as tar:
        tar.extractall(where / "unpacked", filter="data")
    (top,) = (where / "unpacked").iterdir()
    index = where / "wheels"
    index.mkdir()
    for wheel in [*(top / "wheelhouse").glob("*.whl"), *(top / "tools").glob("*.whl")]:
        shutil.copy2(wheel, index)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--dest",
            str(index),
            "setuptools",
            "wheel",
        ],
        check=True,
        timeout=300,
    )
    return index


def test_install_from_a_checkout_then_remove_it(wheelhouse: Path, systemd_box: SystemdBox) -> None:
    installer = Installer(systemd_box)
    before = installer.snapshot()
    done = installer.run(
        str(REPO / "scripts" / "install"),
        "auto",
        own_network=True,
        env={"PIP_FIND_LINKS": str(wheelhouse), "PIP_NO_INDEX": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr + systemd_box.diagnostics()
    assert f"building a release bundle from the checkout {REPO}" in done.stdout
    assert "the agent is ready" in done.stdout
    shown = systemd_box.run(["codedeploy-agent", "version"])
    assert shown.stdout.strip() == f"codedeploy-agent {VERSION}"
    state = systemd_box.systemctl("show", "codedeploy-agent", "--property=ActiveState").stdout
    assert state.strip() == "ActiveState=active"

    done = installer.run(str(REPO / "scripts" / "install"), "--uninstall", "--purge")
    assert done.returncode == 0, done.stdout + done.stderr
    assert installer.snapshot() == before
