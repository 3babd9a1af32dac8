"""DownloadBundle's first half: getting the revision onto this host.

Each revision source has its fetcher: local files and folders here; S3 and GitHub slot in
beside them (they come with the daemon). Whatever the source, an archive ends up as
``<deployment>/bundle.tar`` and is unpacked into ``deployment-archive/``; a folder
revision is copied straight into ``deployment-archive/``.
"""

from __future__ import annotations

import shutil

import structlog

from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import (
    BundleType,
    GitHubRevision,
    LocalRevision,
    Revision,
    S3Revision,
)
from agent.errors import AgentError
from agent.host_command.local_revision import fetch_local_bundle_to_disk
from agent.host_command.unpack import (
    UnpackPolicy,
    copy_directory_revision_to_disk,
    unpack_bundle_to_disk,
)

log = structlog.get_logger(__name__)


class RevisionSourceError(AgentError):
    """The revision's source cannot be used by this agent."""


def download_revision_to_disk(
    revision: Revision,
    deployment: DeploymentDir,
    *,
    appspec_filename: str,
    policy: UnpackPolicy,
) -> None:
    """Fetch ``revision`` and leave it unpacked in ``deployment.archive``."""
    # A retried DownloadBundle starts from a clean slate, as the AWS agent does.
    shutil.rmtree(deployment.archive, ignore_errors=True)
    if isinstance(revision, LocalRevision):
        if revision.bundle_type is BundleType.DIRECTORY:
            log.info("copying revision folder", location=str(revision.location))
            copy_directory_revision_to_disk(revision.location, deployment.archive, policy=policy)
            return
        fetch_local_bundle_to_disk(revision.location, deployment.bundle)
    elif isinstance(revision, (S3Revision, GitHubRevision)):
        kind = "S3" if isinstance(revision, S3Revision) else "GitHub"
        raise RevisionSourceError(
            f"{kind} revisions are fetched by the agent daemon, which this build does not"
            " include yet; download the bundle and deploy it as a local file"
        )
    log.info("unpacking bundle", bundle=str(deployment.bundle), type=revision.bundle_type.value)
    unpack_bundle_to_disk(
        deployment.bundle,
        revision.bundle_type,
        deployment.archive,
        appspec_filename=appspec_filename,
        policy=policy,
    )
