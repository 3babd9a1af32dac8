"""Carrying out a checked plan: creating folders, copying files, recreating symlinks.

The revision is walked a second time with folder descriptors (``openat``-style calls), so
that no symlink in the revision is ever followed and no path is resolved twice. Each file is
copied by the kernel (``sendfile``) and keeps its mode, its times and, when we run as root,
its owner, as ``cp -p`` and the AWS agent do. Every path is appended to the cleanup file
just before it is created. Folders this install creates start empty, so what goes into
them needs no existence check; only folders that were already there cost a ``stat`` per
child. Paths the plan kept from the previous install are compared instead of copied.

Large trees are copied by two processes (see :mod:`agent.installer.split`), not threads:
with small files the per-file Python work dominates, and worker threads measured 2.5x
slower on tmpfs (GIL hand-offs at every system call).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from dataclasses import dataclass
from operator import attrgetter
from typing import Iterator, List, Optional, Tuple

from agent.application_specification.model import FileExistsBehavior
from agent.filesystem.sparse_copy import copy_file_data
from agent.installer.cleanup import CleanupFileWriter, PathSet
from agent.installer.instructions import InstructionsFileWriter, InstructionsFragmentWriter
from agent.installer.paths import folder_chain, join
from agent.installer.plan import ResolvedEntry, SourceKind
from agent.installer.result import InstallError
from agent.installer.reuse import Identity, same_file_on_disk
from agent.installer.split import (
    ForkedShare,
    abandon_share,
    collect_share,
    split_top_level,
    start_share_in_child,
)

_by_name = attrgetter("name")
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: a FIFO slipped into the revision must not hang the install (fstat rejects it).
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class CopyCounts:
    files_copied: int
    symlinks_created: int
    directories_created: int
    paths_retained: int
    files_overwritten: int
    bytes_copied: int
    paths_unchanged: int
    directories_kept: int


class _Tally:
    """Counters of one ``copy_entries_on_disk`` call."""

    __slots__ = (
        "bytes",
        "files",
        "folders",
        "kept_folders",
        "overwritten",
        "retained",
        "symlinks",
        "unchanged",
    )

    def __init__(self) -> None:
        self.files = self.symlinks = self.folders = self.kept_folders = 0
        self.retained = self.overwritten = self.bytes = self.unchanged = 0


@dataclass(frozen=True)
class _Copier:
    """What every step of the copy needs."""

    behavior: FileExistsBehavior
    kept: PathSet
    cleanup: CleanupFileWriter
    instructions: InstructionsFileWriter
    identity: Identity
    tally: _Tally


def copy_entries_on_disk(
    entries: Tuple[ResolvedEntry, ...],
    behavior: FileExistsBehavior,
    kept: PathSet,
    identity: Identity,
    cleanup: CleanupFileWriter,
    instructions: InstructionsFileWriter,
) -> CopyCounts:
    """Install every entry in appspec order; raises InstallError naming the failing path.

    ``kept`` are paths of the previous install that the plan found already in place and
    that the cleanup file still lists: they are checked (content, symlink target) and only
    rewritten when they differ.
    """
    tally = _Tally()
    copier = _Copier(behavior, kept, cleanup, instructions, identity, tally)
    for entry in entries:
        _copy_entry_on_disk(copier, entry)
    return CopyCounts(
        files_copied=tally.files,
        symlinks_created=tally.symlinks,
        directories_created=tally.folders,
        paths_retained=tally.retained,
        files_overwritten=tally.overwritten,
        bytes_copied=tally.bytes,
        paths_unchanged=tally.unchanged,
        directories_kept=tally.kept_folders,
    )


def _copy_entry_on_disk(copier: _Copier, entry: ResolvedEntry) -> None:
    fresh = _make_folder_chain_on_disk(copier, entry.destination)
    if entry.kind is SourceKind.FILE:
        source_dir, name = os.path.split(entry.source)
        fds = _open_pair(entry.describe(), source_dir, entry.destination)
        try:
            level = _Level(fds, source_dir, entry.destination, fresh)
            level.new_owner = _new_owner_on_disk(copier.identity, fds[1])
            _copy_leaf_on_disk(copier, level, name, os.path.islink(entry.source))
        finally:
            _close_pair(fds)
        return
    _copy_tree_on_disk(copier, entry, fresh)


def _make_folder_chain_on_disk(copier: _Copier, destination: str) -> bool:
    """Create the missing folders down to ``destination``; True when it was created now."""
    fresh = False
    for folder in folder_chain(destination):
        if not fresh:
            try:
                mode = os.stat(folder).st_mode
            except FileNotFoundError:
                pass
            except OSError as error:
                raise _copy_error(folder, error) from error
            else:
                if stat.S_ISDIR(mode):
                    _note_existing_folder(copier, folder)
                    continue
                raise InstallError(f"cannot create folder {folder}: something else is there")
        copier.cleanup.append_path(folder)
        try:
            os.mkdir(folder)
        except OSError as error:
            raise _copy_error(folder, error) from error
        copier.instructions.mkdir(folder)
        copier.tally.folders += 1
        fresh = True
    return fresh


class _Level:
    """One folder being copied: both descriptors, both paths, its remaining children."""

    __slots__ = ("children", "destination", "fds", "fresh", "new_owner", "source")

    def __init__(self, fds: Tuple[int, int], source: str, destination: str, fresh: bool) -> None:
        self.fds = fds
        self.source = source
        self.destination = destination
        self.fresh = fresh  # created by this install: nothing can be in the way inside
        # The owner a new file gets here, when owners are kept (root).
        self.new_owner: Optional[Tuple[int, int]] = None
        self.children: Iterator[os.DirEntry[str]] = iter(())

    def load_on_disk(self, identity: Identity) -> None:
        self.new_owner = _new_owner_on_disk(identity, self.fds[1])
        # Sorted for a reproducible install log; one folder's entries at a time.
        with os.scandir(self.fds[0]) as listing:
            self.children = iter(sorted(listing, key=_by_name))


def _copy_tree_on_disk(copier: _Copier, entry: ResolvedEntry, fresh: bool) -> None:
    fds = _open_pair(entry.describe(), entry.source, entry.destination)
    # Every level's descriptors are on the stack from the moment they are open.
    stack: List[_Level] = [_Level(fds, entry.source, entry.destination, fresh)]
    worker: Optional[ForkedShare] = None
    fragment = copier.instructions.fragment_path()
    try:
        stack[0].load_on_disk(copier.identity)
        top = list(stack[0].children)
        share = split_top_level(top)
        if share is not None:
            # Nothing buffered may be inherited by the worker, or it would be written twice.
            copier.instructions.flush()
            worker = start_share_in_child(
                lambda: _copy_share_on_disk(copier, stack[0], share, entry.destination, fragment)
            )
            top = top[0::2]
        stack[0].children = iter(top)
        _walk_on_disk(copier, stack, entry.destination)
        if worker is not None:
            # collect_share reaps the worker whatever it answers.
            finished, worker = worker, None
            tally = json.loads(collect_share(finished))
            for name, value in tally.items():
                setattr(copier.tally, name, getattr(copier.tally, name) + int(value))
            copier.instructions.append_fragment_from_disk(fragment)
            copier.cleanup.resync_size_from_disk()
    finally:
        if worker is not None:
            abandon_share(worker)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fragment)
        for level in stack:
            _close_pair(level.fds)


def _copy_share_on_disk(
    copier: _Copier, top: _Level, share: List[os.DirEntry[str]], root: str, fragment: str
) -> bytes:  # pragma: no cover - runs in the worker process
    """The worker's half of the top level; its counts, as JSON."""
    tally = _Tally()
    with InstructionsFragmentWriter(fragment) as instructions:
        own = _Copier(
            copier.behavior, copier.kept, copier.cleanup, instructions, copier.identity, tally
        )
        # The descriptors are this process's own copies after fork().
        level = _Level(top.fds, top.source, top.destination, top.fresh)
        level.new_owner = top.new_owner
        level.children = iter(share)
        _walk_on_disk(own, [level], root)
    return json.dumps({name: getattr(tally, name) for name in _Tally.__slots__}).encode()


