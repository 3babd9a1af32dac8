"""Planning the install: every check that can refuse it, before the disk is changed.

The plan walks the revision once and looks at each destination it would produce, but keeps
none of them: the copy walks the revision again. It refuses the install when a source is
missing or leaves the revision, when a destination is already taken (by something the
group's previous install did not create, under DISALLOW), when two ``files`` entries
produce the same destination or disagree on whether it is a file or a folder, and when
the ``permissions`` entries do not fit the installed paths. Only entries whose destination
trees can overlap are compared with each other, by looking at the other entry's source.
"""

from __future__ import annotations

import enum
import os
import stat
import struct
from array import array
from dataclasses import dataclass, field, replace
from operator import attrgetter
from pathlib import Path
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from agent.application_specification.model import (
    ApplicationSpecification,
    FileExistsBehavior,
    FileMapping,
)
from agent.forked_share import ForkedShare, abandon_share, collect_share
from agent.installer.agent_folders import AgentFolders
from agent.installer.cleanup import PathSet, PathSetBuilder, PreviousInstall
from agent.installer.paths import folder_chain, is_within, join, normalise_absolute
from agent.installer.permissions import ResolvedPermission
from agent.installer.result import InstallError
from agent.installer.reuse import (
    Identity,
    folder_is_fresh_like_on_disk,
    leaf_is_fresh_like_on_disk,
)
from agent.installer.split import split_top_level, start_install_share

_by_name = attrgetter("name")
# In front of a plan worker's reply: the size of its kept set, and how many of its paths
# are not kept.
_SHARE_HEADER = struct.Struct("=QQ")


class SourceKind(enum.Enum):
    FOLDER = "folder"  # its contents go into the destination
    FILE = "file"  # a file or a symlink: goes to destination/<basename>


class PlannedReuse(NamedTuple):
    """What the plan found of the group's previous install."""

    kept: PathSet  # its paths that stay as they are
    # Every path the entries install is one of ``kept``: nothing new takes room.
    everything_kept: bool


class TargetType(enum.Enum):
    FOLDER = "folder"
    FILE = "file"
    SYMLINK = "symlink"


@dataclass(frozen=True)
class ResolvedEntry:
    """One ``files`` entry with its source checked and its paths normalised."""

    number: int  # position in the appspec, from 1
    mapping: FileMapping
    kind: SourceKind
    source: str  # absolute path inside the revision
    destination: str  # the folder the entry installs into
    root: str  # where the source itself lands: destination, or destination/<basename>
    # Earlier entries whose destination trees can overlap this one's.
    overlaps: Tuple[int, ...] = ()

    def describe(self) -> str:
        return (
            f"files entry {self.number} (source {self.mapping.source!r},"
            f" destination {self.mapping.destination!r})"
        )


def resolve_entries_on_disk(
    spec: ApplicationSpecification,
    archive_root: Path,
    deployment_root: Path,
    agent_folders: Optional[AgentFolders] = None,
) -> Tuple[ResolvedEntry, ...]:
    """Check each ``files`` entry's source and destination; raises InstallError.

    No destination may be, contain or lie in one of ``agent_folders`` (by default the
    deployment root).
    """
    folders = AgentFolders.of(deployment_root) if agent_folders is None else agent_folders
    archive = normalise_absolute(os.path.abspath(archive_root))
    archive_real = os.path.realpath(archive)
    guarded = (archive_real, os.path.realpath(deployment_root))
    entries: List[ResolvedEntry] = []
    for number, mapping in enumerate(spec.files, start=1):
        entry = _resolve_entry_on_disk(number, mapping, archive, archive_real)
        folders.check_destination_on_disk(entry.destination, entry.describe())
        landing = os.path.realpath(entry.root)
        if any(is_within(landing, inside) for inside in guarded):
            raise InstallError(
                f"{entry.describe()}: the destination is inside the agent's deployment root"
            )
        overlaps = tuple(
            index
            for index, earlier in enumerate(entries)
            if is_within(entry.root, earlier.root) or is_within(earlier.root, entry.root)
        )
        entries.append(replace(entry, overlaps=overlaps))
    return tuple(entries)


