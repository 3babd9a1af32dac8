"""A host for in-process poller tests: its folders under the test's tmp folder, and the
poller's settings for it (the tests' host identity, a tiny back-off, a 1 s hook kill
grace), to run :func:`~agent.command_poller.poller.poll_once` or a
:class:`~agent.command_poller.loop.PollLoop` against the command service stub or the
in-process fake."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from agent.command_poller.backoff import BackoffPolicy
from agent.command_poller.loop import PollLoop
from agent.command_poller.poller import PollerSettings
from agent.deployment_root.layout import DeploymentRoot
from agent.deployment_specification.envelope import SignatureSettings
from agent.host_command.engine_settings import EngineSettings
from agent.lifecycle_event.runner import HookRunSettings
from agent.revision.fetchers.revision_fetcher import RevisionFetcher
from tests.support.command_service import HOST, REGION, CommandServiceStub, client_for
from tests.support.signing import SigningKit, signer_name_for
from tests.support.traced_revisions import read_trace
from tests.support.waiting import wait_until

TINY_BACKOFF = BackoffPolicy(
    base_seconds=0.02, cap_seconds=0.1, throttle_factor=3.0, throttle_cap_seconds=0.2
)


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
        return read_trace(self.trace)

    def settings(
        self,
        kit: Optional[SigningKit],
        *,
        allow_unsigned: bool = False,
        attempts: int = 5,
        revision_fetcher: Optional[RevisionFetcher] = None,
    ) -> PollerSettings:
        """The poller's settings; specifications are checked against ``kit``'s CA, and
        revisions come from their sources unless ``revision_fetcher`` is given."""
        ca_file = kit.ca_bundle if kit is not None else self.base / "no-ca.pem"
        return PollerSettings(
            host_identifier=HOST,
            engine=EngineSettings(
                root=self.root,
                hook_settings=HookRunSettings(kill_grace_seconds=1.0),
                revision_fetcher=revision_fetcher,
                inherited_environment=dict(os.environ),
            ),
            signature=SignatureSettings(ca_file, signer_name_for(REGION), allow_unsigned),
            backoff=TINY_BACKOFF,
            completion_attempts=attempts,
        )


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
