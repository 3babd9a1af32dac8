"""An in-process revision fetcher: a fake of DownloadBundle's ``RevisionFetcher``.

For tests of DownloadBundle's own logic (the appspec checks before the group's marker
moves, the report of a fetch that failed), which need no revision source: it "fetches"
any revision by writing the files it was given into ``deployment-archive/``, or fails with
the error it was given, and records each call. The sources themselves (local files, S3
servers, GitHub) are tested against real files and servers in ``tests/revision/``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import Revision
from agent.errors import AgentError
from agent.revision.bundle import UnpackPolicy
from tests.support.archives import write_tree


@dataclass(frozen=True)
class FetchCall:
    revision: Revision
    deployment: DeploymentDir
    appspec_filename: str


@dataclass(eq=False)
class FakeRevisionFetcher:
    """Writes ``files`` (relative name -> text) as the revision, or raises ``error``."""

    files: Dict[str, str] = field(default_factory=dict)
    error: Optional[AgentError] = None
    calls: List[FetchCall] = field(default_factory=list)

    def fetch_to_disk(
        self,
        revision: Revision,
        deployment: DeploymentDir,
        *,
        appspec_filename: str,
        policy: UnpackPolicy,
    ) -> None:
        self.calls.append(FetchCall(revision, deployment, appspec_filename))
        shutil.rmtree(deployment.archive, ignore_errors=True)
        if self.error is not None:
            raise self.error
        write_tree(deployment.archive, self.files)
