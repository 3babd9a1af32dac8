"""Carrying out a checked plan: creating folders, copying files, recreating symlinks.

The revision is walked a second time with folder descriptors, by the tree copy that the
folder revisions' copy uses too (:mod:`agent.filesystem.tree_copy`), so that no symlink in
the revision is ever followed and no path is resolved twice. Each file is copied by the
kernel (``sendfile``, holes kept) and keeps its mode, its times and, when we run as root,
its owner, as ``cp -p`` and the AWS agent do. What is the install's own is here: folders
of the destination that exist already, the previous install's paths, file_exists_behavior
and the records. Every path is appended to the cleanup file just before it is created.
Folders this install creates start empty, so what goes into them needs no existence
check; only folders that were already there cost a ``stat`` per child. Paths the plan
kept from the previous install are compared instead of copied.

Large trees are copied by two processes (see :mod:`agent.installer.split`), not threads:
with small files the per-file Python work dominates, and worker threads measured 2.5x
slower on tmpfs (GIL hand-offs at every system call).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import stat
from typing import Dict, List, Optional, Tuple

from agent.application_specification.model import FileExistsBehavior
from agent.filesystem.tree_copy import (
    OPEN_FOLDER,
    FolderPair,
    TreeWalk,
    close_pairs,
    copy_file_at_on_disk,
    copy_symlink_at_on_disk,
    make_folder_at_on_disk,
    new_owner_on_disk,
    open_source_folder_at_on_disk,
    walk_pairs_on_disk,
)
from agent.forked_share import ForkedShare, abandon_share, collect_share
from agent.installer.cleanup import CleanupFileWriter, PathSet
from agent.installer.folders import open_child_folder_on_disk
from agent.installer.instructions import InstructionsFileWriter, InstructionsFragmentWriter
from agent.installer.paths import folder_chain, join
from agent.installer.plan import ResolvedEntry, SourceKind
from agent.installer.result import InstallError, InstallResult
from agent.installer.reuse import Identity, same_file_on_disk
from agent.installer.split import split_top_level, start_install_share

_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: a FIFO slipped into the revision must not hang the install (fstat rejects it).
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclasses.dataclass
class _Tally:
    """Counters of one ``copy_entries_on_disk`` call, named as the InstallResult fields."""

    bytes_copied: int = 0
    directories_created: int = 0
    directories_kept: int = 0
    files_copied: int = 0
    files_overwritten: int = 0
    files_unchanged: int = 0
    paths_retained: int = 0
    symlinks_created: int = 0

    def counts(self) -> Dict[str, int]:
        return dataclasses.asdict(self)

    def add(self, counts: Dict[str, int]) -> None:
        for name, value in self.counts().items():
            setattr(self, name, value + int(counts[name]))


class _Level(FolderPair):
    """One folder being copied: both descriptors, both paths, its remaining children."""

    __slots__ = (
        "destination",
        "destination_prefix",
        "fresh",
        "resolved",
        "source",
        "source_prefix",
    )

    def __init__(
        self, fds: Tuple[int, int], source: str, destination: str, fresh: bool, resolved: bool
    ) -> None:
        super().__init__(*fds)
        self.source = source
        self.destination = destination
        # What a child's path starts with (join() once per folder, not per file).
        self.source_prefix = join(source, "")
        self.destination_prefix = join(destination, "")
        self.fresh = fresh  # created by this install: nothing can be in the way inside
        # Reached with no folder of this group's installs on the way: its symlinks are
        # followed as path resolution would.
        self.resolved = resolved

    def load_on_disk(self, identity: Identity) -> None:
        self.new_owner = _new_owner_on_disk(identity, self.target_fd)
        self.children = iter(self.list_source_on_disk())


@dataclasses.dataclass(frozen=True)
class _Copier(TreeWalk[_Level]):
    """What every step of the copy needs."""

    behavior: FileExistsBehavior
    kept: PathSet
    previous: PathSet  # every path the group's previous install made: never followed
    cleanup: CleanupFileWriter
    instructions: InstructionsFileWriter
    identity: Identity
    tally: _Tally

    def enter_folder_on_disk(self, parent: _Level, name: str) -> _Level:
        level = _enter_child_folder_on_disk(self, parent, name, parent.destination_prefix + name)
        try:
            level.load_on_disk(self.identity)
        except BaseException:
            level.close()
            raise
        return level

    def copy_leaf_on_disk(self, parent: _Level, child: os.DirEntry[str]) -> None:
        _copy_leaf_on_disk(self, parent, child.name, child.is_symlink())


def copy_entries_on_disk(
    entries: Tuple[ResolvedEntry, ...],
    behavior: FileExistsBehavior,
    kept: PathSet,
    previous: PathSet,
    identity: Identity,
    cleanup: CleanupFileWriter,
    instructions: InstructionsFileWriter,
) -> InstallResult:
    """Install every entry in appspec order; raises InstallError naming the failing path.

    ``kept`` are paths of the previous install that the plan found already in place and
    that the cleanup file still lists: they are checked (content, symlink target) and only
    rewritten when they differ. ``previous`` are all the paths the previous install made:
    a symlink found where one of its folders was is never followed (see
    :mod:`agent.installer.folders`).
    """
    tally = _Tally()
    copier = _Copier(behavior, kept, previous, cleanup, instructions, identity, tally)
    for entry in entries:
        _copy_entry_on_disk(copier, entry)
    return InstallResult(**tally.counts())


def _copy_entry_on_disk(copier: _Copier, entry: ResolvedEntry) -> None:
    destination_fd, fresh, resolved = _open_destination_on_disk(copier, entry.destination)
    if entry.kind is SourceKind.FILE:
        # The folders above a file source may be links inside the revision (the plan
        # checked where they lead); the file itself is opened without following.
        source_dir, name = os.path.split(entry.source)
        flags = _FOLDER_FLAGS
    else:
        # The plan found a real folder: a symlink swapped in since is not followed.
        source_dir, name, flags = entry.source, "", OPEN_FOLDER
    try:
        source_fd = _open_source_on_disk(entry.describe(), source_dir, flags)
    except BaseException:
        os.close(destination_fd)
        raise
    level = _Level((source_fd, destination_fd), source_dir, entry.destination, fresh, resolved)
    if entry.kind is SourceKind.FILE:
        try:
            level.new_owner = _new_owner_on_disk(copier.identity, destination_fd)
            _copy_leaf_on_disk(copier, level, name, os.path.islink(entry.source))
        finally:
            level.close()
        return
    _copy_tree_on_disk(copier, level)


def _open_destination_on_disk(copier: _Copier, destination: str) -> Tuple[int, bool, bool]:
    """Create the missing folders down to ``destination`` and open it, one folder at a time.

    Returns its descriptor, whether it was created now, and whether it was reached with no
    folder of this group's installs on the way (symlinks below it are then followed as
    path resolution would, see :mod:`agent.installer.folders`).
    """
    fd = os.open("/", _FOLDER_FLAGS)
    fresh = False
    resolved = True
    try:
        for folder in folder_chain(destination):
            name = os.path.basename(folder)
            child = (
                None if fresh else _open_existing_folder_on_disk(copier, fd, name, folder, resolved)
            )
            if child is None:
                child = _make_folder_on_disk(copier, fd, name, folder)
                fresh = True
            resolved = resolved and not fresh and folder not in copier.previous
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, fresh, resolved


def _open_existing_folder_on_disk(
    copier: _Copier, parent_fd: int, name: str, folder: str, resolved: bool
) -> Optional[int]:
    """The folder ``name`` of ``parent_fd`` when it exists (None when missing)."""
    agent_made = folder in copier.previous
    try:
        fd = open_child_folder_on_disk(
            parent_fd,
            name,
            folder,
            agent_made=agent_made,
            trusted_uid=copier.identity.uid,
            parent_resolved=resolved,
        )
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise InstallError(f"cannot create folder {folder}: something else is there") from None
    except OSError as error:
        raise _copy_error(folder, error) from error
    _note_existing_folder(copier, folder)
    return fd


def _make_folder_on_disk(copier: _Copier, parent_fd: int, name: str, folder: str) -> int:
    """Create ``folder`` (recorded first) and open it."""
    copier.cleanup.append_path(folder)
    try:
        fd = make_folder_at_on_disk(parent_fd, name)
    except OSError as error:
        raise _copy_error(folder, error) from error
    copier.instructions.mkdir(folder)
    copier.tally.directories_created += 1
    return fd


def _copy_tree_on_disk(copier: _Copier, top: _Level) -> None:
    # Every level's descriptors are on the stack from the moment they are open.
    stack: List[_Level] = [top]
    worker: Optional[ForkedShare] = None
    fragment = copier.instructions.fragment_path()
    try:
        top.load_on_disk(copier.identity)
        children = list(top.children)
        share = split_top_level(children)
        if share is not None:
            # Nothing buffered may be inherited by the worker, or it would be written twice.
            copier.instructions.flush()
            worker = start_install_share(lambda: _copy_share_on_disk(copier, top, share, fragment))
            children = children[0::2]
        top.children = iter(children)
        _walk_on_disk(copier, stack, top.destination)
        if worker is not None:
            # collect_share reaps the worker whatever it answers.
            finished, worker = worker, None
            copier.tally.add(json.loads(collect_share(finished)))
            copier.instructions.append_fragment_from_disk(fragment)
            copier.cleanup.resync_size_from_disk()
    finally:
        if worker is not None:
            abandon_share(worker)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fragment)
        close_pairs(stack)


def _copy_share_on_disk(
    copier: _Copier, top: _Level, share: List[os.DirEntry[str]], fragment: str
) -> bytes:  # pragma: no cover - runs in the worker process
    """The worker's half of the top level; its counts, as JSON."""
    tally = _Tally()
    with InstructionsFragmentWriter(fragment) as instructions:
        own = dataclasses.replace(copier, instructions=instructions, tally=tally)
        # The descriptors are this process's own copies after fork().
        level = _Level(
            (top.source_fd, top.target_fd), top.source, top.destination, top.fresh, top.resolved
        )
        level.new_owner = top.new_owner
        level.children = iter(share)
        _walk_on_disk(own, [level], top.destination)
    return json.dumps(tally.counts()).encode()