def check_plan_on_disk(
    entries: Sequence[ResolvedEntry],
    permissions: Sequence[ResolvedPermission],
    previous: PreviousInstall,
    behavior: FileExistsBehavior,
    identity: Identity,
    agent_folders: Optional[AgentFolders] = None,
    reject_symlink_targets: bool = False,
) -> PlannedReuse:
    """Walk every entry as the copy will and raise InstallError at the first conflict.

    The paths the group's previous install created (``previous.free``) are removed before
    the copy, so they are no conflict. Returns those of them that already look like what
    the copy would produce: they are kept instead of being removed and copied again. A
    folder that still holds something the previous install did not make is left out: it
    stays anyway (its removal fails), and, as with the AWS agent, the cleanup file lists
    only what an install made. ``reject_symlink_targets``: a permissions object reached through a symlink, or a
    symlink the permissions would match, refuses the install.
    """
    if reject_symlink_targets:
        for permission in permissions:
            _check_object_without_symlink_on_disk(permission)
    kept = PathSetBuilder(previous.free.key)
    not_kept = [0]
    plan = _Plan(
        tuple(entries),
        tuple(permissions),
        previous.free,
        behavior,
        identity,
        kept,
        PathSetBuilder(previous.free.key),
        reuse=not previous.has_contexts and len(previous.free) > 0,
        agent_folders=AgentFolders() if agent_folders is None else agent_folders,
        reject_symlink_targets=reject_symlink_targets,
        not_kept=not_kept,
    )
    for entry in entries:
        _check_entry_on_disk(plan, entry)
    holders = plan.holders.build()
    # A holder is a folder the walk kept and that is kept no more.
    return PlannedReuse(_without(kept.build(), holders), not_kept[0] == 0 and not len(holders))


@dataclass(frozen=True)
class _Plan:
    entries: Tuple[ResolvedEntry, ...]
    permissions: Tuple[ResolvedPermission, ...]
    free: PathSet
    behavior: FileExistsBehavior
    identity: Identity
    kept: PathSetBuilder
    # Folders of the previous install holding (or above) something it did not make.
    holders: PathSetBuilder
    reuse: bool
    # A folder already there as a symlink is installed through: not into these.
    agent_folders: AgentFolders
    reject_symlink_targets: bool = False
    # How many paths the entries install (below the destinations) are not kept; one
    # counter, shared by the walk's levels.
    not_kept: List[int] = field(default_factory=lambda: [0])


class _Folder(NamedTuple):
    """What the plan knows about a destination folder while walking below it."""

    exists: bool  # it exists now: what goes below it must be looked at
    doomed: bool  # the previous install's and not kept: removed, so nothing below is kept
    status: Optional[os.stat_result]  # its status when it exists
    # No folder of the previous install on the way to it: symlinks below it are followed
    # as the copy will (see agent.installer.folders).
    resolved: bool = False
    listed: bool = False  # something the previous install made is there (of any type)

    @property
    def kept(self) -> bool:
        """A folder of the previous install that stays as it is."""
        return self.exists and self.listed and not self.doomed


_MISSING = _Folder(False, False, None)

# What _check_leaf_on_disk finds of the previous install at a path.
_ABSENT, _LISTED, _KEPT = 0, 1, 2


def _resolve_entry_on_disk(
    number: int, mapping: FileMapping, archive: str, archive_real: str
) -> ResolvedEntry:
    where = f"files entry {number} (source {mapping.source!r}, destination {mapping.destination!r})"
    relative = os.path.normpath(mapping.source.strip("/") or ".")
    if relative == ".." or relative.startswith("../"):
        raise InstallError(f"{where}: the source leaves the revision folder")
    source = archive if relative == "." else join(archive, relative)
    # The last component may be a symlink (it is copied as one); the folders above it must
    # not lead out of the revision.
    if not is_within(os.path.realpath(os.path.dirname(source)), archive_real) and relative != ".":
        raise InstallError(f"{where}: the source leaves the revision folder")
    try:
        mode = os.lstat(source).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise InstallError(
            f"{where}: the source does not exist in the revision ({source})"
        ) from None
    _target_type(source, mode)
    if not mapping.destination.startswith("/"):
        raise InstallError(f"{where}: the destination must be an absolute path")
    destination = normalise_absolute(mapping.destination)
    _check_name(destination)
    if stat.S_ISDIR(mode):
        return ResolvedEntry(number, mapping, SourceKind.FOLDER, source, destination, destination)
    root = join(destination, os.path.basename(source))
    _check_name(root)
    return ResolvedEntry(number, mapping, SourceKind.FILE, source, destination, root)


