"""Revisions whose hooks leave a trace, and the deployment specifications that name them.

A traced revision's hooks append ``<event> <deployment id>`` to a trace file, so a test
sees which scripts ran, in which order, and how many times: as a Local Directory
(:func:`make_revision`, named by :func:`spec_json`) or as a tgz bundle's bytes for S3
(:func:`tgz_revision`).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional

# The commands of a deployment as the service hands them out, in order.
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


def _appspec_text(destination: Path, hooks: Iterable[str], timeout: int = 60) -> str:
    entries = "".join(
        f"  {event}:\n    - location: scripts/{event}.sh\n      timeout: {timeout}\n"
        for event in hooks
    )
    return (
        "version: 0.0\nos: linux\nfiles:\n"
        f"  - source: content\n    destination: {destination}\n"
        "hooks:\n" + entries
    )


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
    hooked: List[str] = []
    for event in events:
        script = folder / "scripts" / f"{event}.sh"
        body = (scripts or {}).get(event, "")
        script.write_text(
            f'#!/bin/sh\necho "$LIFECYCLE_EVENT $DEPLOYMENT_ID" >> "{trace}"\n{body}\n',
            encoding="utf-8",
        )
        script.chmod(0o755)
        hooked.append(event)
    (folder / "appspec.yml").write_text(
        _appspec_text(destination, hooked, timeout), encoding="utf-8"
    )
    return folder


def tgz_revision(trace: Path, destination: Path, label: str, events: Iterable[str]) -> bytes:
    """A tgz bundle whose hooks for ``events`` append ``<event> <label> <deployment id>
    <BUNDLE_BUCKET> <BUNDLE_KEY> <BUNDLE_VERSION> <BUNDLE_ETAG>`` to ``trace``."""
    hooked = list(events)
    files: Dict[str, bytes] = {"content/index.html": f"{label}\n".encode()}
    for event in hooked:
        files[f"scripts/{event}.sh"] = (
            "#!/bin/sh\n"
            f'echo "$LIFECYCLE_EVENT {label} $DEPLOYMENT_ID'
            f' $BUNDLE_BUCKET $BUNDLE_KEY $BUNDLE_VERSION $BUNDLE_ETAG" >> "{trace}"\n'
        ).encode()
    files["appspec.yml"] = _appspec_text(destination, hooked).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mode = 0o755 if name.endswith(".sh") else 0o644
            archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def read_trace(trace: Path) -> List[str]:
    """The lines the hooks wrote to ``trace`` (none when no hook ran)."""
    if not trace.exists():
        return []
    return trace.read_text(encoding="utf-8").splitlines()


def spec_json(
    deployment_id: str, revision: Path, *, group_id: str = "group-1", **overrides: object
) -> str:
    """A deployment specification (JSON) of ``revision`` (a Local Directory) for the
    group ``group_id``; ``overrides`` replace top-level fields (``Revision=...``)."""
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
