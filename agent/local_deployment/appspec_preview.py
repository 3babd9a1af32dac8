"""Reading a local revision before anything runs: its appspec and the paths it holds.

``codedeploy-local`` validates the new revision's appspec, the events it names and the
scripts they will run before the first command: otherwise ApplicationStop of the
previous revision would stop the running application and only then would a typo in the
new appspec, a missing script or a bundle of the wrong type be found. A folder is read
where it is. An archive is read through once, streaming, as DownloadBundle would unpack
it (see :mod:`agent.host_command.bundle_scan`), keeping its appspec and an index of its
member paths.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

from agent.application_specification.model import (
    DEFAULT_APPSPEC_FILENAME,
    FALLBACK_APPSPEC_FILENAME,
    ApplicationSpecification,
    AppSpecError,
)
from agent.application_specification.parser import (
    parse_application_specification,
    read_application_specification,
)
from agent.deployment_specification.model import BundleType, LocalRevision
from agent.host_command.bundle import DEFAULT_POLICY, UnpackPolicy

# (S_IFMT kind or None when absent, symlink target) of a path relative to the revision root.
PathKind = Callable[[bytes], Tuple[Optional[int], bytes]]


@dataclass(frozen=True)
class RevisionPreview:
    """A local revision as it will be once DownloadBundle has put it on disk."""

    appspec: ApplicationSpecification
    kind_of: PathKind
    # How a path of the revision is named in a message: a file or an archive member.
    describe: Callable[[str], str]


def _candidate_names(filename: str) -> Tuple[str, ...]:
    if filename == DEFAULT_APPSPEC_FILENAME:
        return (DEFAULT_APPSPEC_FILENAME, FALLBACK_APPSPEC_FILENAME)
    return (filename,)


def preview_local_revision_on_disk(
    revision: LocalRevision, filename: str, policy: UnpackPolicy = DEFAULT_POLICY
) -> RevisionPreview:
    """Parse the appspec of a local revision and index its paths, without unpacking it.

    Raises AppSpecError for the appspec, BundleError for an archive DownloadBundle would
    refuse.
    """
    if revision.bundle_type is BundleType.DIRECTORY:
        root = revision.location
        return RevisionPreview(
            appspec=read_application_specification(root, filename),
            kind_of=_folder_path_kinds(root),
            describe=lambda path: str(root / path),
        )
    # libarchive is loaded only for an archive revision.
    from agent.host_command.bundle_scan import scan_bundle_on_disk

    bundle = revision.location
    scan = scan_bundle_on_disk(bundle, revision.bundle_type, _candidate_names(filename), policy)
    try:
        text = scan.appspec.decode("utf-8")
    except UnicodeDecodeError:
        raise AppSpecError(f"{scan.appspec_member} in bundle {bundle} is not UTF-8 text") from None
    prefix = os.fsdecode(scan.root) + "/" if scan.root else ""
    return RevisionPreview(
        appspec=parse_application_specification(text, filename=Path(scan.appspec_member).name),
        kind_of=scan.kind_of,
        describe=lambda path: f"member {prefix}{path} of bundle {bundle}",
    )


def preview_application_specification(
    revision: LocalRevision, filename: str
) -> ApplicationSpecification:
    """Parse the appspec of a local revision without unpacking it (reads the disk)."""
    return preview_local_revision_on_disk(revision, filename).appspec


def _folder_path_kinds(root: Path) -> PathKind:
    base = os.fsencode(root)

    def kind_of(path: bytes) -> Tuple[Optional[int], bytes]:
        full = os.path.join(base, path)
        try:
            info = os.lstat(full)
        except OSError:
            # Missing, or unreachable: DownloadBundle could not copy it either.
            return None, b""
        if stat.S_ISLNK(info.st_mode):
            return stat.S_IFLNK, os.readlink(full)
        return stat.S_IFMT(info.st_mode), b""

    return kind_of
