"""Turning ``codedeploy-local`` flags into a validated deployment request.

Everything the flags can get wrong is checked here, before any command runs: the bundle
type, the location (local path, ``s3://`` or GitHub; never plain ``http://``), and the
order of ``--events``. The result is the deployment specification the engine runs and
the list of commands in order.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlparse

from agent import event_names
from agent.application_specification.model import FileExistsBehavior
from agent.deployment_root.names import shown_name, unsafe_group_id_reason, unsafe_label_reason
from agent.deployment_specification.model import (
    BundleType,
    DeploymentSpecification,
    GitHubRevision,
    LocalRevision,
    Revision,
    S3Revision,
)
from agent.errors import AgentError

DEFAULT_DEPLOYMENT_GROUP_ID = "default-local-deployment-group"
DEFAULT_DEPLOYMENT_GROUP_NAME = "LocalFleet"

# Standard events that need the new revision on disk (BeforeInstall is the exception
# the AWS developer utility allows anywhere).
_NEW_REVISION_EVENTS = frozenset(
    {
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
        "BeforeAllowTraffic",
        "AfterAllowTraffic",
    }
)
_BEFORE_INSTALL = "BeforeInstall"


class LocalUsageError(AgentError):
    """A ``codedeploy-local`` flag is wrong."""


@dataclass(frozen=True)
class LocalDeploymentRequest:
    spec: DeploymentSpecification
    commands: Tuple[str, ...]

    @property
    def custom_events(self) -> Tuple[str, ...]:
        return self.spec.custom_lifecycle_events


def new_local_deployment_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "d-" + "".join(secrets.choice(alphabet) for _ in range(9)) + "-local"


def order_events(named: Sequence[str]) -> Tuple[str, ...]:
    """The commands to run for ``--events`` (empty: the default order), checked.

    As in the AWS developer utility, only the order the user wrote is checked, events may
    be named more than once (they run each time), and the two steps that always run are
    added when missing: both in front when neither is named, ``Install`` right after a
    named ``DownloadBundle``, ``DownloadBundle`` right before a named ``Install``. A
    ``BeforeInstall`` written between them keeps its place in the standard order, before
    ``Install`` and after ``DownloadBundle``.
    """
    if not named:
        return event_names.DEFAULT_LOCAL_EVENTS
    _check_written_order(named)
    ordered = list(named)
    if event_names.DOWNLOAD_BUNDLE not in ordered and event_names.INSTALL not in ordered:
        return (event_names.DOWNLOAD_BUNDLE, event_names.INSTALL, *ordered)
    if event_names.INSTALL not in ordered:
        at = ordered.index(event_names.DOWNLOAD_BUNDLE) + 1
        while at < len(ordered) and ordered[at] == _BEFORE_INSTALL:
            at += 1
        ordered.insert(at, event_names.INSTALL)
    elif event_names.DOWNLOAD_BUNDLE not in ordered:
        at = ordered.index(event_names.INSTALL)
        while at > 0 and ordered[at - 1] == _BEFORE_INSTALL:
            at -= 1
        ordered.insert(at, event_names.DOWNLOAD_BUNDLE)
    return tuple(ordered)


def _check_written_order(named: Sequence[str]) -> None:
    """Refuse an event that needs the new revision written before the step providing it."""
    previous = "ApplicationStop, BeforeBlockTraffic, AfterBlockTraffic, BeforeInstall"
    rules = (
        (
            event_names.DOWNLOAD_BUNDLE,
            _NEW_REVISION_EVENTS | {event_names.INSTALL},
            "custom events and ",
        ),
        (event_names.INSTALL, _NEW_REVISION_EVENTS, "custom events, DownloadBundle, "),
    )
    for step, needs_step, allowed in rules:
        if step not in named:
            continue
        early = [e for e in named[: list(named).index(step)] if e in needs_step]
        if early:
            raise LocalUsageError(
                f"--events runs {early[0]} before {step}; only {allowed}{previous} may come"
                f" before {step}"
            )


def _split_events(text: Optional[str]) -> List[str]:
    if text is None:
        return []
    named = [e.strip() for e in text.split(",")]
    if len(named) > event_names.EVENTS_MAX:
        raise LocalUsageError(
            f"--events names {len(named)} events; at most {event_names.EVENTS_MAX}"
        )
    if not all(named):
        raise LocalUsageError(f"--events {text!r} has an empty event name")
    for event in named:
        if event in event_names.RESERVED_EVENTS - {
            event_names.DOWNLOAD_BUNDLE,
            event_names.INSTALL,
        }:
            raise LocalUsageError(
                f"--events names {event}, which takes no scripts and cannot run here"
            )
        if not event_names.is_event_name(event):
            raise LocalUsageError(
                f"--events names {shown_name(event)}, which is not a lifecycle event name"
                f" ({event_names.EVENT_NAME_RULE})"
            )
    return named


def parse_bundle_location(location: str, bundle_type: BundleType) -> Revision:
    """The revision a ``--bundle-location`` names; local paths must exist and fit the type."""
    parsed = urlparse(location)
    scheme = parsed.scheme.lower()
    if scheme == "http":
        raise LocalUsageError(
            f"--bundle-location {location} uses http://; only https:// (GitHub) and s3:// remote locations are allowed"
        )
    if scheme == "s3":
        if bundle_type is BundleType.DIRECTORY or not parsed.netloc or len(parsed.path) < 2:
            raise LocalUsageError(
                f"--bundle-location {location} must look like s3://bucket/key with --type tar, tgz or zip"
            )
        query = parse_qs(parsed.query)
        return S3Revision(
            bucket=parsed.netloc,
            key=parsed.path[1:],
            bundle_type=bundle_type,
            version=query.get("versionId", [None])[0],
            etag=query.get("etag", [None])[0],
        )
    if scheme == "https":
        return _github_revision(location, parsed.netloc.lower(), parsed.path, bundle_type)
    if scheme not in ("", "file"):
        raise LocalUsageError(
            f"--bundle-location {location} is neither a local path, an s3:// location nor a GitHub https:// URL"
        )
    path = Path(parsed.path if scheme == "file" else location).expanduser().absolute()
    try:
        path.stat()
    except FileNotFoundError:
        raise LocalUsageError(f"--bundle-location {path} does not exist") from None
    except OSError as error:
        # A name too long, a loop of links, a folder we may not enter: one line.
        raise LocalUsageError(
            f"--bundle-location {shown_name(str(path))} cannot be used: {error.strerror or error}"
        ) from None
    if bundle_type is BundleType.DIRECTORY and not path.is_dir():
        raise LocalUsageError(
            f"--bundle-location {path} is not a folder; give --type tar, tgz or zip for a file"
        )
    if bundle_type is not BundleType.DIRECTORY and not path.is_file():
        raise LocalUsageError(
            f"--bundle-location {path} is not a file; --type {bundle_type.value} needs an archive (use --type directory for a folder)"
        )
    return LocalRevision(location=path, bundle_type=bundle_type)


def _github_revision(
    location: str, host: str, path: str, bundle_type: BundleType
) -> GitHubRevision:
    parts = [p for p in path.split("/") if p]
    if (
        host == "api.github.com"
        and len(parts) == 5
        and parts[0] == "repos"
        and parts[3] in ("tarball", "zipball")
    ):
        owner, repository, kind, commit = parts[1], parts[2], parts[3], parts[4]
        archive = BundleType.ZIP if kind == "zipball" else BundleType.TAR
        return GitHubRevision(owner, repository, commit, archive)
    if (
        host == "github.com"
        and len(parts) in (2, 4)
        and (len(parts) == 2 or parts[2] in ("tree", "commit"))
    ):
        commit = parts[3] if len(parts) == 4 else "HEAD"
        archive = BundleType.ZIP if bundle_type is BundleType.ZIP else BundleType.TAR
        return GitHubRevision(parts[0], parts[1].removesuffix(".git"), commit, archive)
    raise LocalUsageError(
        f"--bundle-location {location} is not a GitHub location; use https://github.com/OWNER/REPO"
        " or https://api.github.com/repos/OWNER/REPO/tarball/COMMIT"
    )


def build_local_request(
    *,
    bundle_location: str,
    bundle_type: str,
    file_exists_behavior: str,
    deployment_group_id: str,
    deployment_group_name: str,
    application_name: Optional[str],
    events_text: Optional[str],
    appspec_filename: str,
    reserved_root_names: Collection[str] = (),
) -> LocalDeploymentRequest:
    """The request the flags describe; ``reserved_root_names`` are folder names of the
    deployment root that the configuration adds (no group id may take them)."""
    try:
        kind = BundleType(bundle_type.lower())
    except ValueError:
        raise LocalUsageError(
            f"--type {bundle_type} is not one of tar, tgz, zip, directory"
        ) from None
    try:
        behavior = FileExistsBehavior(file_exists_behavior.upper())
    except ValueError:
        raise LocalUsageError(
            f"--file-exists-behavior {file_exists_behavior} is not one of DISALLOW, OVERWRITE, RETAIN"
        ) from None
    if (
        not appspec_filename
        or "/" in appspec_filename
        or appspec_filename in (".", "..")
        or len(appspec_filename) > 255
        or not appspec_filename.isprintable()
    ):
        raise LocalUsageError(
            f"--appspec-filename {shown_name(appspec_filename)} must be a file name (at most"
            " 255 printable characters) in the revision's top folder"
        )
    reason = unsafe_group_id_reason(deployment_group_id, reserved_root_names)
    if reason is not None:
        raise LocalUsageError(f"--deployment-group {shown_name(deployment_group_id)} {reason}")
    for flag, label in (
        ("--deployment-group-name", deployment_group_name),
        ("--application-name", application_name or bundle_location),
    ):
        reason = unsafe_label_reason(label)
        if reason is not None:
            raise LocalUsageError(f"{flag} {shown_name(label)} {reason}")
    commands = order_events(_split_events(events_text))
    revision = parse_bundle_location(bundle_location, kind)
    spec = DeploymentSpecification(
        deployment_id=new_local_deployment_id(),
        deployment_group_id=deployment_group_id,
        deployment_group_name=deployment_group_name,
        application_name=application_name or bundle_location,
        revision=revision,
        appspec_filename=appspec_filename,
        file_exists_behavior=behavior,
        all_possible_lifecycle_events=tuple(dict.fromkeys(commands)),
    )
    return LocalDeploymentRequest(spec=spec, commands=commands)
