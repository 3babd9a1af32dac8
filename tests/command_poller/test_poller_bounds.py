"""A command whose ids or name the host cannot hold is a failed command, never a crash.

The poll reports the command as failed with one line naming the field, creates nothing
under the deployment root's own folders, and the next deployment runs as usual. The
poller's checks run against the in-process command service; what arrives over the wire
(a nonce that is no number) against the stub on loopback.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from agent.command_poller.poller import poll_once
from agent.deployment_root.layout import DeploymentRoot
from tests.support.command_service import (
    HOST,
    CommandServiceStub,
    client_for,
    completion_of,
    queue_deployment,
)
from tests.support.fake_command_service import FakeCommandService
from tests.support.poller_host import Host
from tests.support.signing import SigningKit
from tests.support.traced_revisions import make_revision, spec_json


@pytest.mark.parametrize(
    ("group", "named"),
    [
        ("g" * 300, "DeploymentGroupId"),
        ("deployment-instructions", "DeploymentGroupId"),
        ("ongoing-deployment", "DeploymentGroupId"),
        ("deployment-logs", "DeploymentGroupId"),
        ("two\nlines", "DeploymentGroupId"),
    ],
)
def test_a_group_id_that_cannot_name_a_folder_fails_the_command_and_polling_goes_on(
    service: FakeCommandService, kit: SigningKit, tmp_path: Path, group: str, named: str
) -> None:
    host = Host(tmp_path)
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    bad = queue_deployment(
        service,
        "d-BADGROUP1",
        kit.sign(spec_json("d-BADGROUP1", revision, group_id=group)),
        commands=("DownloadBundle", "ApplicationStop"),
    )
    good = queue_deployment(
        service,
        "d-GOODGRP01",
        kit.sign(spec_json("d-GOODGRP01", revision)),
        commands=("DownloadBundle", "Install"),
    )
    settings = host.settings(kit)
    for _ in range(4):
        assert poll_once(service, settings, rng=random.Random(1)).command is not None
    for command in bad:
        [report] = completion_of(service, command)
        assert report["CommandStatus"] == "Failed"
        payload = report["payload"]
        assert isinstance(payload, dict) and payload["error_code"] == 5
        message = str(payload["message"])
        assert named in message and message.isprintable() and len(message) < 300
    assert [completion_of(service, c)[0]["CommandStatus"] for c in good] == ["Succeeded"] * 2
    assert (host.destination / "index.html").exists()
    for own in ("deployment-instructions", "deployment-logs", "ongoing-deployment"):
        folder = host.root.path / own
        assert not folder.exists() or not any(p.is_dir() for p in folder.iterdir())


def test_a_command_name_from_the_service_is_bounded(
    service: FakeCommandService, kit: SigningKit, tmp_path: Path
) -> None:
    host = Host(tmp_path)
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    service.set_specification(
        "d-BADNAME01", kit.sign(spec_json("d-BADNAME01", revision)), "PKCS7/JSON"
    )
    command = service.queue_command(HOST, "Application\nStart", "d-BADNAME01")
    poll_once(service, host.settings(kit), rng=random.Random(1))
    [report] = completion_of(service, command["HostCommandIdentifier"])
    assert report["CommandStatus"] == "Failed"
    assert "command name" in json.dumps(report["payload"])


def test_the_configured_tracking_folder_is_refused_as_a_group_id_by_the_engine(
    service: FakeCommandService, kit: SigningKit, tmp_path: Path
) -> None:
    # The specification's parser knows only the default folder names; the engine knows
    # the configured one.
    host = Host(tmp_path)
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    ids = queue_deployment(
        service,
        "d-TRACKING1",
        kit.sign(spec_json("d-TRACKING1", revision, group_id="busy")),
        commands=("DownloadBundle",),
    )
    settings = host.settings(kit)
    root = DeploymentRoot(host.root.path, ongoing_deployment_tracking="busy")
    settings = dataclasses.replace(settings, engine=dataclasses.replace(settings.engine, root=root))
    poll_once(service, settings, rng=random.Random(1))
    [report] = completion_of(service, ids[0])
    assert report["CommandStatus"] == "Failed"
    assert "deployment group id 'busy'" in json.dumps(report["payload"])
    assert not (root.path / "busy" / "d-TRACKING1").is_dir()


def test_a_nonce_that_is_no_number_does_not_lose_the_command(
    stub: CommandServiceStub, kit: SigningKit, tmp_path: Path
) -> None:
    host = Host(tmp_path)
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    stub.set_specification(
        "d-NONCE0001", kit.sign(spec_json("d-NONCE0001", revision)), "PKCS7/JSON"
    )
    command = stub.queue_command(HOST, "DownloadBundle", "d-NONCE0001", nonce="x1")  # type: ignore[arg-type]
    poll_once(client_for(stub), host.settings(kit), rng=random.Random(1))
    [report] = completion_of(stub, command["HostCommandIdentifier"])
    assert report["CommandStatus"] == "Succeeded"