def _walk_on_disk(copier: _Copier, stack: List[_Level], root: str) -> None:
    """Copy what the levels on ``stack`` still hold, depth first; pops the levels it closes."""
    try:
        walk_pairs_on_disk(copier, stack)
    except OSError as error:
        # Listing or opening a folder failed; copying errors are already InstallErrors.
        raise _copy_error(stack[-1].destination if stack else root, error) from error


def _new_owner_on_disk(identity: Identity, folder_fd: int) -> Optional[Tuple[int, int]]:
    """The owner a new file gets in the folder, when owners are kept (root); else None."""
    if not identity.keeps_owner:
        return None
    return new_owner_on_disk(folder_fd, identity.uid, identity.gid)


def _enter_child_folder_on_disk(
    copier: _Copier, level: _Level, name: str, destination: str
) -> _Level:
    """Make sure ``destination`` is a folder (creating it when missing) and open both sides."""
    fd = None
    if not level.fresh:
        fd = _open_existing_folder_on_disk(
            copier, level.target_fd, name, destination, level.resolved
        )
    created = fd is None
    if fd is None:
        fd = _make_folder_on_disk(copier, level.target_fd, name, destination)
    try:
        source_fd = open_source_folder_at_on_disk(level.source_fd, name)
    except BaseException:
        os.close(fd)
        raise
    resolved = level.resolved and not created and destination not in copier.previous
    return _Level((source_fd, fd), level.source_prefix + name, destination, created, resolved)


