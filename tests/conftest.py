"""Shared fixtures: a codedeploy-local with its own deployment root, the test command
service, a signing kit for deployment specifications, a daemon against the service, the
receiving end of a systemd notify socket, and a real systemd booted in a throwaway root."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support.command_service import CommandServiceStub
from tests.support.daemon import AgentDaemon
from tests.support.local_agent import LocalAgent
from tests.support.notify_socket import NotifyReceiver, notify_receiver
from tests.support.signing import SigningKit, make_signing_kit
from tests.support.systemd_box import SystemdBox, boot_systemd_box, systemd_box_unavailable_reason


@pytest.fixture
def local_agent(tmp_path: Path) -> LocalAgent:
    """A ``codedeploy-local`` configured under tmp_path/agent."""
    return LocalAgent.configured(tmp_path / "agent")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> SigningKit:
    """A test CA and a signer named as AWS's, to sign deployment specifications."""
    return make_signing_kit(tmp_path_factory.mktemp("signing"))


@pytest.fixture
def stub() -> Iterator[CommandServiceStub]:
    """The JSON 1.1 command service on loopback (hung requests are released in 5 s)."""
    with CommandServiceStub(hang_seconds=5) as service:
        yield service


@pytest.fixture
def agent_daemon(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit
) -> Iterator[AgentDaemon]:
    """A ``codedeploy-agent`` configured under tmp_path against the stub (strict chain to
    the kit's CA); its processes are ended when the test ends."""
    daemon = AgentDaemon(tmp_path, stub, kit)
    try:
        yield daemon
    finally:
        daemon.cleanup()


@pytest.fixture
def notify() -> Iterator[NotifyReceiver]:
    """The service manager's end of a ``NOTIFY_SOCKET``, in a folder of /tmp."""
    with notify_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def systemd_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdBox]:
    """A systemd booted once per test module in an overlay of ``/`` (see
    ``tests/support/systemd_box.py``); tests in one module share it, so each uses names of its
    own. Skipped when the machine cannot boot one (not root, no overlay, no cgroup2)."""
    reason = systemd_box_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with boot_systemd_box(tmp_path_factory.mktemp("systemd-box")) as box:
        yield box
