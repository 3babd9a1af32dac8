"""Revisions that are already on this host: a local bundle file or a local folder.

A local file becomes ``<deployment>/bundle.tar`` by hard link when it can (same file
system, O(1)), by a streamed copy otherwise. A local folder is copied straight into
``deployment-archive/`` with the unpacker's rules: modes and mtimes kept, symlinks
recreated as symlinks and never followed, device files, FIFOs and sockets refused, the
same policy applied, and the folder built beside its final place and renamed in whole.

The copy walks the tree through folder file descriptors (``dir_fd``), so every name is
resolved inside the folder being read or written and a symlink can never redirect it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import List, Optional

from agent.filesystem.free_space import FreeSpace, SpaceClaim, measure_free_space_on_disk
from agent.filesystem.sparse_copy import allocated_bytes, copy_file_data
from agent.revision.archive_staging import (
    build_archive_dir_on_disk,
    bundle_file_staged_on_disk,
    check_bundle_fits_on_disk,
    describe_os_error,
    is_disk_full,
)
from agent.revision.bundle import (
    DEFAULT_POLICY,
    SizeBudget,
    UnpackPolicy,
    check_member_kind,
    check_member_permissions,
    show_name,
)
from agent.revision.errors import BundleError

_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the listing must not hang the open.
_OPEN_SOURCE_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# link() cannot make this hard link; copy instead.
_NO_LINK_ERRNOS = (
    errno.EXDEV,
    errno.EPERM,
    errno.EACCES,
    errno.EMLINK,
    errno.EOPNOTSUPP,
    errno.ENOSYS,
)


def fetch_local_bundle_to_disk(location: Path, bundle_path: Path) -> None:
    """Put the local bundle file ``location`` at ``bundle_path``: a hard link when both are on
    one file system, else a streamed copy. ``bundle_path`` is replaced atomically."""
    where = f"local bundle {location}"
    try:
        source_fd = os.open(location, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BundleError(f"{where} does not exist") from None
    except OSError as error:
        raise BundleError(f"cannot read {where}: {describe_os_error(error)}") from None
    try:
        source = os.fstat(source_fd)
        if stat.S_ISDIR(source.st_mode):
            raise BundleError(
                f"{where} is a folder; a folder revision has the bundle type directory"
            )
        if not stat.S_ISREG(source.st_mode):
            raise BundleError(f"{where} is not a regular file")
        _place_bundle_on_disk(location, source_fd, source, bundle_path)
    finally:
        os.close(source_fd)


def _place_bundle_on_disk(
    location: Path, source_fd: int, source: os.stat_result, bundle_path: Path
) -> None:
    try:
        existing: Optional[os.stat_result] = os.stat(bundle_path)
    except FileNotFoundError:
        existing = None
    except OSError as error:
        raise BundleError(f"cannot write {bundle_path}: {describe_os_error(error)}") from None
    if existing is not None and _same_file(existing, source):
        return
    what = f"local bundle {location}"
    with bundle_file_staged_on_disk(bundle_path, what) as partial:
        if not _link_on_disk(location, source, partial):
            check_bundle_fits_on_disk(allocated_bytes(source), bundle_path, what)
            _copy_file_on_disk(source_fd, partial)


def _link_on_disk(location: Path, source: os.stat_result, link: Path) -> bool:
    """Hard-link ``location`` to ``link``; False when the file system will not, or when
    ``location`` no longer names the file that was opened."""
    try:
        os.link(location, link)
    except OSError as error:
        if error.errno in _NO_LINK_ERRNOS:
            return False
        raise
    if _same_file(os.lstat(link), source):
        return True
    os.unlink(link)
    return False


def _copy_file_on_disk(source_fd: int, target: Path) -> None:
    target_fd = os.open(target, _CREATE_FILE, 0o644)
    try:
        copy_file_data(source_fd, target_fd, os.fstat(source_fd))
    finally:
        os.close(target_fd)


def _same_file(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def copy_directory_revision_to_disk(
    source: Path, archive_dir: Path, *, policy: UnpackPolicy = DEFAULT_POLICY
) -> None:
    """Copy the folder ``source`` into ``archive_dir`` (a stale one is removed), all or nothing."""
    where = f"revision folder {source}"
    try:
        source_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BundleError(f"{where} does not exist") from None
    except NotADirectoryError:
        raise BundleError(f"{where} is not a folder") from None
    except OSError as error:
        raise BundleError(f"cannot read {where}: {describe_os_error(error)}") from None
    try:
        _refuse_overlap(source, archive_dir, where)

        def fill(destination: Path) -> None:
            space = measure_free_space_on_disk(destination)
            _check_tree_fits_on_disk(source_fd, space, where, archive_dir)
            room = SpaceClaim(space)
            _TreeCopy(where, archive_dir, policy, room).copy_on_disk(source_fd, destination)

        build_archive_dir_on_disk(archive_dir, fill)
    finally:
        os.close(source_fd)


def _refuse_overlap(source: Path, archive_dir: Path, where: str) -> None:
    real_source = os.path.realpath(source)
    real_target = os.path.join(os.path.realpath(archive_dir.parent), archive_dir.name)
    for inner, outer in ((real_target, real_source), (real_source, real_target)):
        if inner == outer or inner.startswith(outer.rstrip("/") + "/"):
            raise BundleError(
                f"{where} and {archive_dir} overlap; cannot copy a folder into itself"
            )


def _check_tree_fits_on_disk(
    source_fd: int, space: FreeSpace, where: str, archive_dir: Path
) -> None:
    """Refuse a revision folder whose copy would not fit, before copying anything."""
    room = SpaceClaim(space)
    try:
        for _folder, folders, files, folder_fd in os.fwalk(dir_fd=source_fd):
            for _name in folders:
                room.claim(1)  # a block on most filesystems
            for name in files:
                room.claim(allocated_bytes(os.stat(name, dir_fd=folder_fd, follow_symlinks=False)))
    except OSError:
        return  # the copy itself names what cannot be read
    if not room.fits():
        raise BundleError(room.shortfall(f"{where}, copied into {archive_dir},"))


class _Folder:
    """A folder being copied: both descriptors, its listing and where the walk is in it."""

    def __init__(self, source_fd: int, target_fd: int, prefix: bytes, info: os.stat_result) -> None:
        self.source_fd = source_fd
        self.target_fd = target_fd
        self.prefix = prefix
        self.info = info
        with os.scandir(source_fd) as listing:
            self.entries: List[os.DirEntry[str]] = list(listing)
        self.next = 0


class _TreeCopy:
    """One copy of a folder tree, depth first, without recursion (depth is the bundle's)."""

    def __init__(
        self, where: str, archive_dir: Path, policy: UnpackPolicy, room: SpaceClaim
    ) -> None:
        self.where = where
        self.archive_dir = archive_dir
        self.policy = policy
        self.budget = SizeBudget(policy.max_extraction_size, where, room, str(archive_dir))
        self.current = b"."

    def copy_on_disk(self, source_root_fd: int, destination: Path) -> None:
        target_root_fd = os.open(destination, _OPEN_FOLDER)
        stack: List[_Folder] = []
        try:
            info = os.fstat(source_root_fd)
            stack.append(_Folder(source_root_fd, target_root_fd, b"", info))
            self._walk(stack)
        except OSError as error:
            raise BundleError(self._describe(error)) from None
        finally:
            for folder in stack[1:]:
                os.close(folder.source_fd)
                os.close(folder.target_fd)
            os.close(target_root_fd)

    def _describe(self, error: OSError) -> str:
        if error.errno is not None and is_disk_full(error.errno):
            return (
                f"the disk is full: no space left on device for {self.archive_dir}"
                f" while copying {self.where} (at {show_name(self.current)})"
            )
        return f"{self.where}: cannot copy {show_name(self.current)}: {describe_os_error(error)}"

    def _walk(self, stack: List[_Folder]) -> None:
        where, policy = self.where, self.policy
        while stack:
            folder = stack[-1]
            if folder.next == len(folder.entries):
                self.current = folder.prefix or b"."
                self._finish_folder(folder)
                stack.pop()
                if len(stack) > 0:
                    os.close(folder.source_fd)
                    os.close(folder.target_fd)
                continue
            entry = folder.entries[folder.next]
            folder.next += 1
            name = entry.name
            member = folder.prefix + os.fsencode(name)
            self.current = member
            if entry.is_dir(follow_symlinks=False):
                stack.append(self._open_folder(folder, name, member))
            elif entry.is_file(follow_symlinks=False):
                self._copy_file(folder, name, member)
            elif entry.is_symlink():
                check_member_kind(stat.S_IFLNK, member, where, policy)
                self._copy_symlink(folder, entry, member)
            else:
                mode = entry.stat(follow_symlinks=False).st_mode
                check_member_kind(stat.S_IFMT(mode), member, where, policy)
                # Only reached if the entry changed type under us.
                raise BundleError(f"{where}: member {show_name(member)} changed while copied")

    def _open_folder(self, parent: _Folder, name: str, member: bytes) -> _Folder:
        source_fd = os.open(name, _OPEN_FOLDER, dir_fd=parent.source_fd)
        try:
            info = os.fstat(source_fd)
            check_member_permissions(stat.S_IFDIR, info.st_mode, member, self.where, self.policy)
            self.budget.take_room(1)
            # Owner-only while it is filled; its own mode is applied once it is complete.
            os.mkdir(name, 0o700, dir_fd=parent.target_fd)
            target_fd = os.open(name, _OPEN_FOLDER, dir_fd=parent.target_fd)
        except BaseException:
            os.close(source_fd)
            raise
        try:
            return _Folder(source_fd, target_fd, member + b"/", info)
        except BaseException:
            os.close(source_fd)
            os.close(target_fd)
            raise

    def _finish_folder(self, folder: _Folder) -> None:
        info = folder.info
        if not folder.prefix:
            # The revision root is ours, with the mode every revision root gets (a private
            # source folder must not lock hooks that run as other users out of it).
            os.utime(folder.target_fd, ns=(info.st_atime_ns, info.st_mtime_ns))
            return
        if self.policy.apply_ownership:
            os.fchown(folder.target_fd, info.st_uid, info.st_gid)
        os.fchmod(folder.target_fd, stat.S_IMODE(info.st_mode))
        os.utime(folder.target_fd, ns=(info.st_atime_ns, info.st_mtime_ns))

    def _copy_file(self, folder: _Folder, name: str, member: bytes) -> None:
        source_fd = os.open(name, _OPEN_SOURCE_FILE, dir_fd=folder.source_fd)
        try:
            info = os.fstat(source_fd)
            file_type = stat.S_IFMT(info.st_mode)
            check_member_kind(file_type, member, self.where, self.policy)
            if file_type != stat.S_IFREG:
                raise BundleError(f"{self.where}: member {show_name(member)} changed while copied")
            check_member_permissions(file_type, info.st_mode, member, self.where, self.policy)
            self.budget.declare(info.st_size, member, stored=allocated_bytes(info))
            target_fd = os.open(name, _CREATE_FILE, 0o600, dir_fd=folder.target_fd)
            try:
                copy_file_data(source_fd, target_fd, info)
                if self.policy.apply_ownership:
                    # Before the chmod: chown clears setuid and setgid bits.
                    os.fchown(target_fd, info.st_uid, info.st_gid)
                os.fchmod(target_fd, stat.S_IMODE(info.st_mode))
                os.utime(target_fd, ns=(info.st_atime_ns, info.st_mtime_ns))
            finally:
                os.close(target_fd)
        finally:
            os.close(source_fd)

    def _copy_symlink(self, folder: _Folder, entry: os.DirEntry[str], member: bytes) -> None:
        name = entry.name
        info = entry.stat(follow_symlinks=False)
        target = os.readlink(name, dir_fd=folder.source_fd)
        self.budget.take_room(0)
        os.symlink(target, name, dir_fd=folder.target_fd)
        if self.policy.apply_ownership:
            os.chown(name, info.st_uid, info.st_gid, dir_fd=folder.target_fd, follow_symlinks=False)
        os.utime(
            name,
            ns=(info.st_atime_ns, info.st_mtime_ns),
            dir_fd=folder.target_fd,
            follow_symlinks=False,
        )