def _walk_on_disk(copier: _Copier, stack: List[_Level], root: str) -> None:
    """Copy what the levels on ``stack`` still hold, depth first; pops the levels it closes."""
    try:
        while stack:
            level = stack[-1]
            for child in level.children:
                name = child.name
                source = join(level.source, name)
                destination = join(level.destination, name)
                if child.is_dir(follow_symlinks=False):
                    created = _make_child_folder_on_disk(copier, level, name, destination)
                    fds = _open_child_pair(level.fds, name, destination)
                    stack.append(_Level(fds, source, destination, created))
                    stack[-1].load_on_disk(copier.identity)
                    break
                _copy_leaf_on_disk(copier, level, name, child.is_symlink())
            else:
                _close_pair(stack.pop().fds)
    except OSError as error:
        # Listing or opening a folder failed; copying errors are already InstallErrors.
        raise _copy_error(stack[-1].destination if stack else root, error) from error


def _new_owner_on_disk(identity: Identity, folder_fd: int) -> Optional[Tuple[int, int]]:
    """The owner a new file gets in the folder, when owners are kept (root); else None."""
    if not identity.keeps_owner:
        return None
    folder = os.fstat(folder_fd)
    setgid = folder.st_mode & stat.S_ISGID
    return identity.uid, folder.st_gid if setgid else identity.gid


