"""Bundles for the installer's tests, built once per session under /var/tmp (where a
systemd box sees them): this checkout's, a newer version's (each also with the server), and one whose agent cannot
start;
and, per module, the command service the installed agents poll and the signing kit of the
specifications it serves (made under /var/tmp too, before the module's box boots)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.checkout import REPO
from tests.support.command_service import CommandServiceStub
from tests.support.host_install import build_bundle, bundles_folder, copy_checkout
from tests.support.signing import SigningKit, make_signing_kit

NEWER_VERSION = "0.1.1.dev7"
BROKEN_VERSION = "0.1.2.dev7"


@pytest.fixture(scope="session")
def bundles_home() -> Iterator[Path]:
    with bundles_folder() as folder:
        yield folder


@pytest.fixture(scope="session")
def release_bundle(bundles_home: Path) -> Path:
    """This checkout's bundle."""
    return build_bundle(REPO, bundles_home / "dist")


@pytest.fixture(scope="session")
def server_bundle(bundles_home: Path) -> Path:
    """This checkout's bundle with the server's dependencies (install --with-server)."""
    return build_bundle(REPO, bundles_home / "dist-server", "--with-server")


@pytest.fixture(scope="session")
def newer_bundle(bundles_home: Path) -> Path:
    source = copy_checkout(bundles_home / "newer-src", NEWER_VERSION)
    return build_bundle(source, bundles_home / "dist-newer")


@pytest.fixture(scope="session")
def newer_server_bundle(bundles_home: Path) -> Path:
    """The newer version, built with the server's dependencies."""
    source = copy_checkout(bundles_home / "newer-server-src", NEWER_VERSION)
    return build_bundle(source, bundles_home / "dist-newer-server", "--with-server")


@pytest.fixture(scope="session")
def broken_bundle(bundles_home: Path) -> Path:
    """A newer version whose daemon's ``run`` fails at once."""
    source = copy_checkout(bundles_home / "broken-src", BROKEN_VERSION, break_run=True)
    return build_bundle(source, bundles_home / "dist-broken")


@pytest.fixture(scope="module")
def service_stub() -> Iterator[CommandServiceStub]:
    with CommandServiceStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def signing(bundles_home: Path) -> SigningKit:
    folder = bundles_home / f"signing-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return make_signing_kit(folder)