def _check_entry_on_disk(plan: _Plan, entry: ResolvedEntry) -> None:
    folder = _Folder(True, False, os.stat("/"), resolved=True)
    chain = folder_chain(entry.destination)
    for index, path in enumerate(chain):
        if index + 1 < len(chain):
            visited: Callable[[str], bool] = os.path.basename(chain[index + 1]).__eq__
        elif entry.kind is SourceKind.FOLDER:
            visited = _folder_in(entry.source)
        else:
            visited = _nothing
        folder = _check_folder_on_disk(plan, entry, path, folder)
        if folder.exists and folder.listed:
            _note_foreign_content_on_disk(plan, path, visited)
    if entry.kind is SourceKind.FILE:
        kind = _target_type(entry.source, os.lstat(entry.source).st_mode)
        if _check_leaf_on_disk(plan, entry, entry.source, entry.root, kind, folder) != _KEPT:
            plan.not_kept[0] += 1
        return
    top = list(_sorted_entries_on_disk(entry.source))
    share = split_top_level(top)
    worker: Optional[ForkedShare] = None
    if share is not None:
        worker = start_install_share(lambda: _check_share_on_disk(plan, entry, share, folder))
        top = top[0::2]
    try:
        top_level = (iter(top), entry.source, entry.destination, folder, None)
        _walk_plan_on_disk(plan, entry, [top_level])
        if worker is not None:
            # collect_share reaps the worker whatever it answers.
            finished, worker = worker, None
            reply = collect_share(finished)
            split, not_kept = _SHARE_HEADER.unpack_from(reply)
            start = _SHARE_HEADER.size
            plan.kept.add_sorted_hashes(reply[start : start + split])
            plan.holders.add_sorted_hashes(reply[start + split :])
            plan.not_kept[0] += not_kept
    finally:
        if worker is not None:
            abandon_share(worker)


def _check_share_on_disk(
    plan: _Plan, entry: ResolvedEntry, share: List[os.DirEntry[str]], folder: _Folder
) -> bytes:  # pragma: no cover - runs in the worker process
    """The worker's half of the top level: the paths it keeps and the folders holding
    foreign paths it found, as sorted 64-bit hashes, with the first set's size and how
    many of its paths are not kept in front."""
    key = plan.free.key
    own = replace(plan, kept=PathSetBuilder(key), holders=PathSetBuilder(key), not_kept=[0])
    _walk_plan_on_disk(own, entry, [(iter(share), entry.source, entry.destination, folder, None)])
    kept = own.kept.build().hashes.tobytes()
    header = _SHARE_HEADER.pack(len(kept), own.not_kept[0])
    return header + kept + own.holders.build().hashes.tobytes()


# A level's last item counts the paths of the previous install found below its folder
# (None for the top level, which is looked into as a whole).
_PlanLevel = Tuple[Iterator["os.DirEntry[str]"], str, str, "_Folder", Optional[List[int]]]


def _walk_plan_on_disk(plan: _Plan, entry: ResolvedEntry, stack: List[_PlanLevel]) -> None:
    not_kept = plan.not_kept
    while stack:
        children, source_dir, destination_dir, folder, listed = stack[-1]
        # The hot loop of the plan (every path of the revision): one join per folder.
        into = join(destination_dir, "")
        for child in children:
            source = child.path  # listed from source_dir
            destination = into + child.name
            if "\n" in destination:
                _check_name(destination)
            if child.is_dir(follow_symlinks=False):
                inner = _check_folder_on_disk(plan, entry, destination, folder)
                if listed is not None and inner.listed:
                    listed[0] += 1
                if not inner.kept:
                    not_kept[0] += 1
                level = (_sorted_entries_on_disk(source), source, destination, inner, [0])
                stack.append(level)
                break
            if child.is_file(follow_symlinks=False):
                kind = TargetType.FILE
            elif child.is_symlink():
                kind = TargetType.SYMLINK
            else:
                kind = _target_type(source, child.stat(follow_symlinks=False).st_mode)
            found = _check_leaf_on_disk(plan, entry, source, destination, kind, folder)
            if found != _KEPT:
                not_kept[0] += 1
            if found and listed:
                listed[0] += 1
        else:
            stack.pop()
            # Anything there beyond what the walk found of the previous install is looked
            # at one by one; a redeployment of the same tree never gets there.
            if (
                listed is not None
                and folder.exists
                and folder.listed
                and listed[0] != len(os.listdir(destination_dir))
            ):
                _note_foreign_content_on_disk(plan, destination_dir, _folder_in(source_dir))


