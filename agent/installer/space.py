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
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from agent.filesystem.free_space import SpaceClaim, measure_free_space_on_disk
from agent.filesystem.sparse_copy import allocated_bytes
from agent.installer.cleanup import PathSet, iter_recorded_paths_from_disk
from agent.installer.paths import join
from agent.installer.plan import ResolvedEntry, SourceKind
from agent.installer.result import InstallError

# st_blocks counts 512-byte units.
_STAT_BLOCK = 512


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
    check_kept = len(kept) > 0
    if entry.kind is SourceKind.FILE:
        if not (check_kept and entry.root in kept):
            _claim_leaf(claim, os.lstat(entry.source))
        return
    stack: List[Tuple[str, str]] = [(entry.source, entry.destination)]
    while stack:
        source, destination = stack.pop()
        with os.scandir(source) as listing:
            for child in listing:
                installed = join(destination, child.name) if check_kept else ""
                if child.is_dir(follow_symlinks=False):
                    stack.append((child.path, installed))
                    if not (check_kept and installed in kept):
                        claim.claim(1)  # a block on most filesystems
                elif not (check_kept and installed in kept):
                    _claim_leaf(claim, child.stat(follow_symlinks=False))


def _claim_leaf(claim: SpaceClaim, status: os.stat_result) -> None:
    claim.claim(allocated_bytes(status) if stat.S_ISREG(status.st_mode) else 0)


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
            target.claim.release(status.st_blocks * _STAT_BLOCK)
