"""What a revision may contain, and the error raised when it holds something else.

Bundles come from outside the host, so every member is judged before anything is written
for it. The checks here are pure: they look at a member's name, type, mode and size as
the archive (or the source folder) declares them. The unpacker and the folder copier both
apply them, so whatever is refused in a tgz is refused in a folder revision too.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from typing import Optional, Tuple

from agent.filesystem.free_space import SpaceClaim
from agent.revision.errors import BundleError


@dataclass(frozen=True)
class UnpackPolicy:
    """The opt-in hardening keys of the agent configuration that shape unpacking.

    Members that would land outside the archive folder, device files, FIFOs and sockets
    are refused whatever the policy says.
    """

    # reject_symlinks_in_bundle
    reject_symlinks: bool = False
    # The inverse of ignore_ownership_in_bundle: archive owners are applied only if asked.
    apply_ownership: bool = False
    # reject_unsafe_permissions_in_bundle: setuid, setgid or world-writable members.
    reject_unsafe_permissions: bool = False
    # archive_max_extraction_size, in bytes; None means no limit.
    max_extraction_size: Optional[int] = None


# Immutable, so it can serve as the default argument of every entry point.
DEFAULT_POLICY = UnpackPolicy()

# How repr() shows a byte that surrogateescape kept from an undecodable name.
_ESCAPED_BYTE = re.compile(r"\\udc([89a-f][0-9a-f])")

_SPECIAL_FILE_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def show_name(name: bytes) -> str:
    """A member name quoted for a one-line message: control characters and bytes that
    are not UTF-8 are shown escaped (``\\n``, ``\\xff``)."""
    shown = repr(name.decode("utf-8", "surrogateescape"))
    return _ESCAPED_BYTE.sub(r"\\x\1", shown)


def member_parts(name: Optional[bytes], where: str) -> Tuple[bytes, ...]:
    """The components of a member name relative to the archive root.

    Empty and ``.`` components are dropped, so ``./a//b/`` is ``(a, b)`` and ``./`` is
    the root itself (an empty tuple). Absolute names and ``..`` components are refused:
    such a member would land outside the archive folder.
    """
    if not name:
        raise BundleError(f"{where}: a member has an empty or unreadable name")
    if name.startswith(b"/"):
        raise BundleError(f"{where}: member {show_name(name)} has an absolute path")
    parts = tuple(part for part in name.split(b"/") if part not in (b"", b"."))
    if b".." in parts:
        raise BundleError(
            f"{where}: member {show_name(name)} has a '..' component and would land outside"
            " the archive folder"
        )
    return parts


def relative_member_name(name: Optional[bytes], where: str) -> bytes:
    """A member name as a clean path relative to the archive root (``b""`` for the root).

    The same rules as :func:`member_parts`; most names are already clean, and those take
    a shortcut that builds nothing.
    """
    # "tar -C folder ." names every member "./...": one leading "./" is dropped first.
    clean = name[2:] if name and name.startswith(b"./") else name
    if clean and not clean.startswith((b"/", b".")) and b"/." not in clean and b"//" not in clean:
        # No empty, "." or ".." component can hide in such a name; only a trailing "/".
        return clean.rstrip(b"/")
    return b"/".join(member_parts(name, where))


def check_member_kind(file_type: int, name: bytes, where: str, policy: UnpackPolicy) -> None:
    """Refuse anything but regular files, folders and (unless the policy says no) symlinks.

    ``file_type`` is the ``S_IFMT`` part of a mode (libarchive uses the same values).
    """
    if file_type in (stat.S_IFREG, stat.S_IFDIR):
        return
    if file_type == stat.S_IFLNK:
        if policy.reject_symlinks:
            raise BundleError(
                f"{where}: member {show_name(name)} is a symbolic link, and"
                " reject_symlinks_in_bundle is set"
            )
        return
    kind = _SPECIAL_FILE_KINDS.get(file_type, f"of unknown type {file_type:o}")
    raise BundleError(
        f"{where}: member {show_name(name)} is {kind}; a revision may hold only files,"
        " folders and symbolic links"
    )


def check_member_permissions(
    file_type: int, permissions: int, name: bytes, where: str, policy: UnpackPolicy
) -> None:
    """Refuse setuid, setgid and world-writable members when the policy asks for it."""
    # A symlink's own mode means nothing on Linux: it is always 0777.
    if not policy.reject_unsafe_permissions or file_type == stat.S_IFLNK:
        return
    unsafe = []
    if permissions & stat.S_ISUID:
        unsafe.append("setuid")
    if permissions & stat.S_ISGID:
        unsafe.append("setgid")
    if permissions & stat.S_IWOTH:
        unsafe.append("world-writable")
    if unsafe:
        raise BundleError(
            f"{where}: member {show_name(name)} has mode {permissions & 0o7777:04o}"
            f" ({', '.join(unsafe)}), and reject_unsafe_permissions_in_bundle is set"
        )


class SizeBudget:
    """The running total of bytes a revision puts on disk, against archive_max_extraction_size
    and against the free space of the filesystem it goes to.

    Declared sizes are counted before a member is written, so an oversized bundle is
    refused early; bytes actually written are counted too, because a zip member's
    declared size is only a claim. ``room`` counts what the members take on disk (whole
    blocks, only the data of a sparse file, one inode each).
    """

    def __init__(
        self,
        limit: Optional[int],
        where: str,
        room: Optional[SpaceClaim] = None,
        target: str = "",
    ) -> None:
        self.limit = limit
        self.where = where
        self.room = room
        self.target = target
        self.declared = 0
        self.written = 0

    def declare(self, size: int, name: bytes, *, stored: Optional[int] = None) -> None:
        """A regular member of ``size`` bytes, ``stored`` of which are data (sparse)."""
        if self.limit is not None:
            self.declared += size
            if self.declared > self.limit:
                raise self._exceeded(name)
        room = self.room
        if room is not None and not room.claim(size if stored is None else stored):
            raise self.no_room()

    def take_room(self, stored: int, inodes: int = 1) -> None:
        """A member that takes ``stored`` bytes of data and ``inodes`` inodes on disk."""
        if self.room is not None and not self.room.claim(stored, inodes):
            raise self.no_room()

    def write(self, size: int, name: bytes) -> None:
        if self.limit is not None:
            self.written += size
            if self.written > self.limit:
                raise self._exceeded(name)
        self.take_room(size, 0)

    def no_room(self) -> BundleError:
        assert self.room is not None
        return BundleError(
            self.room.shortfall(f"{self.where}, unpacked into {self.target},", so_far=True)
        )

    def _exceeded(self, name: bytes) -> BundleError:
        return BundleError(
            f"{self.where}: the revision is larger than archive_max_extraction_size"
            f" ({self.limit} bytes) at member {show_name(name)}"
        )
