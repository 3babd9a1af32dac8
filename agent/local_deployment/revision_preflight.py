"""Checking a local revision as a whole before the first command of ``codedeploy-local``.

The previous revision's ApplicationStop runs first and stops the application; whatever
would make this deployment fail later and can be known now is refused before it, in one
line, with exit status 2. A folder revision is read where it is. A local archive is
unpacked first, by the deployment's own DownloadBundle, which ``codedeploy-local``
carries out before ApplicationStop (so the archive is read once, and whatever the
unpacker refuses is refused there); it is then checked in ``deployment-archive``. The
checks: the appspec, the events it and the request name, every script that the run will
take from this revision and that is missing, not a file, reached through a link that
leaves the revision, or meant to run as a user this host does not have, and a files
destination over the agent's own folders.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

from agent import event_names
from agent.application_specification.parser import (
    check_deployment_events,
    read_application_specification,
)
from agent.errors import AgentError, ErrorCode
from agent.installer.agent_folders import AgentFolders
from agent.lifecycle_event.errors import LifecycleEventError
from agent.lifecycle_event.hook_identity import look_up_hook_user
from agent.local_deployment.request import LocalDeploymentRequest, LocalUsageError

# As the kernel: a path through more links than this is not followed.
_MAX_LINKS = 40

# (S_IFMT kind or None when absent, symlink target) of a path relative to the revision root.
PathKind = Callable[[bytes], Tuple[Optional[int], bytes]]

_OUTSIDE = "outside"
_MISSING = "missing"


def check_local_revision_on_disk(
    request: LocalDeploymentRequest,
    revision_root: Path,
    agent_folders: AgentFolders,
    *,
    bundle: Optional[Path] = None,
) -> None:
    """Refuse the request when the local revision in the folder ``revision_root`` would
    fail the deployment (reads the disk); raises an AgentError whose message is the one
    line to show. No files entry may install into ``agent_folders``. ``bundle`` is the
    archive ``revision_root`` was unpacked from: messages name it, not a folder that the
    refusal removes."""
    try:
        _check_revision_on_disk(request, revision_root, agent_folders)
    except AgentError as error:
        if bundle is None:
            raise
        raise LocalUsageError(
            error.message.replace(str(revision_root), f"bundle {bundle}")
        ) from None


def _check_revision_on_disk(
    request: LocalDeploymentRequest,
    revision_root: Path,
    agent_folders: AgentFolders,
) -> None:
    spec = request.spec
    filename = spec.appspec_filename
    appspec = read_application_specification(revision_root, filename)
    check_deployment_events(
        appspec, spec.custom_lifecycle_events, filename=filename, named_by="--events"
    )
    for number, mapping in enumerate(appspec.files, start=1):
        if mapping.destination.startswith("/"):
            agent_folders.check_destination_on_disk(
                mapping.destination, f"{filename} files entry {number}"
            )
    kind_of = _folder_path_kinds(revision_root)
    for event in events_run_from_new_revision(request.commands):
        for script in appspec.scripts_for(event):
            where = f"{filename}: hooks.{event}"
            _check_script(kind_of, str(revision_root / script.location), script.location, where)
            try:
                look_up_hook_user(script.runas, script.sudo, script.location)
            except LifecycleEventError as error:
                raise LifecycleEventError(
                    f"{where}: {error.message}",
                    error_code=error.error_code,
                    script_name=error.script_name,
                ) from None


def events_run_from_new_revision(commands: Tuple[str, ...]) -> Iterator[str]:
    """The lifecycle events of ``commands`` that take their scripts from the new revision:
    those after DownloadBundle. Before it, ApplicationStop and the block-traffic events
    run the previous revision's scripts and every other event has none to run."""
    seen = set()
    after_download = False
    for command in commands:
        if command == event_names.DOWNLOAD_BUNDLE:
            after_download = True
        elif after_download and command != event_names.INSTALL and command not in seen:
            seen.add(command)
            yield command


def _check_script(kind_of: PathKind, looked: str, location: str, where: str) -> None:
    found = _follow_in_revision(location, kind_of)
    if found == _OUTSIDE:
        message = f"Script location {location} leads outside the revision ({looked})"
    elif found == _MISSING:
        message = f"Script does not exist at specified location: {location} (looked for {looked})"
    elif found != stat.S_IFREG:
        message = f"Script at specified location: {location} is not a file ({looked})"
    else:
        return
    raise LifecycleEventError(
        f"{where}: {message}", error_code=ErrorCode.SCRIPT_MISSING, script_name=location
    )


def _follow_in_revision(location: str, kind_of: PathKind) -> Union[int, str]:
    """What ``location`` leads to inside the revision, following its symbolic links:
    an S_IFMT kind, ``_MISSING``, or ``_OUTSIDE`` when a link climbs out of the revision."""
    pending: List[bytes] = _components(location.encode("utf-8", "surrogateescape"))
    current: List[bytes] = []
    kind: Optional[int] = stat.S_IFDIR
    links = 0
    while pending:
        part = pending.pop(0)
        if part == b"..":
            if not current:
                return _OUTSIDE
            current.pop()
            kind = stat.S_IFDIR
            continue
        if kind != stat.S_IFDIR:
            return _MISSING  # a component below something that is not a folder
        kind, target = kind_of(b"/".join([*current, part]))
        if kind is None:
            return _MISSING
        if kind == stat.S_IFLNK:
            links += 1
            if links > _MAX_LINKS or target.startswith(b"/"):
                # An absolute link names the host's file system, never the revision.
                return _OUTSIDE if target.startswith(b"/") else _MISSING
            pending = _components(target) + pending
            kind = stat.S_IFDIR
            continue
        current.append(part)
    return stat.S_IFDIR if kind is None else kind


def _components(path: bytes) -> List[bytes]:
    return [part for part in path.split(b"/") if part not in (b"", b".")]


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
