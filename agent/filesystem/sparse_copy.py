"""Copying one file's data without filling its holes.

A sparse file (a 1 GiB file holding 4 KiB of data) costs almost no disk; copying it byte
by byte writes every zero as a real block, so a tiny revision could fill the disk when it
is copied into ``deployment-archive/`` or installed. Only the data ranges the source
reports (``SEEK_DATA``/``SEEK_HOLE``) are copied, at their own offsets, and the copy is
then given the source's size, which leaves the holes as holes.

Most files have no hole: a file with at least as many allocated bytes as its size is
copied in one ``sendfile`` run, without the extra system calls of looking for holes.
"""

from __future__ import annotations

import errno
import os

# sendfile is refused by a few filesystems and file pairs; those get a read/write loop.
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV})
_CHUNK = 1 << 20
# st_blocks counts 512-byte units whatever the filesystem's block size.
STAT_BLOCK_BYTES = 512


def held_bytes(status: os.stat_result) -> int:
    """The bytes the file holds on its filesystem (whole blocks, holes not counted)."""
    return status.st_blocks * STAT_BLOCK_BYTES


def allocated_bytes(status: os.stat_result) -> int:
    """The bytes a copy of the file that keeps its holes needs at most (before rounding
    to the target's blocks); 0 for a symlink stored in its inode."""
    return min(status.st_size, held_bytes(status))


def copy_file_data(source_fd: int, target_fd: int, status: os.stat_result) -> None:
    """Copy the first ``status.st_size`` bytes of ``source_fd`` into the empty file
    ``target_fd``, keeping holes. ``status`` is the source's ``fstat``."""
    size = status.st_size
    if not size:
        return
    # Fewer allocated bytes than its size means a hole (or data stored compressed or
    # inline, which copying range by range also handles).
    if held_bytes(status) >= size:
        _copy_range(source_fd, target_fd, 0, size)
        return
    offset = 0
    while offset < size:
        try:
            start = os.lseek(source_fd, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:
                break  # only a hole is left
            if error.errno != errno.EINVAL:
                raise
            start = offset  # no hole support: everything left is data
            end = size
        else:
            end = min(os.lseek(source_fd, start, os.SEEK_HOLE), size)
        if start >= size:
            break
        _copy_range(source_fd, target_fd, start, end)
        offset = end
    # The size the source has, with a trailing hole where it ends in one.
    os.ftruncate(target_fd, size)


def _copy_range(source_fd: int, target_fd: int, start: int, end: int) -> None:
    """Copy bytes ``[start, end)`` of the source to the same offsets of the target, whose
    position is at the end of the previous range (0 at first)."""
    if start:
        os.lseek(target_fd, start, os.SEEK_SET)
    offset = start
    try:
        while offset < end:
            sent = os.sendfile(target_fd, source_fd, offset, end - offset)
            if sent == 0:
                return  # the source shrank: the copy ends where it does
            offset += sent
        return
    except OSError as error:
        if error.errno not in _NO_SENDFILE or offset != start:
            raise
    while offset < end:
        block = os.pread(source_fd, min(_CHUNK, end - offset), offset)
        if not block:
            return
        view = memoryview(block)
        while view:
            view = view[os.write(target_fd, view) :]
        offset += len(block)
