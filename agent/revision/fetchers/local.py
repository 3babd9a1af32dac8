"""Revisions that are already on this host: a local bundle file or a local folder.

A local file becomes ``<deployment>/bundle.tar`` by hard link when it can (same file
system, O(1)), by a streamed copy otherwise. A local folder is copied straight into
``deployment-archive/`` with the unpacker's rules: modes and mtimes kept, symlinks
recreated as symlinks and never followed, device files, FIFOs and sockets refused, the
same policy applied, and the folder built beside its final place and renamed in whole.

The copy walks the tree through folder file descriptors (``dir_fd``), so every name is
resolved inside the folder being read or written and a symlink can never redirect it
(:mod:`agent.filesystem.tree_copy`, which the install's copy goes through too).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import List, Optional, Tuple

from agent.filesystem import tree_copy
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


class _Folder(tree_copy.FolderPair):
    """A folder being copied, with its source's status and its name in the revision."""

    __slots__ = ("info", "prefix")

    def __init__(self, source_fd: int, target_fd: int, prefix: bytes, info: os.stat_result) -> None:
        super().__init__(source_fd, target_fd)
        self.prefix = prefix
        self.info = info


class _TreeCopy(tree_copy.TreeWalk[_Folder]):
    """One copy of a folder revision, checked member by member as an archive's would be."""

    def __init__(
        self, where: str, archive_dir: Path, policy: UnpackPolicy, room: SpaceClaim
    ) -> None:
        self.where = where
        self.archive_dir = archive_dir
        self.policy = policy
        self.budget = SizeBudget(policy.max_extraction_size, where, room, str(archive_dir))
        self.current = b"."
        # Owners are the source's only when the policy asks (see FolderPair.new_owner).
        self.owner: Optional[Tuple[int, int]] = (
            (os.geteuid(), os.getegid()) if policy.apply_ownership else None
        )

    def copy_on_disk(self, source_root_fd: int, destination: Path) -> None:
        stack: List[_Folder] = []
        try:
            source_fd = os.dup(source_root_fd)
            try:
                target_fd = os.open(destination, tree_copy.OPEN_FOLDER)
            except BaseException:
                os.close(source_fd)
                raise
            stack.append(_Folder(source_fd, target_fd, b"", os.fstat(source_fd)))
            self._load_on_disk(stack[0])
            tree_copy.walk_pairs_on_disk(self, stack)
        except OSError as error:
            raise BundleError(self._describe(error)) from None
        finally:
            tree_copy.close_pairs(stack)

    def _describe(self, error: OSError) -> str:
        if error.errno is not None and is_disk_full(error.errno):
            return (
                f"the disk is full: no space left on device for {self.archive_dir}"
                f" while copying {self.where} (at {show_name(self.current)})"
            )
        return f"{self.where}: cannot copy {show_name(self.current)}: {describe_os_error(error)}"

    def _load_on_disk(self, folder: _Folder) -> None:
        if self.owner is not None:
            folder.new_owner = tree_copy.new_owner_on_disk(folder.target_fd, *self.owner)
        folder.children = iter(folder.list_source_on_disk())

    def enter_folder_on_disk(self, parent: _Folder, name: str) -> _Folder:
        member = parent.prefix + os.fsencode(name)
        self.current = member
        source_fd = tree_copy.open_source_folder_at_on_disk(parent.source_fd, name)
        try:
            info = os.fstat(source_fd)
            check_member_permissions(stat.S_IFDIR, info.st_mode, member, self.where, self.policy)
            self.budget.take_room(1)
            # Owner-only while it is filled; its own mode is applied once it is complete.
            target_fd = tree_copy.make_folder_at_on_disk(parent.target_fd, name, 0o700)
        except BaseException:
            os.close(source_fd)
            raise
        folder = _Folder(source_fd, target_fd, member + b"/", info)
        try:
            self._load_on_disk(folder)
        except BaseException:
            folder.close()
            raise
        return folder

    def leave_folder_on_disk(self, folder: _Folder) -> None:
        self.current = folder.prefix or b"."
        info = folder.info
        if folder.prefix:
            if self.policy.apply_ownership:
                os.fchown(folder.target_fd, info.st_uid, info.st_gid)
            os.fchmod(folder.target_fd, stat.S_IMODE(info.st_mode))
        # The revision root keeps the mode every revision root gets (a private source
        # folder must not lock hooks that run as other users out of it), and its times.
        os.utime(folder.target_fd, ns=(info.st_atime_ns, info.st_mtime_ns))

    def copy_leaf_on_disk(self, parent: _Folder, child: os.DirEntry[str]) -> None:
        where, policy = self.where, self.policy
        member = parent.prefix + os.fsencode(child.name)
        self.current = member
        if child.is_file(follow_symlinks=False):

            def check(info: os.stat_result) -> None:
                file_type = stat.S_IFMT(info.st_mode)
                check_member_kind(file_type, member, where, policy)
                if file_type != stat.S_IFREG:
                    raise BundleError(f"{where}: member {show_name(member)} changed while copied")
                check_member_permissions(file_type, info.st_mode, member, where, policy)
                self.budget.declare(info.st_size, member, stored=allocated_bytes(info))

            tree_copy.copy_file_at_on_disk(parent, child.name, check)
        elif child.is_symlink():
            check_member_kind(stat.S_IFLNK, member, where, policy)
            self.budget.take_room(0)
            tree_copy.copy_symlink_at_on_disk(parent, child.name)
        else:
            mode = child.stat(follow_symlinks=False).st_mode
            check_member_kind(stat.S_IFMT(mode), member, where, policy)
            # Only reached if the entry changed type under us.
            raise BundleError(f"{where}: member {show_name(member)} changed while copied")
