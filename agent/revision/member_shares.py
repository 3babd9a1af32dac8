"""Which process writes which member when several unpack one archive together.

An archive of many small files is unpacked fastest by several processes at once (see
:mod:`agent.revision.unpack`): each reads the whole archive and judges every member, as
one process alone would, and writes only its share. What each writes must not depend on
when the others write theirs, so a member goes to a share only when it is independent of
every other member: a regular file (not a hard link) whose path no earlier member used
and under no earlier member that was not a folder. Such a file goes to the share its
folder's path hashes to, so that every process, reading the same headers, agrees without
talking, and no two processes create files in one folder at once (the kernel would have
them take turns on it).

Everything else is written by the first process (share 0), in the archive's order:

- folders, written as they come (another process may have made one already, for a file
  of its share); the first process sets their modes and times again once every share is
  written, as one process alone sets them at its end. A folder that its owner could not
  write into (a mode without ``rwx`` for its owner) is ordered, and so is every member
  after it, since the mode is set at once on a folder that already exists;
- the members that must be written in order ("ordered": symbolic and hard links, other
  kinds, a path met before, a file where a folder was or the reverse): before writing
  one, the first process waits until every other process has written all the members
  before it. After a path met before or a file where a folder was (or the reverse),
  which no tool makes but a crafted archive may hold, every member is ordered: what such
  a member replaces on disk is then exactly what one process alone would replace.
"""

from __future__ import annotations

import stat
import zlib
from typing import Set

# What place() answers besides a share's number.
FOLDER = -1
ORDERED = -2


class MemberPlaces:
    """The paths met so far, and where each new member goes among ``shares`` processes."""

    def __init__(self, shares: int) -> None:
        self.shares = shares
        self._files: Set[bytes] = set()  # members that are not folders
        self._folders: Set[bytes] = {b""}  # folder members and every member's parents
        self.all_ordered = False  # a member replaced or reused another's path

    def place(self, relative: bytes, file_type: int, ordered: bool) -> int:
        """Where the member ``relative`` goes: a share's number, FOLDER or ORDERED.
        ``ordered``: the caller knows the member must be (a hard link, a folder its owner
        could not write into, a member whose size is known only once written)."""
        if self.all_ordered:
            return ORDERED
        if file_type == stat.S_IFDIR:
            if ordered or relative in self._files or self._note_parents(relative):
                self.all_ordered = True
                return ORDERED
            self._folders.add(relative)
            return FOLDER
        if relative in self._files or relative in self._folders or self._note_parents(relative):
            self.all_ordered = True
            return ORDERED
        self._files.add(relative)
        if ordered or file_type != stat.S_IFREG:
            return ORDERED
        return zlib.crc32(relative.rpartition(b"/")[0]) % self.shares

    def _note_parents(self, relative: bytes) -> bool:
        """Record the folders above ``relative``; True when one of them was met as a
        member that is not a folder."""
        parent = relative.rpartition(b"/")[0]
        folders, files = self._folders, self._files
        # Folders already known have had their own parents recorded: stop at the first.
        while parent not in folders:
            if parent in files:
                return True
            folders.add(parent)
            parent = parent.rpartition(b"/")[0]
        return False
