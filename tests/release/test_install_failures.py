"""Every way ``install`` can fail: one clear line, a non-zero exit, and the host unchanged.

Each test takes a listing of everything an install touches (``Installer.snapshot``) before
and after the failed run, in one systemd box for the module. The failures that come late
(a configuration the agent refuses, found after the virtual environment was built) show
that the undo journal takes back what was done.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.host_install import Installer, assert_one_line_failure
from tests.support.systemd_box import SystemdBox
from tests.support.waiting import wait_until

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def installer(release_bundle: Path, systemd_box: SystemdBox) -> Installer:
    return Installer(systemd_box)


@pytest.fixture(scope="module")
def script(installer: Installer, release_bundle: Path) -> str:
    return installer.unpack(release_bundle)


@pytest.fixture
def unchanged(installer: Installer) -> Iterator[None]:
    """Fails the test when the watched paths differ after it."""
    before = installer.snapshot()
    yield
    assert installer.snapshot() == before


def _copy_of_bundle(installer: Installer, script: str, name: str) -> str:
    """A copy of the unpacked bundle in the box, to spoil; returns its install script."""
    folder = script.rsplit("/", 1)[0]
    copy = f"/bundles/{name}"
    done = installer.box.run(["cp", "-a", folder, copy])
    assert done.returncode == 0, done.stderr
    return f"{copy}/install"


def _edit_manifest(installer: Installer, script: str, old: str, new: str) -> None:
    manifest = script.rsplit("/", 1)[0] + "/MANIFEST.json"
    done = installer.box.run(["sed", "-i", f"s/{old}/{new}/", manifest])
    assert done.returncode == 0, done.stderr


def test_not_root(installer: Installer, script: str, unchanged: None) -> None:
    done = installer.run(script, "auto", user=65534)
    assert_one_line_failure(done, "must run as root")


def _fake_bin(installer: Installer, name: str, programs: dict[str, str]) -> str:
    """A PATH of its own: the few tools the sh part needs, and the given stand-ins."""
    folder = f"/fakebin/{name}"
    for tool in ("id", "dirname"):
        installer.box.run(["mkdir", "-p", folder])
        installer.box.run(["ln", "-sf", f"/usr/bin/{tool}", f"{folder}/{tool}"])
    for program, body in programs.items():
        installer.box.write_file(f"{folder}/{program}", f"#!/bin/sh\n{body}\n", mode=0o755)
    return folder


def test_no_usable_python_and_no_package_manager(
    installer: Installer, script: str, unchanged: None
) -> None:
    # A python3 that is too old (it fails the version check), and nothing to install one.
    path = _fake_bin(installer, "old-python", {"python3": "exit 1"})
    done = installer.run(script, "auto", env={"PATH": path})
    assert_one_line_failure(done, "no Python 3.9 or newer", "no dnf, yum or apt-get")


def test_no_usable_python_and_no_network_for_apt(
    installer: Installer, script: str, unchanged: None
) -> None:
    path = _fake_bin(installer, "apt-offline", {"apt-get": "exit 100"})
    done = installer.run(script, "auto", env={"PATH": path})
    line = assert_one_line_failure(done, "could not install a Python 3.9 or newer with apt-get")
    assert "no network" in line


@pytest.mark.parametrize(
    ("platform", "needle"),
    [
        ("manylinux_2_17_aarch64", "this bundle is for aarch64 hosts"),
        ("manylinux_2_99_x86_64", "needs glibc 2.99 or newer"),
    ],
)
def test_a_bundle_for_another_platform(
    installer: Installer, script: str, unchanged: None, platform: str, needle: str
) -> None:
    copy = _copy_of_bundle(installer, script, f"platform-{platform}")
    _edit_manifest(
        installer, copy, '"platform": "manylinux_2_17_x86_64"', f'"platform": "{platform}"'
    )
    done = installer.run(copy, "auto", own_network=True)
    assert_one_line_failure(done, needle)


def test_a_bundle_for_another_python(installer: Installer, script: str, unchanged: None) -> None:
    copy = _copy_of_bundle(installer, script, "python")
    _edit_manifest(installer, copy, '"python_version": "3\\.[0-9]*"', '"python_version": "3.99"')
    done = installer.run(copy, "auto", own_network=True)
    assert_one_line_failure(done, "CPython 3.99", "no python3.99")


def test_a_damaged_bundle(installer: Installer, script: str, unchanged: None) -> None:
    copy = _copy_of_bundle(installer, script, "damaged")
    folder = copy.rsplit("/", 1)[0]
    wheel = installer.box.run(["sh", "-c", f"ls {folder}/wheelhouse/*.whl | head -1"]).stdout
    installer.box.run(["truncate", "-s", "100", wheel.strip()])
    done = installer.run(copy, "auto", own_network=True)
    assert_one_line_failure(done, "the bundle is damaged: wheelhouse/", "does not match")


def test_a_truncated_bundle_file(
    installer: Installer, script: str, release_bundle: Path, unchanged: None
) -> None:
    installer.box.run(["sh", "-c", f"head -c 100000 {release_bundle} > /bundles/cut.tar.gz"])
    done = installer.run(script, "auto", "--bundle", "/bundles/cut.tar.gz", own_network=True)
    assert_one_line_failure(done, "cannot unpack /bundles/cut.tar.gz")


def test_a_missing_bundle_file(installer: Installer, script: str, unchanged: None) -> None:
    done = installer.run(script, "--bundle", "/bundles/nothing.tar.gz", own_network=True)
    assert_one_line_failure(done, "--bundle /bundles/nothing.tar.gz: no such file")


def test_a_full_disk(installer: Installer, script: str) -> None:
    installer.box.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", "/opt"])
    try:
        before = installer.snapshot()
        done = installer.run(script, "auto", own_network=True)
        line = assert_one_line_failure(done, "not enough free space", "/opt/codedeploy-agent-py")
        assert "MiB free" in line
        assert installer.snapshot() == before
    finally:
        installer.box.run(["umount", "/opt"])


def test_a_configuration_the_agent_refuses_is_undone(
    installer: Installer, script: str, unchanged: None
) -> None:
    installer.box.write_file("/root/bad.yml", ":wait_between_runs: -5\n")
    done = installer.run(script, "auto", "--config", "/root/bad.yml", own_network=True)
    assert_one_line_failure(done, "wait_between_runs")


def test_a_bad_proxy(installer: Installer, script: str, unchanged: None) -> None:
    done = installer.run(script, "auto", "--proxy", "not a proxy", own_network=True)
    assert_one_line_failure(done, "--proxy 'not a proxy' is not a proxy URI")


def test_a_bad_option_is_a_usage_error(installer: Installer, script: str, unchanged: None) -> None:
    done = installer.run(script, "auto", "--frobnicate")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "--frobnicate" in done.stderr


def test_a_checkout_with_no_network_for_the_package_index(
    installer: Installer, unchanged: None
) -> None:
    from tests.support.checkout import REPO

    done = installer.run(
        str(REPO / "scripts" / "install"),
        "auto",
        own_network=True,
        env={
            "PIP_CONFIG_FILE": "/dev/null",
            "PIP_INDEX_URL": "https://pypi.org/simple",
            "PIP_RETRIES": "0",
            "PIP_TIMEOUT": "2",
        },
    )
    assert_one_line_failure(
        done, "cannot build the agent from this checkout", "is the package index reachable"
    )


def test_a_second_install_while_one_runs(
    installer: Installer, script: str, unchanged: None
) -> None:
    lock = "/run/codedeploy-agent-install.lock"
    holder = threading.Thread(target=installer.box.run, args=(["flock", lock, "sleep", "4"],))
    holder.start()
    try:
        held = ["flock", "--nonblock", lock, "true"]
        assert wait_until(lambda: installer.box.run(held).returncode != 0, 10)
        done = installer.run(script, "auto", own_network=True)
        assert_one_line_failure(done, "another install is running")
    finally:
        holder.join()
