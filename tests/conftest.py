"""Shared fixtures: a codedeploy-local with its own deployment root, the test command
service, a signing kit for deployment specifications, a daemon against the service, the
receiving end of a systemd notify socket, and a real systemd booted in a throwaway root."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from tests.support import LocalAgent
from tests.support_command_service import CommandServiceStub
from tests.support_signing import SigningKit, make_signing_kit
from tests.support_systemd import SystemdBox, boot_systemd_box, systemd_box_unavailable_reason

if TYPE_CHECKING:
    from tests.daemon.test_daemon_process import Daemon, NotifyReceiver


@pytest.fixture
def local_agent(tmp_path: Path) -> LocalAgent:
    base = tmp_path / "agent"
    base.mkdir()
    agent = LocalAgent(base)
    agent.config.write_text(
        f":root_dir: '{agent.root}'\n:log_dir: '{base / 'log'}'\n:hook_kill_grace_seconds: 1\n",
        encoding="utf-8",
    )
    return agent


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
def agent_daemon(tmp_path: Path, stub: CommandServiceStub, kit: SigningKit) -> Iterator[Daemon]:
    """A ``codedeploy-agent`` configured under tmp_path against the stub (strict chain to
    the kit's CA); its processes are ended when the test ends."""
    from tests.daemon.test_daemon_process import Daemon

    daemon = Daemon(tmp_path, stub, kit)
    try:
        yield daemon
    finally:
        daemon.cleanup()


@pytest.fixture
def notify() -> Iterator[NotifyReceiver]:
    """The service manager's end of a ``NOTIFY_SOCKET``, in a folder of /tmp."""
    from tests.daemon.test_daemon_process import NotifyReceiver

    # A unix socket path is at most 107 bytes: pytest's folders can be longer.
    folder = Path(tempfile.mkdtemp(prefix="sdn", dir="/tmp"))
    receiver = NotifyReceiver(folder / "notify")
    try:
        yield receiver
    finally:
        receiver.close()
        receiver.address.unlink(missing_ok=True)
        folder.rmdir()


@pytest.fixture(scope="module")
def systemd_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdBox]:
    """A systemd booted once per test module in an overlay of ``/`` (see
    ``tests/support_systemd.py``); tests in one module share it, so each uses names of its
    own. Skipped when the machine cannot boot one (not root, no overlay, no cgroup2)."""
    reason = systemd_box_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with boot_systemd_box(tmp_path_factory.mktemp("systemd-box")) as box:
        yield box