def _note_existing_folder(copier: _Copier, folder: str) -> None:
    if folder in copier.kept:
        # Logged as the mkdir it stands for; the cleanup file lists it already.
        copier.instructions.mkdir(folder)
        copier.tally.directories_kept += 1


def _copy_leaf_on_disk(copier: _Copier, level: _Level, name: str, is_symlink: bool) -> None:
    """Copy one file or symlink ``name`` of the revision folder into the destination folder."""
    source = level.source_prefix + name
    destination = level.destination_prefix + name
    destination_fd = level.target_fd
    tally = copier.tally
    try:
        existing = None if level.fresh else _lstat_or_none(name, destination_fd)
        if existing is not None and destination in copier.kept:
            if _kept_leaf_matches_on_disk(level, name, existing, is_symlink):
                tally.files_unchanged += 1
                copier.instructions.copy(source, destination)
                return
            if stat.S_ISDIR(existing.st_mode):
                raise InstallError(f"{destination} is a folder and cannot be overwritten by a file")
            # Listed in the cleanup file already: replaced without a second record.
            os.unlink(name, dir_fd=destination_fd)
        elif existing is not None:
            if copier.behavior is FileExistsBehavior.RETAIN:
                tally.paths_retained += 1
                return
            if copier.behavior is FileExistsBehavior.DISALLOW:
                raise InstallError(
                    f"{destination} already exists (it appeared after the install was planned);"
                    " file_exists_behavior is DISALLOW"
                )
            if stat.S_ISDIR(existing.st_mode):
                raise InstallError(f"{destination} is a folder and cannot be overwritten by a file")
            copier.cleanup.append_path(destination)
            os.unlink(name, dir_fd=destination_fd)
            tally.files_overwritten += 1
        else:
            copier.cleanup.append_path(destination)
        if is_symlink:
            copy_symlink_at_on_disk(level, name)
            tally.symlinks_created += 1
        else:
            tally.bytes_copied += copy_file_at_on_disk(level, name, _require_regular_file).st_size
            tally.files_copied += 1
    except OSError as error:
        raise _copy_error(destination, error) from error
    copier.instructions.copy(source, destination)


