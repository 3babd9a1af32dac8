"""Parsing the JSON of a deployment specification into :class:`DeploymentSpecification`.

This takes the JSON text once it is trusted: a ``TEXT/JSON`` envelope where unsigned
specifications are allowed, or the payload of a verified ``PKCS7/JSON`` envelope.
Field names and defaults are those of docs/behaviour.md section 6.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from agent.application_specification.model import DEFAULT_APPSPEC_FILENAME, FileExistsBehavior
from agent.deployment_root.names import (
    shown_name,
    unsafe_group_id_reason,
    unsafe_label_reason,
    unsafe_name_reason,
)
from agent.deployment_specification.model import (
    BundleType,
    DeploymentSpecError,
    DeploymentSpecification,
    GitHubRevision,
    LocalRevision,
    Revision,
    S3Revision,
)
from agent.event_names import EVENT_NAME_RULE, EVENTS_MAX, is_event_name


def _required_text(document: Dict[str, Any], key: str, where: str = "") -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise DeploymentSpecError(
            f"deployment specification field {where}{key} is missing or empty"
        )
    return _without_nul(value, f"{where}{key}")


def _optional_text(document: Dict[str, Any], key: str, where: str = "") -> Optional[str]:
    value = document.get(key)
    return _without_nul(value, f"{where}{key}") if isinstance(value, str) and value else None


def _without_nul(value: str, field: str) -> str:
    # Every text of the specification reaches a hook's environment, a URL or a path,
    # none of which can hold a NUL.
    if "\0" in value:
        raise DeploymentSpecError(
            f"deployment specification field {field} contains a NUL character"
        )
    return value


def _checked(field: str, value: str, reason: Optional[str]) -> str:
    if reason is not None:
        raise DeploymentSpecError(
            f"deployment specification field {field} {shown_name(value)} {reason}"
        )
    return value


def _appspec_filename_reason(name: str) -> Optional[str]:
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "" in parts:
        return "must be a relative path inside the revision, without .. components"
    if not name.isprintable() or any(len(part) > 255 for part in parts):
        return "must be printable, each part at most 255 characters"
    return None


def _bundle_type(value: Any, where: str, *, allowed: Tuple[BundleType, ...]) -> BundleType:
    bundle_type: Optional[BundleType]
    try:
        bundle_type = BundleType(str(value).lower())
    except ValueError:
        bundle_type = None
    if bundle_type is None or bundle_type not in allowed:
        names = ", ".join(b.value for b in allowed)
        raise DeploymentSpecError(
            f"deployment specification field {where}BundleType must be one of {names}, not {value!r}"
        )
    return bundle_type


_ARCHIVES = (BundleType.TAR, BundleType.TGZ, BundleType.ZIP)


def _revision(document: Dict[str, Any]) -> Revision:
    revision = document.get("Revision")
    if not isinstance(revision, dict):
        raise DeploymentSpecError("deployment specification field Revision is missing")
    kind = revision.get("RevisionType")
    if kind == "S3":
        s3 = revision.get("S3Revision")
        if not isinstance(s3, dict):
            raise DeploymentSpecError(
                "deployment specification field Revision.S3Revision is missing"
            )
        return S3Revision(
            bucket=_required_text(s3, "Bucket", "S3Revision."),
            key=_required_text(s3, "Key", "S3Revision."),
            bundle_type=_bundle_type(s3.get("BundleType"), "S3Revision.", allowed=_ARCHIVES),
            version=_optional_text(s3, "Version", "S3Revision."),
            etag=_optional_text(s3, "ETag", "S3Revision."),
        )
    if kind == "GitHub":
        github = revision.get("GitHubRevision")
        if not isinstance(github, dict):
            raise DeploymentSpecError(
                "deployment specification field Revision.GitHubRevision is missing"
            )
        bundle = github.get("BundleType")
        return GitHubRevision(
            account=_required_text(github, "Account", "GitHubRevision."),
            repository=_required_text(github, "Repository", "GitHubRevision."),
            commit_id=_required_text(github, "CommitId", "GitHubRevision."),
            bundle_type=(
                BundleType.TAR
                if bundle is None
                else _bundle_type(bundle, "GitHubRevision.", allowed=_ARCHIVES)
            ),
            access_token=_optional_text(document, "GitHubAccessToken"),
        )
    if kind in ("Local File", "Local Directory"):
        local = revision.get("LocalRevision")
        if not isinstance(local, dict):
            raise DeploymentSpecError(
                "deployment specification field Revision.LocalRevision is missing"
            )
        allowed = (BundleType.DIRECTORY,) if kind == "Local Directory" else _ARCHIVES
        return LocalRevision(
            location=Path(_required_text(local, "Location", "LocalRevision.")),
            bundle_type=_bundle_type(local.get("BundleType"), "LocalRevision.", allowed=allowed),
        )
    raise DeploymentSpecError(
        f"deployment specification has an unknown RevisionType {kind!r}"
        " (expected S3, GitHub, Local File or Local Directory)"
    )


def parse_deployment_specification(payload: str) -> DeploymentSpecification:
    """Validate the specification's JSON; errors name the field (never the GitHub token)."""
    try:
        document = json.loads(payload)
    except ValueError as error:
        raise DeploymentSpecError(f"deployment specification is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise DeploymentSpecError("deployment specification must be a JSON object")

    deployment_id = _required_text(document, "DeploymentId")
    if deployment_id.startswith("arn:") and ":deployment/" in deployment_id:
        deployment_id = deployment_id.rsplit("/", 1)[1]
    _checked("DeploymentId", deployment_id, unsafe_name_reason(deployment_id))
    group_id = _required_text(document, "DeploymentGroupId")
    _checked("DeploymentGroupId", group_id, unsafe_group_id_reason(group_id))
    labels = {
        key: _required_text(document, key) for key in ("DeploymentGroupName", "ApplicationName")
    }
    for key, label in labels.items():
        _checked(key, label, unsafe_label_reason(label))
    appspec_filename = _optional_text(document, "AppSpecFilename") or DEFAULT_APPSPEC_FILENAME
    _checked("AppSpecFilename", appspec_filename, _appspec_filename_reason(appspec_filename))

    behavior_text = ((document.get("AgentActionOverrides") or {}).get("AgentOverrides") or {}).get(
        "FileExistsBehavior"
    ) or FileExistsBehavior.DISALLOW.value
    try:
        behavior = FileExistsBehavior(str(behavior_text).upper())
    except ValueError:
        raise DeploymentSpecError(
            "deployment specification field FileExistsBehavior must be DISALLOW, OVERWRITE"
            f" or RETAIN, not {behavior_text!r}"
        ) from None

    events = document.get("AllPossibleLifecycleEvents")
    if events is not None and (
        not isinstance(events, list)
        or len(events) > EVENTS_MAX
        or not all(isinstance(e, str) and is_event_name(e) for e in events)
    ):
        raise DeploymentSpecError(
            "deployment specification field AllPossibleLifecycleEvents must be a list of at"
            f" most {EVENTS_MAX} event names ({EVENT_NAME_RULE})"
        )

    return DeploymentSpecification(
        deployment_id=deployment_id,
        deployment_group_id=group_id,
        deployment_group_name=labels["DeploymentGroupName"],
        application_name=labels["ApplicationName"],
        revision=_revision(document),
        deployment_creator=_optional_text(document, "DeploymentCreator") or "user",
        deployment_type=_optional_text(document, "DeploymentType") or "IN_PLACE",
        appspec_filename=appspec_filename,
        file_exists_behavior=behavior,
        all_possible_lifecycle_events=tuple(events) if events is not None else None,
    )
