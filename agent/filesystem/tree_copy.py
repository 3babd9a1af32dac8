"""Copying a folder tree through folder descriptors, the one way both copies of a revision go.

A revision is copied twice: a folder revision into ``deployment-archive/``
(:mod:`agent.revision.fetchers.local`) and every revision into its destinations
(:mod:`agent.installer.copy`). Both walk the source and the copy side by side, one pair of
folder descriptors per level (``openat``-style calls), so every name is resolved inside
a folder already open and a symlink planted in the source or in the copy can never
redirect it: folders and files of the source are opened with ``O_NOFOLLOW``, files and
symlinks are created with ``O_EXCL``/``symlinkat`` (which never follow), and a source
entry that changed type since it was listed is caught by ``fstat`` on what was opened.

A file is copied by :func:`copy_file_at_on_disk`: its data without filling its holes
(:mod:`agent.filesystem.sparse_copy`), then its owner when owners are kept, then its mode
(after the owner: ``chown`` clears set-user-ID and set-group-ID bits), then its times. A
symlink is recreated, never followed. What differs between the two copies (what a folder
is, what the copy checks and records) is theirs: this module walks and copies.
"""

from __future__ import annotations

import os
import stat
from operator import attrgetter
from typing import Callable, Generic, Iterator, List, Optional, Sequence, Tuple, TypeVar

from agent.filesystem.sparse_copy import copy_file_data

OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the listing must not hang the open (fstat rejects it).
_OPEN_SOURCE_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_by_name = attrgetter("name")

# The owner a file created in a folder gets (uid, gid); None when owners are not kept.
NewOwner = Optional[Tuple[int, int]]
# Called with the ``fstat`` of a source file before its copy is created; raises to refuse it.
FileCheck = Callable[[os.stat_result], None]


class FolderPair:
    """One folder of the source and its copy, both open, and the source entries left to copy.

    The descriptors belong to the pair from the moment it exists: :meth:`close` closes both.
    """

    __slots__ = ("children", "new_owner", "source_fd", "target_fd")

    def __init__(self, source_fd: int, target_fd: int) -> None:
        self.source_fd = source_fd
        self.target_fd = target_fd
        # What a file created in the copy gets as owner when owners are kept (see
        # :func:`new_owner_on_disk`); None when they are not.
        self.new_owner: NewOwner = None
        self.children: Iterator[os.DirEntry[str]] = iter(())

    def list_source_on_disk(self) -> List[os.DirEntry[str]]:
        """The source folder's entries, sorted by name (a reproducible order of copies and
        of the first error; one folder's listing at a time, never the tree's)."""
        with os.scandir(self.source_fd) as listing:
            return sorted(listing, key=_by_name)

    def close(self) -> None:
        try:
            os.close(self.source_fd)
        finally:
            os.close(self.target_fd)


Pair = TypeVar("Pair", bound=FolderPair)


class TreeWalk(Generic[Pair]):
    """What one copy does at each step of :func:`walk_pairs_on_disk`; subclasses say how."""

    def enter_folder_on_disk(self, parent: Pair, name: str) -> Pair:
        """Open (or create) the sub-folder ``name`` on both sides; its pair, children set."""
        raise NotImplementedError

    def copy_leaf_on_disk(self, parent: Pair, child: os.DirEntry[str]) -> None:
        """Copy a source entry that is not a folder (a file, a symlink, or something to refuse)."""
        raise NotImplementedError

    def leave_folder_on_disk(self, folder: Pair) -> None:
        """The folder's entries are all copied (it is closed right after)."""


def walk_pairs_on_disk(walk: TreeWalk[Pair], stack: List[Pair]) -> None:
    """Copy what the pairs on ``stack`` still hold, depth first, without recursion (the depth
    is the revision's). Pairs are popped and closed as they are finished; on an error, those
    left on ``stack`` are the caller's to close (:func:`close_pairs`)."""
    while stack:
        level = stack[-1]
        for child in level.children:
            if child.is_dir(follow_symlinks=False):
                stack.append(walk.enter_folder_on_disk(level, child.name))
                break
            walk.copy_leaf_on_disk(level, child)
        else:
            stack.pop()
            try:
                walk.leave_folder_on_disk(level)
            finally:
                level.close()


def close_pairs(pairs: Sequence[FolderPair]) -> None:
    """Close every pair still open (after a failed or finished walk)."""
    for pair in pairs:
        pair.close()


def open_source_folder_at_on_disk(parent_fd: int, name: str) -> int:
    """Open the source's sub-folder ``name``; a symlink there is refused (ELOOP/ENOTDIR)."""
    return os.open(name, OPEN_FOLDER, dir_fd=parent_fd)


def make_folder_at_on_disk(parent_fd: int, name: str, mode: int = 0o777) -> int:
    """Create the folder ``name`` (``mode`` less the umask) and open it without following."""
    os.mkdir(name, mode, dir_fd=parent_fd)
    return os.open(name, OPEN_FOLDER, dir_fd=parent_fd)


def new_owner_on_disk(folder_fd: int, uid: int, gid: int) -> Tuple[int, int]:
    """The owner a file created by ``uid``/``gid`` in the open folder gets: a set-group-ID
    folder hands its own group down."""
    folder = os.fstat(folder_fd)
    return uid, folder.st_gid if folder.st_mode & stat.S_ISGID else gid


def copy_file_at_on_disk(pair: FolderPair, name: str, check: FileCheck) -> os.stat_result:
    """Copy the file ``name`` of the pair's source folder into its copy, which must not
    have that name yet; returns the source's status.

    ``check`` sees the status of what was opened before anything is created. Owners are
    kept when ``pair.new_owner`` is set (and changed only when they differ from it).
    """
    source_fd = os.open(name, _OPEN_SOURCE_FILE, dir_fd=pair.source_fd)
    try:
        status = os.fstat(source_fd)
        check(status)
        target_fd = os.open(name, _CREATE_FILE, 0o600, dir_fd=pair.target_fd)
        try:
            copy_file_data(source_fd, target_fd, status)
            new_owner = pair.new_owner
            if new_owner is not None and (status.st_uid, status.st_gid) != new_owner:
                os.fchown(target_fd, status.st_uid, status.st_gid)
            # After fchown, which clears set-id bits.
            os.fchmod(target_fd, stat.S_IMODE(status.st_mode))
            os.utime(target_fd, ns=(status.st_atime_ns, status.st_mtime_ns))
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)
    return status


def copy_symlink_at_on_disk(pair: FolderPair, name: str) -> os.stat_result:
    """Recreate the symlink ``name`` of the pair's source folder in its copy, with its
    times (and its owner when owners are kept); returns the source's status."""
    status = os.stat(name, dir_fd=pair.source_fd, follow_symlinks=False)
    target = os.readlink(name, dir_fd=pair.source_fd)
    os.symlink(target, name, dir_fd=pair.target_fd)
    new_owner = pair.new_owner
    if new_owner is not None and (status.st_uid, status.st_gid) != new_owner:
        os.chown(name, status.st_uid, status.st_gid, dir_fd=pair.target_fd, follow_symlinks=False)
    os.utime(
        name,
        ns=(status.st_atime_ns, status.st_mtime_ns),
        dir_fd=pair.target_fd,
        follow_symlinks=False,
    )
    return status