def _make_child_folder_on_disk(copier: _Copier, level: _Level, name: str, destination: str) -> bool:
    """Make sure ``destination`` is a folder; True when this install created it."""
    if not level.fresh:
        try:
            mode = os.stat(name, dir_fd=level.fds[1]).st_mode
        except FileNotFoundError:
            pass
        except OSError as error:
            raise _copy_error(destination, error) from error
        else:
            if stat.S_ISDIR(mode):
                _note_existing_folder(copier, destination)
                return False
            raise InstallError(f"cannot create folder {destination}: something else is there")
    copier.cleanup.append_path(destination)
    try:
        os.mkdir(name, dir_fd=level.fds[1])
    except OSError as error:
        raise _copy_error(destination, error) from error
    copier.instructions.mkdir(destination)
    copier.tally.folders += 1
    return True


def _note_existing_folder(copier: _Copier, folder: str) -> None:
    if folder in copier.kept:
        # Logged as the mkdir it stands for; the cleanup file lists it already.
        copier.instructions.mkdir(folder)
        copier.tally.kept_folders += 1


def _copy_leaf_on_disk(copier: _Copier, level: _Level, name: str, is_symlink: bool) -> None:
    """Copy one file or symlink ``name`` of the revision folder into the destination folder."""
    fds = level.fds
    source = join(level.source, name)
    destination = join(level.destination, name)
    fresh = level.fresh
    destination_fd = fds[1]
    tally = copier.tally
    try:
        existing = None if fresh else _lstat_or_none(name, destination_fd)
        if existing is not None and destination in copier.kept:
            if _kept_leaf_matches_on_disk(fds, name, existing, is_symlink):
                tally.unchanged += 1
                copier.instructions.copy(source, destination)
                return
            if stat.S_ISDIR(existing.st_mode):
                raise InstallError(f"{destination} is a folder and cannot be overwritten by a file")
            # Listed in the cleanup file already: replaced without a second record.
            os.unlink(name, dir_fd=destination_fd)
        elif existing is not None:
            if copier.behavior is FileExistsBehavior.RETAIN:
                tally.retained += 1
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
            tally.overwritten += 1
        else:
            copier.cleanup.append_path(destination)
        if is_symlink:
            _copy_symlink_on_disk(fds, name, level.new_owner)
            tally.symlinks += 1
        else:
            tally.bytes += _copy_file_on_disk(fds, name, level.new_owner)
            tally.files += 1
    except OSError as error:
        raise _copy_error(destination, error) from error
    copier.instructions.copy(source, destination)


