"""Typed, immutable model of a deployment specification (docs/behaviour.md section 6).

The daemon gets a specification from the command service; ``codedeploy-local`` builds one
from its flags. Either way the engine only sees these objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Union

from agent import event_names
from agent.application_specification.model import DEFAULT_APPSPEC_FILENAME, FileExistsBehavior
from agent.errors import AgentError


class DeploymentSpecError(AgentError):
    """The deployment specification is malformed, unsigned where it must be signed, ..."""


class BundleType(str, enum.Enum):
    TAR = "tar"
    TGZ = "tgz"
    ZIP = "zip"
    DIRECTORY = "directory"


@dataclass(frozen=True)
class S3Revision:
    bucket: str
    key: str
    bundle_type: BundleType
    version: Optional[str] = None
    etag: Optional[str] = None

    def hook_environment(self) -> dict[str, str]:
        return {
            "BUNDLE_BUCKET": self.bucket,
            "BUNDLE_KEY": self.key,
            "BUNDLE_VERSION": self.version or "",
            "BUNDLE_ETAG": self.etag or "",
        }


@dataclass(frozen=True)
class GitHubRevision:
    account: str
    repository: str
    commit_id: str
    bundle_type: BundleType = BundleType.TAR
    # Never logged nor shown: excluded from repr.
    access_token: Optional[str] = field(default=None, repr=False)

    def hook_environment(self) -> dict[str, str]:
        return {"BUNDLE_COMMIT": self.commit_id}


@dataclass(frozen=True)
class LocalRevision:
    """A bundle already on this host: a file (tar/tgz/zip) or a folder."""

    location: Path
    bundle_type: BundleType

    def hook_environment(self) -> dict[str, str]:
        return {}


Revision = Union[S3Revision, GitHubRevision, LocalRevision]


@dataclass(frozen=True)
class DeploymentSpecification:
    deployment_id: str
    deployment_group_id: str
    deployment_group_name: str
    application_name: str
    revision: Revision
    deployment_creator: str = "user"
    deployment_type: str = "IN_PLACE"
    appspec_filename: str = DEFAULT_APPSPEC_FILENAME
    file_exists_behavior: FileExistsBehavior = FileExistsBehavior.DISALLOW
    # The events of the whole deployment, when the service (or --events) names them.
    all_possible_lifecycle_events: Optional[Tuple[str, ...]] = None

    @property
    def bundle_type(self) -> BundleType:
        return self.revision.bundle_type

    @property
    def custom_lifecycle_events(self) -> Tuple[str, ...]:
        """The events the deployment names that are not standard ones, in their order."""
        named = self.all_possible_lifecycle_events or ()
        return tuple(dict.fromkeys(e for e in named if not event_names.is_standard(e)))

    @property
    def is_blue_green_rollback(self) -> bool:
        return (
            self.deployment_creator == "codeDeployRollback" and self.deployment_type == "BLUE_GREEN"
        )
