"""What DownloadBundle needs of a fetcher: a Protocol, the revision pipeline's seam.

DownloadBundle hands the revision and the deployment's folders to a fetcher, which leaves
the revision unpacked in ``deployment-archive/``. The agent's own fetcher picks the
revision's source (local file or folder, S3, GitHub: see ``host_command/download_bundle.py``);
tests of DownloadBundle's own logic (the appspec checks, the markers, the reports) pass an
in-process one. A fetcher raises an :class:`~agent.errors.AgentError` (a
:class:`~agent.revision.errors.RevisionSourceError` for the source's faults) when the
revision cannot be had.
"""

from __future__ import annotations

from typing import Protocol

from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import Revision
from agent.revision.bundle import UnpackPolicy


class RevisionFetcher(Protocol):
    """Brings a revision from its source onto this host (disk, network)."""

    def fetch_to_disk(
        self,
        revision: Revision,
        deployment: DeploymentDir,
        *,
        appspec_filename: str,
        policy: UnpackPolicy,
    ) -> None:
        """Leave ``revision`` unpacked in ``deployment.archive`` (replacing what is there),
        checked against ``policy``; ``appspec_filename`` names the appspec that marks the
        revision's top folder in an archive."""
        ...