def _check_folder_on_disk(plan: _Plan, entry: ResolvedEntry, path: str, parent: _Folder) -> _Folder:
    """Check a folder the entry needs, below ``parent``; returns what is known of it."""
    _check_overlaps_on_disk(plan, entry, path, TargetType.FOLDER)
    folder = _MISSING
    installed = True  # created, or kept, by this install
    if parent.exists:
        try:
            status: Optional[os.stat_result] = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            status = None
        if status is None:
            pass
        elif stat.S_ISDIR(status.st_mode):
            # A folder of the previous install is kept when it looks freshly made, else
            # removed if nothing foreign is left in it; either way what is below it is
            # checked path by path.
            installed = path in plan.free
            doomed = installed
            if installed and _keeps(plan, parent):
                assert parent.status is not None
                if folder_is_fresh_like_on_disk(path, status, parent.status, plan.identity):
                    plan.kept.add(path)
                    doomed = False
            folder = _Folder(True, doomed, status, parent.resolved and not installed, installed)
        elif path in plan.free:
            # A file or symlink of the previous install: removed first.
            folder = _Folder(False, False, None, listed=True)
        elif stat.S_ISLNK(status.st_mode) and os.path.isdir(path):
            if not parent.resolved and status.st_uid != plan.identity.uid:
                raise InstallError(
                    f"{path} is a symlink owned by uid {status.st_uid}, below a folder this"
                    f" agent made, where {entry.describe()} needs a folder: not followed;"
                    " remove it"
                )
            # e.g. /var/www -> /srv/www: installing through it is what the AWS agent does.
            plan.agent_folders.check_destination_on_disk(path, entry.describe(), "the folder")
            folder = _Folder(True, False, os.stat(path), parent.resolved)
            installed = False
        else:
            raise InstallError(
                f"{path} must be a folder for {entry.describe()}, but something else is there"
                " that the previous deployment of this group did not install"
            )
    if installed:
        _check_permissions(plan, path, TargetType.FOLDER)
    return folder


def _check_leaf_on_disk(
    plan: _Plan,
    entry: ResolvedEntry,
    source: str,
    path: str,
    kind: TargetType,
    parent: _Folder,
) -> int:
    """Check a file or symlink the entry would copy from ``source`` to ``path``.

    Returns what is at ``path`` of the previous install: _ABSENT (nothing it made),
    _LISTED (something it made, removed first) or _KEPT (a file or symlink it made, kept).
    """
    if entry.overlaps:
        _check_overlaps_on_disk(plan, entry, path, kind)
    copied = True
    found = _ABSENT
    if parent.exists:
        try:
            status: Optional[os.stat_result] = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            status = None
        hashed = 0 if status is None else plan.free.hash_of(path)
        if status is None:
            pass
        elif plan.free.contains_hash(hashed):
            found = _LISTED
            if stat.S_ISDIR(status.st_mode):
                _check_emptied_by_cleanup_on_disk(plan, entry, path)
            elif _keeps(plan, parent):
                assert parent.status is not None
                source_status = os.lstat(source)
                if leaf_is_fresh_like_on_disk(
                    path, status, source_status, parent.status, plan.identity
                ):
                    plan.kept.add_hash(hashed)
                    found = _KEPT
        elif plan.behavior is FileExistsBehavior.DISALLOW:
            raise InstallError(
                f"{path} already exists and was not installed by the previous deployment of"
                f" this group ({entry.describe()}); file_exists_behavior is DISALLOW: remove"
                " it, or set file_exists_behavior to OVERWRITE or RETAIN"
            )
        elif plan.behavior is FileExistsBehavior.RETAIN:
            copied = False
        elif stat.S_ISDIR(status.st_mode):
            raise InstallError(
                f"{path} is a folder and cannot be overwritten by a file ({entry.describe()})"
            )
    if copied and plan.permissions:
        _check_permissions(plan, path, kind)
    return found


def _note_foreign_content_on_disk(plan: _Plan, folder: str, visited: Callable[[str], bool]) -> None:
    """Note ``folder`` and those above it when it holds a path the previous install did not make.

    Such a folder survives the cleanup replay (its removal fails), so this install does not
    create it. Sub-folders the plan walks are looked at when it gets there; the others
    (gone from the revision) are looked into here.
    """
    pending = [(folder, visited)]
    while pending:
        current, walked = pending.pop()
        with os.scandir(current) as listing:
            for child in listing:
                if child.path not in plan.free:
                    for above in folder_chain(folder):
                        plan.holders.add(above)
                    return
                if child.is_dir(follow_symlinks=False) and not walked(child.name):
                    pending.append((child.path, _nothing))


def _folder_in(source: str) -> Callable[[str], bool]:
    """Whether the revision folder ``source`` has a real sub-folder of that name."""

    def has_folder(name: str) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(join(source, name)).st_mode)
        except OSError:
            return False

    return has_folder


def _nothing(name: str) -> bool:
    return False


def _without(paths: PathSet, removed: PathSet) -> PathSet:
    if not len(removed):
        return paths
    remaining = array("q", (value for value in paths.hashes if not removed.contains_hash(value)))
    return PathSet(paths.key, remaining)


def _keeps(plan: _Plan, parent: _Folder) -> bool:
    return plan.reuse and not parent.doomed and parent.status is not None


