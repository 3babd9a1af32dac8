"""The DownloadBundle command: the revision fetched from its source and unpacked.

Each revision source has its fetcher (:mod:`agent.revision.fetchers`): local files and
folders, S3 and GitHub. Whatever the source, an archive ends up as
``<deployment>/bundle.tar`` and is unpacked into ``deployment-archive/``; a folder revision
is copied straight into ``deployment-archive/``. The network fetchers and libarchive are
imported only when a revision needs them, so a local deployment never loads botocore. Before
the group's most-recent marker names the new deployment, its appspec is read and checked
against the events the deployment will run.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import structlog

from agent.application_specification.parser import (
    check_deployment_events,
    read_application_specification,
)
from agent.deployment_root.layout import DeploymentDir
from agent.deployment_root.retention import prune_old_deployments_on_disk
from agent.deployment_specification.model import (
    BundleType,
    DeploymentSpecification,
    GitHubRevision,
    LocalRevision,
    Revision,
    S3Revision,
)
from agent.host_command.deployment_folder import deployment_dir_of, deployment_dir_on_disk
from agent.host_command.engine_settings import EngineSettings
from agent.revision.bundle import UnpackPolicy
from agent.revision.errors import RevisionSourceError
from agent.revision.fetchers.local import (
    copy_directory_revision_to_disk,
    fetch_local_bundle_to_disk,
)
from agent.revision.fetchers.revision_fetcher import RevisionFetcher
from agent.revision.fetchers.settings import DEFAULT_FETCH_SETTINGS, FetchSettings

log = structlog.get_logger(__name__)


def fetch_revision_to_disk(
    spec: DeploymentSpecification, settings: EngineSettings, *, prune_first: bool = True
) -> DeploymentDir:
    """DownloadBundle's work without its checks and its marker: make the deployment's
    folder, prune the group's oldest ones (``prune_first``), fetch the revision and unpack
    it into ``deployment-archive`` (disk, network). ``codedeploy-local`` calls it on its
    own for a local archive, without pruning, to check the unpacked revision before
    ApplicationStop: a revision it then refuses has changed nothing of the group."""
    deployment = deployment_dir_on_disk(spec, settings.root)
    if prune_first:
        prune_old_deployments_of_group_on_disk(spec, settings)
    fetcher: RevisionFetcher = settings.revision_fetcher or RevisionSources(settings.fetch)
    fetcher.fetch_to_disk(
        spec.revision,
        deployment,
        appspec_filename=spec.appspec_filename,
        policy=settings.unpack_policy,
    )
    return deployment


@dataclass(frozen=True)
class RevisionSources:
    """The agent's fetcher: each revision from its own source, with ``fetch``'s settings."""

    fetch: FetchSettings = DEFAULT_FETCH_SETTINGS

    def fetch_to_disk(
        self,
        revision: Revision,
        deployment: DeploymentDir,
        *,
        appspec_filename: str,
        policy: UnpackPolicy,
    ) -> None:
        download_revision_to_disk(
            revision, deployment, appspec_filename=appspec_filename, policy=policy, fetch=self.fetch
        )


def prune_old_deployments_of_group_on_disk(
    spec: DeploymentSpecification, settings: EngineSettings
) -> None:
    """Keep the group's newest ``max_revisions`` deployment folders (and the last
    successful one), this deployment's among them."""
    deployment = deployment_dir_of(spec, settings.root)
    prune_old_deployments_on_disk(
        settings.root,
        spec.deployment_group_id,
        deployment,
        settings.max_revisions,
        settings.trash,
    )


def record_downloaded_revision_on_disk(
    spec: DeploymentSpecification, settings: EngineSettings
) -> None:
    """DownloadBundle's last step: the group's most recent deployment is this one."""
    deployment = deployment_dir_of(spec, settings.root)
    settings.root.write_most_recent_marker(spec.deployment_group_id, deployment)


def download_bundle(
    spec: DeploymentSpecification, deployment: DeploymentDir, settings: EngineSettings
) -> None:
    started = time.monotonic()
    helper = settings.install_helper
    # A long download starts the Install's helper, its start-up beside the download; a
    # DownloadBundle that fails ends it (no Install follows).
    with helper.started_ahead_if_slow() if helper is not None else contextlib.nullcontext():
        fetch_revision_to_disk(spec, settings)
        # Catch an appspec naming events nobody will run, or a deployment naming custom
        # events the appspec lacks, before any of the new revision's scripts runs.
        appspec = read_application_specification(deployment.archive, spec.appspec_filename)
        check_deployment_events(
            appspec, spec.custom_lifecycle_events, filename=spec.appspec_filename
        )
        record_downloaded_revision_on_disk(spec, settings)
    log.info(
        "revision downloaded",
        archive=str(deployment.archive),
        seconds=round(time.monotonic() - started, 3),
    )


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
        # A tar or tgz is unpacked while it arrives (False: a small or empty object,
        # unpacked below once whole; an empty one refused in its usual words); a zip only
        # once it is whole.
        from agent.revision.fetchers.s3_unpacking import download_and_unpack_s3_bundle_to_disk
        from agent.revision.unpack import STREAMED_TYPES

        if revision.bundle_type in STREAMED_TYPES:
            if download_and_unpack_s3_bundle_to_disk(
                revision, deployment, appspec_filename=appspec_filename, policy=policy, fetch=fetch
            ):
                return
        else:
            from agent.revision.fetchers.s3 import download_s3_bundle_to_disk

            download_s3_bundle_to_disk(revision, deployment.bundle, fetch)
    elif isinstance(revision, GitHubRevision):
        from agent.revision.fetchers.github import download_github_bundle_to_disk

        download_github_bundle_to_disk(revision, deployment.bundle, fetch)
    else:
        raise RevisionSourceError(f"unknown revision source {type(revision).__name__}")
    # libarchive is loaded on the first unpack: an idle daemon has no use for it.
    from agent.revision.unpack import unpack_bundle_to_disk

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