def _require_regular_file(status: os.stat_result) -> None:
    if not stat.S_ISREG(status.st_mode):
        # Changed since the plan; reported with the destination like any copy error.
        raise OSError(errno.EINVAL, "the revision's file is no longer a regular file")


def _kept_leaf_matches_on_disk(
    level: FolderPair, name: str, existing: os.stat_result, is_symlink: bool
) -> bool:
    """Whether a kept path holds what copying ``name`` would write; if so, its times too.

    The plan checked type, mode, owner, size and ACLs; only the bytes (or the symlink's
    target) are left to compare. A rebuilt revision often has new times on unchanged
    files: those files stay and only get the new times.
    """
    fds = (level.source_fd, level.target_fd)
    if is_symlink:
        if not stat.S_ISLNK(existing.st_mode):
            return False
        if os.readlink(name, dir_fd=fds[0]) != os.readlink(name, dir_fd=fds[1]):
            return False
        source = os.stat(name, dir_fd=fds[0], follow_symlinks=False)
        if source.st_mtime_ns != existing.st_mtime_ns:
            times = (source.st_atime_ns, source.st_mtime_ns)
            os.utime(name, ns=times, dir_fd=fds[1], follow_symlinks=False)
        return True
    if not stat.S_ISREG(existing.st_mode):
        return False
    source_fd = os.open(name, _READ_FLAGS, dir_fd=fds[0])
    try:
        source = os.fstat(source_fd)
        if source.st_size != existing.st_size or source.st_mode != existing.st_mode:
            return False
        target_fd = os.open(name, _READ_FLAGS, dir_fd=fds[1])
        try:
            if not same_file_on_disk(source_fd, target_fd, source.st_size):
                return False
            if source.st_mtime_ns != existing.st_mtime_ns:
                os.utime(target_fd, ns=(source.st_atime_ns, source.st_mtime_ns))
            return True
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)


def _lstat_or_none(name: str, folder_fd: int) -> Optional[os.stat_result]:
    try:
        return os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_source_on_disk(where: str, source: str, flags: int) -> int:
    try:
        return os.open(source, flags)
    except OSError as error:
        raise InstallError(f"{where}: cannot open {source}: {error.strerror}") from error


def _copy_error(path: str, error: OSError) -> InstallError:
    if error.errno == errno.ENOSPC:
        return InstallError(f"the disk is full: cannot install {path}")
    return InstallError(f"cannot install {path}: {error.strerror}")