def _check_emptied_by_cleanup_on_disk(plan: _Plan, entry: ResolvedEntry, folder: str) -> None:
    """A file replaces a folder of the previous install: nothing foreign may be inside."""
    stack = [_sorted_entries_on_disk(folder)]
    while stack:
        for child in stack[-1]:
            if child.path not in plan.free:
                raise InstallError(
                    f"{folder} must be replaced by a file for {entry.describe()}, but it holds"
                    f" {child.path}, which the previous deployment of this group did not install"
                )
            if child.is_dir(follow_symlinks=False):
                stack.append(_sorted_entries_on_disk(child.path))
                break
        else:
            stack.pop()


def _check_overlaps_on_disk(plan: _Plan, entry: ResolvedEntry, path: str, kind: TargetType) -> None:
    for index in entry.overlaps:
        other = plan.entries[index]
        produced = _produced_by_on_disk(other, path)
        if produced is None or (produced is TargetType.FOLDER and kind is TargetType.FOLDER):
            continue
        if produced is not TargetType.FOLDER and kind is not TargetType.FOLDER:
            raise InstallError(
                f"two sources go to the same destination {path}: {other.describe()} and"
                f" {entry.describe()}; remove one of them from the appspec"
            )
        raise InstallError(
            f"{path} would be a file for one files entry and a folder for another:"
            f" {other.describe()} and {entry.describe()}"
        )


def _produced_by_on_disk(entry: ResolvedEntry, path: str) -> Optional[TargetType]:
    """What ``entry`` puts at ``path`` (None when nothing), found from its source."""
    if is_within(path, entry.root):
        if path == entry.root:
            if entry.kind is SourceKind.FOLDER:
                return TargetType.FOLDER
            return _target_type(entry.source, os.lstat(entry.source).st_mode)
        if entry.kind is SourceKind.FILE:
            return None
        # Only a chain of real folders in the source leads to the path: the copy never
        # follows a symlink.
        current = entry.source
        for name in path[len(entry.root) :].strip("/").split("/"):
            try:
                mode = os.lstat(current).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not stat.S_ISDIR(mode):
                return None
            current = join(current, name)
        try:
            return _target_type(current, os.lstat(current).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return None
    if is_within(entry.root, path):
        return TargetType.FOLDER  # the entry needs it as a folder on its way down
    return None


def _check_object_without_symlink_on_disk(permission: ResolvedPermission) -> None:
    for folder in folder_chain(permission.object):
        try:
            is_link = stat.S_ISLNK(os.lstat(folder).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return  # created by the install: a real folder
        if is_link:
            raise InstallError(
                f"{permission.describe()}: {folder} is a symlink and"
                " reject_symlink_permission_targets is set, so permissions are never applied"
                " through a symlink"
            )


def _check_permissions(plan: _Plan, path: str, kind: TargetType) -> None:
    if not plan.permissions:
        return
    if kind is TargetType.SYMLINK:
        if plan.reject_symlink_targets:
            for permission in plan.permissions:
                if permission.matches(path, False):
                    raise InstallError(
                        f"{path} is a symlink matched by {permission.describe()};"
                        " reject_symlink_permission_targets is set, so permissions are never"
                        " applied to a symlink"
                    )
        return
    is_dir = kind is TargetType.FOLDER
    matched: Optional[ResolvedPermission] = None
    for permission in plan.permissions:
        if not permission.matches(path, is_dir):
            continue
        if matched is not None:
            raise InstallError(
                f"{path} is matched by two permissions entries, {matched.describe()} and"
                f" {permission.describe()}; a path may be matched by one entry only"
            )
        matched = permission
        if not is_dir:
            permission.check_file_object(path)


def _target_type(path: str, mode: int) -> TargetType:
    if stat.S_ISDIR(mode):
        return TargetType.FOLDER
    if stat.S_ISREG(mode):
        return TargetType.FILE
    if stat.S_ISLNK(mode):
        return TargetType.SYMLINK
    raise InstallError(
        f"{path} in the revision is neither a file, a folder nor a symlink and cannot be installed"
    )


def _check_name(path: str) -> None:
    if "\n" in path:
        raise InstallError(
            f"{path!r}: paths with a line break cannot be installed (the cleanup file holds one"
            " path per line)"
        )


def _sorted_entries_on_disk(folder: str) -> Iterator[os.DirEntry[str]]:
    # Sorted so that the install log and the first reported conflict are reproducible; this
    # holds one folder's entries at a time, never the tree's.
    with os.scandir(folder) as listing:
        return iter(sorted(listing, key=_by_name))