def _copy_file_on_disk(
    fds: Tuple[int, int], name: str, new_owner: Optional[Tuple[int, int]]
) -> int:
    """Copy the data, owner (as root), mode and times of one file; returns its size.

    ``new_owner`` is the owner the new file gets, None when owners are not kept.
    """
    source_fd = os.open(name, _READ_FLAGS, dir_fd=fds[0])
    try:
        status = os.fstat(source_fd)
        if not stat.S_ISREG(status.st_mode):
            # Changed since the plan; reported with the destination like any copy error.
            raise OSError(errno.EINVAL, "the revision's file is no longer a regular file")
        target_fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=fds[1])
        try:
            copy_file_data(source_fd, target_fd, status)
            if new_owner is not None and (status.st_uid, status.st_gid) != new_owner:
                os.fchown(target_fd, status.st_uid, status.st_gid)
            # After fchown, which clears set-id bits.
            os.fchmod(target_fd, stat.S_IMODE(status.st_mode))
            os.utime(target_fd, ns=(status.st_atime_ns, status.st_mtime_ns))
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)
    return status.st_size


def _copy_symlink_on_disk(
    fds: Tuple[int, int], name: str, new_owner: Optional[Tuple[int, int]]
) -> None:
    status = os.stat(name, dir_fd=fds[0], follow_symlinks=False)
    target = os.readlink(name, dir_fd=fds[0])
    os.symlink(target, name, dir_fd=fds[1])
    if new_owner is not None and (status.st_uid, status.st_gid) != new_owner:
        os.chown(name, status.st_uid, status.st_gid, dir_fd=fds[1], follow_symlinks=False)
    os.utime(
        name, ns=(status.st_atime_ns, status.st_mtime_ns), dir_fd=fds[1], follow_symlinks=False
    )


def _kept_leaf_matches_on_disk(
    fds: Tuple[int, int], name: str, existing: os.stat_result, is_symlink: bool
) -> bool:
    """Whether a kept path holds what copying ``name`` would write; if so, its times too.

    The plan checked type, mode, owner, size and ACLs; only the bytes (or the symlink's
    target) are left to compare. A rebuilt revision often has new times on unchanged
    files: those files stay and only get the new times.
    """
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
            if os.fstat(target_fd).st_size != source.st_size:
                return False
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


def _open_pair(where: str, source: str, destination: str) -> Tuple[int, int]:
    try:
        source_fd = os.open(source, _FOLDER_FLAGS)
    except OSError as error:
        raise InstallError(f"{where}: cannot open {source}: {error.strerror}") from error
    try:
        return source_fd, os.open(destination, _FOLDER_FLAGS)
    except OSError as error:
        os.close(source_fd)
        raise InstallError(f"{where}: cannot open {destination}: {error.strerror}") from error


def _open_child_pair(fds: Tuple[int, int], name: str, destination: str) -> Tuple[int, int]:
    # The revision side never follows a symlink; the destination side may (a pre-existing
    # /var/www -> /srv/www is installed through, like the AWS agent does).
    source_fd = os.open(name, _FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=fds[0])
    try:
        return source_fd, os.open(name, _FOLDER_FLAGS, dir_fd=fds[1])
    except OSError:
        os.close(source_fd)
        raise


def _close_pair(fds: Tuple[int, int]) -> None:
    os.close(fds[0])
    os.close(fds[1])


def _copy_error(path: str, error: OSError) -> InstallError:
    if error.errno == errno.ENOSPC:
        return InstallError(f"the disk is full: cannot install {path}")
    return InstallError(f"cannot install {path}: {error.strerror}")
