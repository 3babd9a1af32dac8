"""The sizes a zip bundle's central directory declares, read before anything is unpacked.

A zip lists every member, with its unpacked size, at its end: summing them tells whether
the bundle can fit before a byte is written (a zip bomb is refused here). The directory
is read block by block and nothing is kept per member, so a zip of a million entries
costs no more memory than one of ten. Anything malformed ends the reading quietly: the
unpacker is the judge of a corrupt archive, and it bounds what it writes by itself.
"""

from __future__ import annotations

import os
import struct
from typing import Iterator, Optional, Tuple

_END = struct.Struct("<IHHHHIIH")  # end of central directory record
_END_SIGNATURE = 0x06054B50
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_ZIP64_LOCATOR_SIGNATURE = 0x07064B50
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")
_ZIP64_END_SIGNATURE = 0x06064B50
_ENTRY = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory file header
_ENTRY_SIGNATURE = 0x02014B50
_ZIP64_EXTRA = 0x0001
_EXTRA_HEADER = struct.Struct("<HH")
_UNSET32 = 0xFFFFFFFF
_UNSET16 = 0xFFFF
# The end record is 22 bytes, followed by a comment of at most 65535.
_TAIL = _END.size + 0xFFFF
_BLOCK = 1 << 20


def iter_zip_member_sizes(fd: int) -> Iterator[Tuple[int, bool]]:
    """(unpacked size, is a folder) of each member the open zip file ``fd`` lists."""
    located = _locate_central_directory(fd)
    if located is None:
        return
    start, size, count = located
    buffer = b""
    at = 0  # where the next entry starts in buffer
    position, end = start, start + size
    seen = 0
    while seen < count:
        available = len(buffer) - at
        length = _ENTRY.size
        if available >= _ENTRY.size:
            fields = _ENTRY.unpack_from(buffer, at)
            if fields[0] != _ENTRY_SIGNATURE:
                return
            length += fields[10] + fields[11] + fields[12]
        if available < length:
            if position >= end:
                return
            block = os.pread(fd, min(_BLOCK, end - position), position)
            if not block:
                return
            position += len(block)
            buffer = buffer[at:] + block
            at = 0
            continue
        name_end = at + _ENTRY.size + fields[10]
        unpacked = fields[9]
        if unpacked == _UNSET32:
            found = _zip64_size(buffer[name_end : name_end + fields[11]])
            if found is None:
                return
            unpacked = found
        yield unpacked, buffer[name_end - 1 : name_end] == b"/"
        at += length
        seen += 1


def _zip64_size(extra: bytes) -> Optional[int]:
    """The unpacked size from a zip64 extra field (its first value when present)."""
    offset = 0
    while offset + _EXTRA_HEADER.size <= len(extra):
        kind, length = _EXTRA_HEADER.unpack_from(extra, offset)
        offset += _EXTRA_HEADER.size
        if kind == _ZIP64_EXTRA and length >= 8:
            value: int = struct.unpack_from("<Q", extra, offset)[0]
            return value
        offset += length
    return None


def _locate_central_directory(fd: int) -> Optional[Tuple[int, int, int]]:
    """(start, size, member count) of the central directory, or None."""
    file_size = os.fstat(fd).st_size
    tail_start = max(0, file_size - _TAIL)
    tail = os.pread(fd, file_size - tail_start, tail_start)
    at = tail.rfind(struct.pack("<I", _END_SIGNATURE))
    if at < 0 or at + _END.size > len(tail):
        return None
    end_position = tail_start + at
    (_, _, _, _, count, size, offset, _) = _END.unpack_from(tail, at)
    if count != _UNSET16 and size != _UNSET32 and offset != _UNSET32:
        # Measured back from the end record, so that data prepended to the zip is no harm.
        return end_position - size, size, count
    locator_position = end_position - _ZIP64_LOCATOR.size
    if locator_position < 0:
        return None
    locator = os.pread(fd, _ZIP64_LOCATOR.size, locator_position)
    if len(locator) < _ZIP64_LOCATOR.size:
        return None
    signature, _, record_offset, _ = _ZIP64_LOCATOR.unpack(locator)
    if signature != _ZIP64_LOCATOR_SIGNATURE:
        return None
    record = os.pread(fd, _ZIP64_END.size, record_offset)
    if len(record) < _ZIP64_END.size:
        return None
    fields = _ZIP64_END.unpack(record)
    if fields[0] != _ZIP64_END_SIGNATURE:
        return None
    count64, size64 = fields[7], fields[8]
    return record_offset - size64, size64, count64
