"""Helpers for the poller and daemon tests: revisions, specifications, a host's settings.

A revision is a Local Directory with an appspec whose hooks append ``<event>`` to a trace
file, so a test sees which scripts ran, in which order, and how many times.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

from agent.aws_clients.command_service import (
    CommandServiceClient,
    CommandServiceSettings,
    new_command_service_client,
)
from agent.command_poller.backoff import BackoffPolicy
from agent.command_poller.loop import PollLoop
from agent.command_poller.poller import PollerSettings
from agent.deployment_root.layout import DeploymentRoot
from agent.deployment_specification.envelope import SignatureSettings
from agent.host_command.engine_settings import EngineSettings
from agent.lifecycle_event.runner import HookRunSettings
from tests.support_command_service import CommandServiceStub
from tests.support_signing import SigningKit, signer_name_for

HOST = "arn:aws:iam::123456789012:user/test-host"
REGION = "us-east-1"
SERVICE_ORDER = (
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
)
HOOKED_EVENTS = ("ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart")
TINY_BACKOFF = BackoffPolicy(
    base_seconds=0.02, cap_seconds=0.1, throttle_factor=3.0, throttle_cap_seconds=0.2
)


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def make_revision(
    folder: Path,
    trace: Path,
    destination: Path,
    *,
    events: Iterable[str] = HOOKED_EVENTS,
    scripts: Optional[Dict[str, str]] = None,
    timeout: int = 60,
) -> Path:
    """A revision folder whose hooks append their event name to ``trace``.

    ``scripts`` replaces the body of some events' scripts (after the trace line).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "content").mkdir(exist_ok=True)
    (folder / "content" / "index.html").write_text("hello\n", encoding="utf-8")
    (folder / "scripts").mkdir(exist_ok=True)
    hooks: List[str] = []
    for event in events:
        script = folder / "scripts" / f"{event}.sh"
        body = (scripts or {}).get(event, "")
        script.write_text(
            f'#!/bin/sh\necho "$LIFECYCLE_EVENT $DEPLOYMENT_ID" >> "{trace}"\n{body}\n',
            encoding="utf-8",
        )
        script.chmod(0o755)
        hooks.append(f"  {event}:\n    - location: scripts/{event}.sh\n      timeout: {timeout}\n")
    (folder / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nfiles:\n"
        f"  - source: content\n    destination: {destination}\n"
        "hooks:\n" + "".join(hooks),
        encoding="utf-8",
    )
    return folder


def spec_json(
    deployment_id: str, revision: Path, *, group_id: str = "group-1", **overrides: object
) -> str:
    document: Dict[str, object] = {
        "DeploymentId": f"arn:aws:codedeploy:us-east-1:123456789012:deployment/{deployment_id}",
        "DeploymentGroupId": group_id,
        "DeploymentGroupName": "group-name",
        "ApplicationName": "app",
        "Revision": {
            "RevisionType": "Local Directory",
            "LocalRevision": {"Location": str(revision), "BundleType": "directory"},
        },
        "AgentActionOverrides": {"AgentOverrides": {"FileExistsBehavior": "OVERWRITE"}},
    }
    document.update(overrides)
    return json.dumps(document)


def queue_deployment(
    stub: CommandServiceStub,
    deployment_id: str,
    payload: str,
    envelope_format: str = "PKCS7/JSON",
    commands: Iterable[str] = SERVICE_ORDER,
    host: str = HOST,
) -> List[str]:
    """Serve the specification and queue the commands for ``host``; returns their host
    command ids."""
    stub.set_specification(deployment_id, payload, envelope_format)
    return [
        stub.queue_command(host, name, deployment_id)["HostCommandIdentifier"] for name in commands
    ]


def client_for(stub: CommandServiceStub, *, read_timeout: float = 2.0) -> CommandServiceClient:
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    settings = CommandServiceSettings(
        region=REGION, endpoint_url=stub.url, read_timeout=read_timeout, max_attempts=1
    )
    return new_command_service_client(settings, Credentials("AKIDEXAMPLE", "not-a-secret"))


@dataclass(frozen=True)
class Host:
    """One host's folders under tmp_path."""

    base: Path

    @property
    def root(self) -> DeploymentRoot:
        return DeploymentRoot(self.base / "deployment-root")

    @property
    def trace(self) -> Path:
        return self.base / "trace.log"

    @property
    def destination(self) -> Path:
        return self.base / "www"

    def trace_lines(self) -> List[str]:
        if not self.trace.exists():
            return []
        return self.trace.read_text(encoding="utf-8").splitlines()

    def settings(
        self, kit: Optional[SigningKit], *, allow_unsigned: bool = False, attempts: int = 5
    ) -> PollerSettings:
        ca_file = kit.ca_bundle if kit is not None else self.base / "no-ca.pem"
        return PollerSettings(
            host_identifier=HOST,
            engine=EngineSettings(
                root=self.root, hook_settings=HookRunSettings(kill_grace_seconds=1.0)
            ),
            signature=SignatureSettings(ca_file, signer_name_for(REGION), allow_unsigned),
            backoff=TINY_BACKOFF,
            completion_attempts=attempts,
        )


def completion_of(
    stub: CommandServiceStub, host_command_identifier: str
) -> List[Dict[str, object]]:
    """The completions sent for one command, with the diagnostics payload decoded."""
    found: List[Dict[str, object]] = []
    for body in stub.completions():
        if body["HostCommandIdentifier"] == host_command_identifier:
            decoded = dict(body)
            decoded["payload"] = json.loads(body["Diagnostics"]["Payload"])
            found.append(decoded)
    return found


def acknowledgements_of(stub: CommandServiceStub, host_command_identifier: str) -> List[bool]:
    """The IsCommandNoop flag of each acknowledgement of one command."""
    return [
        bool(json.loads(request.body["Diagnostics"]["Payload"])["IsCommandNoop"])
        for request in stub.requests_for("PutHostCommandAcknowledgement")
        if request.body["HostCommandIdentifier"] == host_command_identifier
        and request.fault is None
    ]


def run_loop_until_completed(
    stub: CommandServiceStub, settings: PollerSettings, count: int
) -> None:
    """Run a poll loop until the stub has ``count`` completions, then stop it."""
    loop = PollLoop(client_for(stub), settings, wait_between_runs=0.01)
    loop.start()
    try:
        assert wait_until(lambda: len(stub.completions()) == count)
    finally:
        assert loop.wait_stopped(30)
