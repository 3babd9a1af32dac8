"""How much a revision may write to a filesystem, and the running count of what it claims.

A small bundle can expand to far more than it weighs (a zip of zeros, a sparse tar), and
the Install step duplicates the revision onto the destination's filesystem. Whatever
``archive_max_extraction_size`` says, nothing is written that would leave the filesystem
with less than a margin free: the smaller of 64 MiB and 5% of its size. 64 MiB is room
enough for logs and hooks on any real disk; the percentage keeps small filesystems (a
container's, a tmpfs) usable. Space counts whole blocks of the filesystem, and inodes
are counted too where the filesystem has a fixed number of them.

The sizes come from what the revision declares (an archive's headers, a folder's
``stat``), before its data is written; the callers raise their own domain's error with
the message built here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

MARGIN_BYTES = 64 * 1024 * 1024
MARGIN_FRACTION = 20  # 1/20th: 5%
MARGIN_INODES = 1024


@dataclass(frozen=True)
class FreeSpace:
    """One filesystem's free space as measured at the start of a write, margin taken off."""

    mount: str  # where the filesystem is mounted, to name it in messages
    block_size: int
    free_bytes: int
    margin_bytes: int
    # None when the filesystem allocates inodes on demand (f_files is 0: btrfs, ...).
    free_inodes: Optional[int]
    margin_inodes: int
    # What the filesystem's files hold in all: no folder on it can hold more.
    used_bytes: int

    @property
    def usable_bytes(self) -> int:
        return max(0, self.free_bytes - self.margin_bytes)

    @property
    def usable_inodes(self) -> Optional[int]:
        if self.free_inodes is None:
            return None
        return max(0, self.free_inodes - self.margin_inodes)

    def describe(self) -> str:
        return (
            f"the filesystem mounted on {self.mount} has {show_size(self.free_bytes)} free"
            f" and keeps {show_size(self.margin_bytes)} of it free"
        )


def measure_free_space_on_disk(folder: Union[str, Path]) -> FreeSpace:
    """The free space of the filesystem holding ``folder`` (which must exist)."""
    info = os.statvfs(folder)
    block = info.f_frsize or info.f_bsize
    size = info.f_blocks * block
    free_inodes: Optional[int] = None
    margin_inodes = 0
    if info.f_files:
        free_inodes = info.f_favail
        margin_inodes = min(MARGIN_INODES, info.f_files // MARGIN_FRACTION)
    return FreeSpace(
        mount=_mount_point_on_disk(os.path.realpath(folder)),
        block_size=block,
        free_bytes=info.f_bavail * block,
        margin_bytes=min(MARGIN_BYTES, size // MARGIN_FRACTION),
        free_inodes=free_inodes,
        margin_inodes=margin_inodes,
        used_bytes=(info.f_blocks - info.f_bfree) * block,
    )


class SpaceClaim:
    """The running total of blocks and inodes a write claims on one filesystem."""

    __slots__ = ("block", "bytes", "inodes", "space", "usable_bytes", "usable_inodes")

    def __init__(self, space: FreeSpace) -> None:
        self.space = space
        self.bytes = 0
        self.inodes = 0
        # Copied out of ``space``: claim() runs once per file of a revision.
        self.block = space.block_size
        self.usable_bytes = space.usable_bytes
        usable_inodes = space.usable_inodes
        self.usable_inodes = usable_inodes if usable_inodes is not None else 1 << 62

    def claim(self, data_bytes: int, inodes: int = 1) -> bool:
        """Add a file (or folder) of ``data_bytes``; False once the total no longer fits.

        Called for every member of a revision: the arithmetic is done here, in one call."""
        block = self.block
        self.bytes += -(-data_bytes // block) * block
        self.inodes += inodes
        return self.bytes <= self.usable_bytes and self.inodes <= self.usable_inodes

    def claim_blocks(self, allocated: int, inodes: int) -> bool:
        """Add files whose sizes the caller already rounded to whole blocks."""
        self.bytes += allocated
        self.inodes += inodes
        return self.fits()

    def release(self, data_bytes: int, inodes: int = 1) -> None:
        """Count as free what something that will be removed first holds."""
        self.bytes -= data_bytes
        self.inodes -= inodes

    def fits(self) -> bool:
        return self.bytes <= self.usable_bytes and self.inodes <= self.usable_inodes

    def shortfall(self, what: str, *, so_far: bool = False) -> str:
        """One line: ``what`` needs this much, and why it does not fit."""
        needs = "needs at least" if so_far else "needs"
        if self.inodes > self.usable_inodes:
            return (
                f"{what} {needs} {self.inodes} files and folders, but the filesystem mounted"
                f" on {self.space.mount} has {self.space.free_inodes} free inodes and keeps"
                f" {self.space.margin_inodes} of them free"
            )
        return f"{what} {needs} {show_size(self.bytes)}, but {self.space.describe()}"


def show_size(size: int) -> str:
    """A byte count for a message: ``1.0 GiB (1073741824 bytes)``."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "bytes":
                return f"{size} bytes"
            return f"{value:.1f} {unit} ({size} bytes)"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _mount_point_on_disk(path: str) -> str:
    """The mount point of the filesystem holding ``path`` (a resolved path)."""
    current = path
    while current != "/" and not os.path.ismount(current):
        current = os.path.dirname(current)
    return current
