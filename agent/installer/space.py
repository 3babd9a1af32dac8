"""Whether Install's copies fit on the filesystems they go to, checked before anything changes.

Install duplicates the revision onto each destination's filesystem. Once the plan holds,
the revision is walked once more for the sizes its files declare, and the install is
refused when a destination filesystem would be left with less than the margin of
:mod:`agent.filesystem.free_space`: files count their data only (holes stay holes when
copied) in whole blocks, folders a block, every path an inode. Paths the plan keeps cost
nothing. The previous install's other paths are removed before the copy, so when the new
files do not fit at first sight, the space those paths hold is counted as free too (read
from the cleanup file, only then).

A destination is measured on the filesystem of its nearest existing folder; a file system
mounted inside a destination is not told apart.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from agent.filesystem.free_space import SpaceClaim, measure_free_space_on_disk
from agent.filesystem.sparse_copy import STAT_BLOCK_BYTES, allocated_bytes, held_bytes
from agent.forked_share import ForkedShare, abandon_share, collect_share
from agent.installer.cleanup import PathSet, iter_recorded_paths_from_disk
from agent.installer.paths import join
from agent.installer.plan import ResolvedEntry, SourceKind
from agent.installer.result import InstallError
from agent.installer.split import split_top_level, start_install_share

# The worker's answer: its bytes and inodes.
_TOTALS = struct.Struct("<qq")


class _Target:
    """One destination filesystem and what the install claims on it."""

    def __init__(self, claim: SpaceClaim, destination: str) -> None:
        self.claim = claim
        self.destination = destination  # the first entry's, to name it


def check_space_on_disk(
    entries: Sequence[ResolvedEntry], kept: PathSet, cleanup_file: Path
) -> None:
    """Raise InstallError when the copies would not fit on a destination's filesystem."""
    targets: Dict[int, _Target] = {}
    for entry in entries:
        target = _target_on_disk(targets, entry.destination)
        _claim_entry_on_disk(target.claim, entry, kept)
    if all(target.claim.fits() for target in targets.values()):
        return
    _release_previous_install_on_disk(targets, kept, cleanup_file)
    for target in targets.values():
        if not target.claim.fits():
            raise InstallError(
                target.claim.shortfall(f"installing the revision into {target.destination}")
            )


def _target_on_disk(targets: Dict[int, _Target], destination: str) -> _Target:
    existing = destination
    while True:
        try:
            device = os.stat(existing).st_dev
            break
        except (FileNotFoundError, NotADirectoryError):
            existing = os.path.dirname(existing)
    target = targets.get(device)
    if target is None:
        target = _Target(SpaceClaim(measure_free_space_on_disk(existing)), destination)
        targets[device] = target
    return target


def _claim_entry_on_disk(claim: SpaceClaim, entry: ResolvedEntry, kept: PathSet) -> None:
    if entry.kind is SourceKind.FILE:
        if not (len(kept) > 0 and entry.root in kept):
            claim.claim(allocated_bytes(os.lstat(entry.source)))
        return
    with os.scandir(entry.source) as listing:
        top = list(listing)
    # Like the plan and the copy, a large tree is shared with a second process: this is
    # a stat() per file.
    share = split_top_level(top)
    worker: Optional[ForkedShare] = None
    if share is not None:
        worker = start_install_share(
            lambda: _TOTALS.pack(*_sum_on_disk(share, entry.destination, kept, claim.block))
        )
        top = top[0::2]
    try:
        data, inodes = _sum_on_disk(top, entry.destination, kept, claim.block)
        if worker is not None:
            # collect_share reaps the worker whatever it answers.
            finished, worker = worker, None
            more_data, more_inodes = _TOTALS.unpack(collect_share(finished))
            data, inodes = data + more_data, inodes + more_inodes
    finally:
        if worker is not None:
            abandon_share(worker)
    claim.claim_blocks(data, inodes)


def _sum_on_disk(
    children: List[os.DirEntry[str]], destination: str, kept: PathSet, block: int
) -> Tuple[int, int]:
    """(bytes in whole blocks, inodes) that copying ``children`` of a folder installed at
    ``destination``, and all below them, takes."""
    check_kept = len(kept) > 0
    # The hot loop of the check: the totals stay in locals.
    data = inodes = 0
    # One folder's listing per level of depth, as the plan walks.
    stack: List[Tuple[Iterator[os.DirEntry[str]], str]] = [(iter(children), destination)]
    while stack:
        listing, destination = stack[-1]
        for child in listing:
            installed = join(destination, child.name) if check_kept else ""
            if child.is_dir(follow_symlinks=False):
                if not (check_kept and installed in kept):
                    inodes += 1
                    data += block  # a block on most filesystems
                with os.scandir(child.path) as inner:
                    stack.append((iter(list(inner)), installed))
                break
            if check_kept and installed in kept:
                continue
            inodes += 1
            status = child.stat(follow_symlinks=False)
            # allocated_bytes(), rounded up to whole blocks.
            size = min(status.st_size, status.st_blocks * STAT_BLOCK_BYTES)
            data += -(-size // block) * block
        else:
            stack.pop()
    return data, inodes


def _release_previous_install_on_disk(
    targets: Dict[int, _Target], kept: PathSet, cleanup_file: Path
) -> None:
    try:
        size = cleanup_file.stat().st_size
    except FileNotFoundError:
        return
    for path in iter_recorded_paths_from_disk(cleanup_file, size):
        if path in kept:
            continue
        try:
            status = os.lstat(path)
        except OSError:
            continue
        target = targets.get(status.st_dev)
        if target is None:
            continue
        # A file with other hard links keeps its blocks when this name goes.
        if stat.S_ISLNK(status.st_mode) or (status.st_nlink > 1 and stat.S_ISREG(status.st_mode)):
            target.claim.release(0)
        else:
            target.claim.release(held_bytes(status))
