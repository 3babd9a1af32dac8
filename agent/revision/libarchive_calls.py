"""The libarchive calls the unpacker makes, declared to return their status untouched.

libarchive-c wraps each function with a checker that raises on errors but only logs
``ARCHIVE_WARN`` and carries on; libarchive reports a failed ``write()`` (a full disk)
as a warning, so that checker would let a truncated file through. The calls on the
unpacker's path are therefore declared here again, as new ctypes objects on the library
libarchive-c loaded (its own declarations stay untouched), and their status is checked
by the caller. The setup calls that cannot warn are still used from ``libarchive.ffi``.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable

from libarchive import ffi

# Status codes from archive.h.
ARCHIVE_EOF = 1
ARCHIVE_OK = 0
ARCHIVE_WARN = -20

# Format codes from archive.h: the family is the high byte pair.
FORMAT_FAMILY_MASK = 0xFF0000
FORMAT_TAR = 0x30000
FORMAT_ZIP = 0x50000

_archive = ctypes.c_void_p
_entry = ctypes.c_void_p


def _declare(name: str, result: Any, *arguments: Any) -> Callable[..., Any]:
    prototype = ctypes.CFUNCTYPE(result, *arguments)
    function: Callable[..., Any] = prototype((name, ffi.libarchive))
    return function


read_open_fd = _declare(
    "archive_read_open_fd", ctypes.c_int, _archive, ctypes.c_int, ctypes.c_size_t
)
read_next_header2 = _declare("archive_read_next_header2", ctypes.c_int, _archive, _entry)
read_data_block = _declare(
    "archive_read_data_block",
    ctypes.c_int,
    _archive,
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(ctypes.c_size_t),
    ctypes.POINTER(ctypes.c_int64),
)
read_extract2 = _declare("archive_read_extract2", ctypes.c_int, _archive, _entry, _archive)
write_header = _declare("archive_write_header", ctypes.c_int, _archive, _entry)
write_data_block = _declare(
    "archive_write_data_block",
    ctypes.c_ssize_t,
    _archive,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int64,
)
write_finish_entry = _declare("archive_write_finish_entry", ctypes.c_int, _archive)
write_close = _declare("archive_write_close", ctypes.c_int, _archive)
write_disk_set_standard_lookup = _declare(
    "archive_write_disk_set_standard_lookup", ctypes.c_int, _archive
)
archive_format = _declare("archive_format", ctypes.c_int, _archive)
# Bytes through filter ``n`` so far (0: the archive's own data, after decompression).
filter_bytes = _declare("archive_filter_bytes", ctypes.c_int64, _archive, ctypes.c_int)
entry_sparse_reset = _declare("archive_entry_sparse_reset", ctypes.c_int, _entry)
entry_sparse_next = _declare(
    "archive_entry_sparse_next",
    ctypes.c_int,
    _entry,
    ctypes.POINTER(ctypes.c_int64),
    ctypes.POINTER(ctypes.c_int64),
)
entry_copy_hardlink = _declare("archive_entry_copy_hardlink", None, _entry, ctypes.c_char_p)
entry_clone = _declare("archive_entry_clone", _entry, _entry)


def error_message(archive_p: int) -> str:
    """libarchive's last error on ``archive_p``, on one line."""
    raw = ffi.error_string(archive_p)
    text = raw.decode("utf-8", "backslashreplace") if raw else ""
    return " ".join(text.split()) or "unknown libarchive error"


def error_number(archive_p: int) -> int:
    return int(ffi.errno(archive_p))
