"""Whether a path the group's previous install created can stay instead of being recreated.

Deleting a revision and copying an identical one back costs far more than the copy alone
(inode churn, and online discard on many hosts). A path of the previous install is kept
when, once its times are set, nobody could tell it from a fresh copy: same type, mode and
owner as the copy would give it, no ACL, and (checked by the copy) the same content or
symlink target. A folder is kept when it looks like a fresh ``mkdir``. Anything else is
removed and recreated as the AWS agent does. Inode numbers and change times are the only
difference.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Optional, Tuple

_ACL_PREFIX = "system.posix_acl"
_COMPARE_BLOCK = 1 << 16


@dataclass(frozen=True)
class Identity:
    """Who the install runs as, which decides what a fresh file or folder looks like."""

    uid: int
    gid: int
    umask: int
    keeps_owner: bool  # root: copies keep the revision's owner, as ``cp -p`` does


def read_identity_from_os() -> Identity:
    uid = os.geteuid()
    return Identity(uid, os.getegid(), _read_umask_from_os(), uid == 0)


def expected_owner(
    identity: Identity, source: os.stat_result, parent: os.stat_result
) -> Tuple[int, int]:
    """The owner a fresh copy of ``source`` gets in folder ``parent``."""
    if identity.keeps_owner:
        return source.st_uid, source.st_gid
    return identity.uid, _new_gid(identity, parent)


def folder_is_fresh_like_on_disk(
    path: str, status: os.stat_result, parent: os.stat_result, identity: Identity
) -> bool:
    """Whether the folder looks as ``mkdir`` in ``parent`` would leave it."""
    expected_mode = 0o777 & ~identity.umask
    if parent.st_mode & stat.S_ISGID:
        expected_mode |= stat.S_ISGID
    return (
        stat.S_IMODE(status.st_mode) == expected_mode
        and status.st_uid == identity.uid
        and status.st_gid == _new_gid(identity, parent)
        and not _has_acl_on_disk(path)
    )


def leaf_is_fresh_like_on_disk(
    path: str,
    status: os.stat_result,
    source: os.stat_result,
    parent: os.stat_result,
    identity: Identity,
) -> bool:
    """Whether a file or symlink has the metadata a fresh copy of ``source`` would get.

    Times are left out: the copy compares the content (or the symlink's target) and then
    sets the times, which is far cheaper than deleting and copying an unchanged file.
    """
    if stat.S_IFMT(status.st_mode) != stat.S_IFMT(source.st_mode):
        return False
    if (status.st_uid, status.st_gid) != expected_owner(identity, source, parent):
        return False
    if stat.S_ISLNK(status.st_mode):
        return True
    return (
        stat.S_ISREG(status.st_mode)
        and status.st_size == source.st_size
        and stat.S_IMODE(status.st_mode) == stat.S_IMODE(source.st_mode)
        and not _has_acl_on_disk(path)
    )


def same_file_on_disk(source_fd: int, target_fd: int, size: int) -> bool:
    """Whether the open target file holds exactly the ``size`` bytes of the open source
    (read from where each stands): the same bytes, and nothing after them."""
    remaining = size
    while True:
        wanted = min(_COMPARE_BLOCK, remaining)
        left = os.read(source_fd, wanted) if wanted else b""
        if len(left) != wanted:
            return False  # the source is shorter than it was
        remaining -= wanted
        # The last read asks for a byte more: a longer target (one that grew since it was
        # looked at) never passes for the same file.
        if os.read(target_fd, wanted if remaining else wanted + 1) != left:
            return False
        if not remaining:
            return True


def _new_gid(identity: Identity, parent: os.stat_result) -> int:
    # A set-group-ID folder hands its group down to what is created in it.
    return parent.st_gid if parent.st_mode & stat.S_ISGID else identity.gid


def _has_acl_on_disk(path: str) -> bool:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as error:
        # No xattr support means no ACL; any other doubt means "not kept, recreated".
        return error.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP)
    return bool(names) and any(name.startswith(_ACL_PREFIX) for name in names)


def _read_umask_from_os() -> int:
    umask: Optional[int] = None
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError, IndexError):
        umask = None
    if umask is None:
        # Older kernels: reading the umask means setting it, so it is put straight back.
        umask = os.umask(0o022)
        os.umask(umask)
    return umask
