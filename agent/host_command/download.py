"""DownloadBundle's first half: getting the revision onto this host.

Each revision source has its fetcher: local files and folders (``local_revision``), S3
(``download_s3``) and GitHub (``download_github``). Whatever the source, an archive ends up
as ``<deployment>/bundle.tar`` and is unpacked into ``deployment-archive/``; a folder
revision is copied straight into ``deployment-archive/``. The network fetchers are imported
only when a revision needs them, so a local deployment never loads boto3.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import structlog

from agent.configuration.model import AgentConfig
from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import (
    BundleType,
    GitHubRevision,
    LocalRevision,
    Revision,
    S3Revision,
)
from agent.errors import AgentError
from agent.host_command.bundle import UnpackPolicy
from agent.host_command.local_revision import (
    copy_directory_revision_to_disk,
    fetch_local_bundle_to_disk,
)

if TYPE_CHECKING:
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    from agent.aws_clients.wire_log import WireLogSettings

log = structlog.get_logger(__name__)

MIB = 1 << 20


class RevisionSourceError(AgentError):
    """The revision's source cannot be used by this agent."""


@dataclass(frozen=True)
class FetchSettings:
    """How S3 and GitHub revisions are fetched, resolved once from the configuration.

    ``credentials`` (botocore credentials, static or refreshable) replace boto3's default
    chain for S3 when given; ``region`` None lets botocore find it. ``max_attempts``
    counts tries per request, retries included. Objects of ``parallel_threshold`` bytes or
    more are fetched as ``part_size`` ranges by ``max_workers`` threads. ``wire_log``
    (``log_aws_wire``) makes the S3 client write its traffic there, secrets redacted.
    """

    region: Optional[str] = None
    s3_endpoint_override: Optional[str] = None
    proxy_uri: Optional[str] = None
    use_fips: bool = False
    github_api_endpoint: str = "https://api.github.com"
    credentials: Optional[Credentials] = field(default=None, repr=False)
    max_attempts: int = 4
    parallel_threshold: int = 16 * MIB
    part_size: int = 8 * MIB
    max_workers: int = 4
    progress_interval_seconds: float = 5.0
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    # First back-off of the GitHub retries; doubled on each further attempt.
    retry_delay_seconds: float = 1.0
    wire_log: Optional[WireLogSettings] = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_workers < 1 or self.part_size < 1:
            raise RevisionSourceError("fetch attempts, workers and part size must be >= 1")

    @classmethod
    def from_config(
        cls,
        config: AgentConfig,
        region: Optional[str] = None,
        credentials: Optional[Credentials] = None,
    ) -> FetchSettings:
        return cls(
            region=region,
            s3_endpoint_override=config.s3_endpoint_override,
            proxy_uri=config.proxy_uri,
            use_fips=config.use_fips_mode,
            github_api_endpoint=config.github_api_endpoint,
            credentials=credentials,
        )


DEFAULT_FETCH_SETTINGS = FetchSettings()


def download_revision_to_disk(
    revision: Revision,
    deployment: DeploymentDir,
    *,
    appspec_filename: str,
    policy: UnpackPolicy,
    fetch: FetchSettings = DEFAULT_FETCH_SETTINGS,
) -> None:
    """Fetch ``revision`` (from disk, S3 or GitHub: network) and leave it unpacked in
    ``deployment.archive``."""
    # A retried DownloadBundle starts from a clean slate, as the AWS agent does.
    shutil.rmtree(deployment.archive, ignore_errors=True)
    if isinstance(revision, LocalRevision):
        if revision.bundle_type is BundleType.DIRECTORY:
            log.info("copying revision folder", location=str(revision.location))
            copy_directory_revision_to_disk(revision.location, deployment.archive, policy=policy)
            return
        fetch_local_bundle_to_disk(revision.location, deployment.bundle)
    elif isinstance(revision, S3Revision):
        from agent.host_command.unpack_while_downloading import (
            STREAMED_TYPES,
            download_and_unpack_s3_bundle_to_disk,
        )

        if revision.bundle_type in STREAMED_TYPES:
            if download_and_unpack_s3_bundle_to_disk(
                revision, deployment, appspec_filename=appspec_filename, policy=policy, fetch=fetch
            ):
                return
        else:
            from agent.host_command.download_s3 import download_s3_bundle_to_disk

            download_s3_bundle_to_disk(revision, deployment.bundle, fetch)
    elif isinstance(revision, GitHubRevision):
        from agent.host_command.download_github import download_github_bundle_to_disk

        download_github_bundle_to_disk(revision, deployment.bundle, fetch)
    else:
        raise RevisionSourceError(f"unknown revision source {type(revision).__name__}")
    # libarchive is loaded on the first unpack: an idle daemon has no use for it.
    from agent.host_command.unpack import unpack_bundle_to_disk

    log.info("unpacking bundle", bundle=str(deployment.bundle), type=revision.bundle_type.value)
    # A local bundle's messages name the user's file, not its hard link in the deployment.
    shown_as: Optional[Path] = revision.location if isinstance(revision, LocalRevision) else None
    unpack_bundle_to_disk(
        deployment.bundle,
        revision.bundle_type,
        deployment.archive,
        appspec_filename=appspec_filename,
        policy=policy,
        shown_as=shown_as,
    )
