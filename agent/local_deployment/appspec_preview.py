"""Reading a revision's appspec before anything runs.

``codedeploy-local`` validates the new revision's appspec, and the events it names,
before the first command: otherwise ApplicationStop of the previous revision would stop
the running application and only then would a typo in the new appspec be found. For an
archive this reads the archive's member list once, streaming, and keeps only the appspec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Set, Tuple

import libarchive

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

# No appspec is this large; a member that is cannot be one we would parse.
_MAX_APPSPEC_BYTES = 1024 * 1024


def _candidate_names(filename: str) -> Tuple[str, ...]:
    if filename == DEFAULT_APPSPEC_FILENAME:
        return (DEFAULT_APPSPEC_FILENAME, FALLBACK_APPSPEC_FILENAME)
    return (filename,)


def _read_appspec_member_from_archive(bundle: Path, filename: str) -> Tuple[str, bytes]:
    """(member name, content) of the appspec the unpacker will use as the revision's own."""
    names = _candidate_names(filename)
    top_level: Set[str] = set()
    at_root: Dict[str, bytes] = {}
    nested: Dict[Tuple[str, str], bytes] = {}
    try:
        with libarchive.file_reader(str(bundle)) as archive:
            for entry in archive:
                parts = [p for p in str(entry.pathname).split("/") if p not in ("", ".")]
                if not parts:
                    continue
                top_level.add(parts[0])
                wanted = len(parts) in (1, 2) and parts[-1] in names and entry.isfile
                if not wanted or (entry.size or 0) > _MAX_APPSPEC_BYTES:
                    continue
                data = b"".join(entry.get_blocks())
                if len(parts) == 1:
                    if parts[0] == names[0]:
                        # The preferred name at the top level wins whatever follows.
                        return parts[0], data
                    at_root[parts[0]] = data
                else:
                    nested[(parts[0], parts[1])] = data
    except libarchive.ArchiveError as error:
        raise AppSpecError(f"bundle {bundle} cannot be read: {error.msg}") from None
    for name in names:
        if name in at_root:
            return name, at_root[name]
    if len(top_level) == 1:
        (top,) = top_level
        for name in names:
            if (top, name) in nested:
                return f"{top}/{name}", nested[(top, name)]
    raise AppSpecError(f"bundle {bundle} has no {' or '.join(names)} at its top level")


def preview_application_specification(
    revision: LocalRevision, filename: str
) -> ApplicationSpecification:
    """Parse the appspec of a local revision without unpacking it (reads the disk)."""
    if revision.bundle_type is BundleType.DIRECTORY:
        return read_application_specification(revision.location, filename)
    member, content = _read_appspec_member_from_archive(revision.location, filename)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise AppSpecError(f"{member} in bundle {revision.location} is not UTF-8 text") from None
    return parse_application_specification(text, filename=Path(member).name)
