"""Building ``deployment-archive/`` so that it either appears whole or not at all.

A revision is written into a private sibling folder and renamed into place only once
everything succeeded; on any failure that folder is removed, so a bad bundle, a refused
member or a full disk leaves nothing behind. The rename is also how a bundle's single
top-level folder becomes the revision root, in O(1).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import structlog

from agent.filesystem.free_space import SpaceClaim, measure_free_space_on_disk
from agent.revision.errors import BundleError

log = structlog.get_logger(__name__)

# The mode a fresh revision root gets: hooks that run as another user must reach it.
_ARCHIVE_ROOT_MODE = 0o755

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error_number: int) -> bool:
    return error_number in _DISK_FULL_ERRNOS


def describe_os_error(error: OSError) -> str:
    """The reason part of a message about a failed system call, on one line."""
    if error.errno is not None and is_disk_full(error.errno):
        return "the disk is full (no space left on device)"
    return (error.strerror or str(error)).replace("\n", " ")


def check_bundle_fits_on_disk(size: int, bundle_path: Path, what: str) -> None:
    """Refuse to store a bundle of ``size`` bytes that would leave its filesystem with less
    than the free-space margin (see :mod:`agent.filesystem.free_space`)."""
    room = SpaceClaim(measure_free_space_on_disk(bundle_path.parent))
    if not room.claim(size):
        raise BundleError(room.shortfall(f"{what}, stored as {bundle_path},"))


@contextlib.contextmanager
def bundle_file_staged_on_disk(bundle_path: Path, what: str) -> Iterator[Path]:
    """A partial file beside ``bundle_path``, renamed over it when the block succeeds.

    On any failure the partial file is removed; a failed system call becomes a
    BundleError saying it could not put ``what`` at ``bundle_path``.
    """
    partial = bundle_path.with_name(f".{bundle_path.name}.partial-{secrets.token_hex(6)}")
    try:
        yield partial
        os.replace(partial, bundle_path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        if isinstance(error, OSError):
            raise BundleError(
                f"cannot put {what} at {bundle_path}: {describe_os_error(error)}"
            ) from None
        raise


def build_archive_dir_on_disk(
    archive_dir: Path,
    fill: Callable[[Path], None],
    *,
    appspec_names: Sequence[str] = (),
) -> None:
    """Remove a stale ``archive_dir``, let ``fill`` write the revision into a fresh private
    folder beside it, then rename that folder (or its single top-level folder holding one
    of ``appspec_names``) to ``archive_dir``.

    ``fill`` gets the resolved path of the empty folder; any exception it raises removes
    the folder and propagates (an ``OSError`` becomes a :class:`BundleError`).
    """
    parent = Path(os.path.realpath(archive_dir.parent))
    if not parent.is_dir():
        raise BundleError(f"cannot unpack the revision: the folder {archive_dir.parent} is missing")
    target = parent / archive_dir.name
    try:
        # The AWS agent also starts from an empty deployment-archive.
        remove_tree_on_disk(target)
        partial = Path(tempfile.mkdtemp(prefix=f".{archive_dir.name}.partial-", dir=parent))
    except OSError as error:
        raise BundleError(
            f"cannot prepare {archive_dir} for the revision: {describe_os_error(error)}"
        ) from None
    try:
        os.chmod(partial, _ARCHIVE_ROOT_MODE)
        fill(partial)
        root = _revision_root_on_disk(partial, appspec_names)
        os.rename(root, target)
    except BaseException as error:
        _discard_on_disk(partial)
        if isinstance(error, OSError):
            raise BundleError(
                f"cannot put the revision in {archive_dir}: {describe_os_error(error)}"
            ) from None
        raise
    if root != partial:
        log.info("the bundle's only top-level folder is the revision root", folder=root.name)
        # Empty now; the revision is already in place whatever happens to it.
        _discard_on_disk(partial)


def _revision_root_on_disk(folder: Path, appspec_names: Sequence[str]) -> Path:
    """``folder``, or its only entry when that is a folder holding the appspec file."""
    if not appspec_names:
        return folder
    with os.scandir(folder) as listing:
        entries = [entry.name for entry in listing]
    if len(entries) != 1 or entries[0] in appspec_names:
        return folder
    top = folder / entries[0]
    if not stat.S_ISDIR(os.lstat(top).st_mode):
        return folder
    for name in appspec_names:
        if _is_safe_relative(name) and _is_regular_file_on_disk(top / name):
            return top
    return folder


def _is_safe_relative(name: str) -> bool:
    return bool(name) and not name.startswith("/") and ".." not in name.split("/")


def _is_regular_file_on_disk(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _discard_on_disk(folder: Path) -> None:
    try:
        remove_tree_on_disk(folder)
    except OSError as error:
        # The original failure is what the operator must see; this one is only logged.
        log.warning("cannot remove partial revision folder", folder=str(folder), error=str(error))


def remove_tree_on_disk(path: Path) -> None:
    """Remove ``path`` whatever it is (a symlink is removed, never followed); no-op if absent."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        os.unlink(path)
        return
    try:
        shutil.rmtree(path)
    except OSError:
        # Folders unpacked with modes such as 0500 cannot be emptied until they are
        # writable again (root does not care, other users do).
        _make_folders_writable_on_disk(path)
        shutil.rmtree(path)


def _make_folders_writable_on_disk(root: Path) -> None:
    os.chmod(root, stat.S_IRWXU)
    for folder, subfolders, _files in os.walk(root):
        for name in subfolders:
            child = os.path.join(folder, name)
            if not os.path.islink(child):
                os.chmod(child, stat.S_IRWXU)
