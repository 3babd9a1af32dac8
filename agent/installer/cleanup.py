"""The group's cleanup file: reading it, replaying it, and writing the next one.

The file lists, one per line, every path the group's last install created, in the order it
created them; ``semanage\\0<path>`` lines are SELinux file-context records. A line without
its newline is the trace of an interrupted write and is ignored. The file can be as long as
the revision is large, so nothing here loads it whole: the paths it lists become 64-bit
keyed hashes in a sorted array, and the replay reads it backwards block by block. Paths the
next install keeps as they are stay listed, so that the file always covers every path of
the group that exists.
"""

from __future__ import annotations

import bisect
import errno
import functools
import hashlib
import heapq
import os
import stat
import subprocess
import sys
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Set, Tuple, Type

import structlog

from agent.installer.folders import FolderWalker, SymlinkNotFollowed
from agent.installer.result import InstallError

log = structlog.get_logger(__name__)

CONTEXT_RECORD_PREFIX = b"semanage\0"
# What os.fsencode() encodes paths with (read once: it is used for every path).
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_BLOCK_SIZE = 1 << 16
# Unlinking is kernel work that two threads do in half the time; the paths are taken a
# window at a time so that memory stays bounded.
_WORKERS = 2
_WINDOW = 2048
_CHUNK = 256
# Hashes sorted at once before being merged; bounds the temporary Python ints in memory.
_SORT_CHUNK = 1 << 14
# rmdir of a folder that still holds something: left in place, as the AWS agent intends.
_FOLDER_KEPT_ERRNOS = frozenset({errno.ENOTEMPTY, errno.EEXIST, errno.EBUSY})


@dataclass(frozen=True)
class PathSet:
    """A set of paths held as a sorted array of 64-bit hashes (8 bytes a path).

    The hash is blake2b keyed with a random per-install key, so two paths collide with a
    probability of about 2**-64 per pair and nobody can craft a collision in advance.
    """

    key: bytes
    hashes: array[int]

    # Asked once or twice for every path of a revision: each is a single call.

    def __contains__(self, path: str) -> bool:
        hashes = self.hashes
        if not hashes:
            return False
        value = _path_hash(self.key, path.encode(_FS_ENCODING, _FS_ERRORS))
        index = bisect.bisect_left(hashes, value)
        return index < len(hashes) and hashes[index] == value

    def contains_encoded(self, path: bytes) -> bool:
        return bool(self.hashes) and self.contains_hash(_path_hash(self.key, path))

    def contains_hash(self, value: int) -> bool:
        """Membership of a value from :meth:`hash_of` (to hash a path only once)."""
        hashes = self.hashes
        index = bisect.bisect_left(hashes, value)
        return index < len(hashes) and hashes[index] == value

    def hash_of(self, path: str) -> int:
        return _path_hash(self.key, path.encode(_FS_ENCODING, _FS_ERRORS))

    def __len__(self) -> int:
        return len(self.hashes)


class PathSetBuilder:
    """Collects paths into a :class:`PathSet`, sorting chunk by chunk and merging."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._chunks: List[array[int]] = []
        self._pending: array[int] = array("q")

    def add(self, path: str) -> None:
        self.add_encoded(os.fsencode(path))

    def add_encoded(self, path: bytes) -> None:
        self.add_hash(_path_hash(self.key, path))

    def add_hash(self, value: int) -> None:
        """Add a value from :meth:`PathSet.hash_of` of a set with the same key."""
        self._pending.append(value)
        if len(self._pending) >= _SORT_CHUNK:
            self._chunks.append(array("q", sorted(self._pending)))
            self._pending = array("q")

    def add_sorted_hashes(self, packed: bytes) -> None:
        """Add the packed, sorted hashes of another builder's set (same key)."""
        values: array[int] = array("q")
        values.frombytes(packed)
        if values:
            self._chunks.append(values)

    def build(self) -> PathSet:
        chunks = self._chunks
        if self._pending:
            chunks.append(array("q", sorted(self._pending)))
        self._chunks, self._pending = [], array("q")
        if not chunks:
            return PathSet(self.key, array("q"))
        if len(chunks) == 1:
            return PathSet(self.key, chunks[0])
        merged: array[int] = array("q")
        merged.extend(heapq.merge(*chunks))
        return PathSet(self.key, merged)


@dataclass(frozen=True)
class PreviousInstall:
    """What the group's cleanup file says about its previous install."""

    free: PathSet  # the paths it created: removed (or kept) before the copy, never conflicts
    has_contexts: bool  # it set SELinux contexts (then nothing of it is kept as is)


def read_previous_install_from_disk(cleanup_file: Path, key: bytes) -> PreviousInstall:
    """Hash every complete path line of ``cleanup_file`` (none when it does not exist)."""
    builder = PathSetBuilder(key)
    has_contexts = False
    try:
        handle = cleanup_file.open("rb")
    except FileNotFoundError:
        return PreviousInstall(builder.build(), False)
    with handle:
        for line in handle:
            if not line.endswith(b"\n"):
                continue
            if line.startswith(b"/"):
                builder.add_encoded(line[:-1])
            elif line.startswith(CONTEXT_RECORD_PREFIX):
                has_contexts = True
    return PreviousInstall(builder.build(), has_contexts)


def replay_cleanup_file_on_disk(
    cleanup_file: Path,
    semanage: Optional[str],
    kept: PathSet,
    previous_paths: PathSet,
    trusted_uid: int,
) -> int:
    """Undo the previous install of the group, newest path first, except what is ``kept``.

    Files and symlinks are removed, folders only when empty, paths already gone are
    skipped, and SELinux records are dropped with ``semanage fcontext -d`` when semanage
    is installed. Paths are reached through :class:`FolderWalker` (``previous_paths`` are
    the folders the agent made, ``trusted_uid`` whose symlinks may be followed below
    them): what lies behind a symlink planted where the previous install made a folder is
    left alone, and the link itself is removed as the line naming that folder comes. The ``kept`` paths (already what the new revision installs) stay, and the
    cleanup file is atomically replaced by the list of them, in their original order, for
    the copy to append to; with nothing kept it is deleted. Returns how many paths were
    removed.
    """
    if not cleanup_file.exists():
        return 0
    removed = 0
    if kept.hashes == previous_paths.hashes and _ends_with_newline_on_disk(cleanup_file):
        # Everything the previous install created stays as it is (a redeployment of the
        # same tree): nothing to remove, and the file already lists exactly those paths.
        return removed
    window: List[bytes] = []
    removal = _Removal(previous_paths, trusted_uid)
    with (
        ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="install-cleanup") as pool,
        removal.walker() as folders,
    ):
        for line in iter_complete_lines_reversed_from_disk(cleanup_file):
            if line.startswith(CONTEXT_RECORD_PREFIX):
                _remove_file_context_on_disk(line[len(CONTEXT_RECORD_PREFIX) :], semanage)
            elif line.startswith(b"/"):
                if not kept.contains_encoded(line):
                    window.append(line)
                    if len(window) >= _WINDOW:
                        removed += _remove_window_on_disk(pool, removal, folders, window)
                        window = []
            elif line:
                # A relative path would be resolved against our working folder: never.
                log.warning("cleanup line ignored: not an absolute path", line=os.fsdecode(line))
        removed += _remove_window_on_disk(pool, removal, folders, window)
    if len(kept):
        _write_kept_paths_on_disk(cleanup_file, kept)
    else:
        cleanup_file.unlink()
    return removed


def _ends_with_newline_on_disk(path: Path) -> bool:
    """False when the last write was interrupted: the next append must not extend it."""
    with path.open("rb") as file:
        if file.seek(0, os.SEEK_END) == 0:
            return True
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def _write_kept_paths_on_disk(cleanup_file: Path, kept: PathSet) -> None:
    # Written beside and renamed over: at every moment one cleanup file covers every path
    # of the group that exists.
    partial = cleanup_file.with_name(cleanup_file.name + ".partial")
    with cleanup_file.open("rb") as source, partial.open("wb") as target:
        for line in source:
            if line.endswith(b"\n") and line.startswith(b"/") and kept.contains_encoded(line[:-1]):
                target.write(line)
    os.replace(partial, cleanup_file)


def iter_complete_lines_reversed_from_disk(path: Path) -> Iterator[bytes]:
    """The newline-terminated lines of ``path``, last first, without their newline.

    Reads blocks from the end so that memory stays bounded by the block and line sizes.
    """
    with path.open("rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        buffered = b""
        # The text after the last newline (empty, or an unfinished line) is never yielded.
        skip_next = True
        while position > 0:
            size = min(_BLOCK_SIZE, position)
            position -= size
            handle.seek(position)
            buffered = handle.read(size) + buffered
            parts = buffered.split(b"\n")
            buffered = parts[0]
            for part in reversed(parts[1:]):
                if skip_next:
                    skip_next = False
                elif part:
                    yield part
        if not skip_next and buffered:
            yield buffered


def iter_recorded_paths_from_disk(cleanup_file: Path, end: int) -> Iterator[str]:
    """The paths recorded in the first ``end`` bytes of ``cleanup_file``, in order."""
    consumed = 0
    with cleanup_file.open("rb") as handle:
        for line in handle:
            consumed += len(line)
            if consumed > end:
                return
            if line.startswith(b"/") and line.endswith(b"\n"):
                yield os.fsdecode(line[:-1])


class CleanupFileWriter:
    """Appends to the cleanup file, one write per path, before the path is created.

    Each record reaches the kernel before the path it names exists, so a crash leaves a
    list that holds every path created (and at most one that was not).
    """

    def __init__(self, cleanup_file: Path) -> None:
        self.path = cleanup_file
        # Appends to the list of kept paths when the previous install left some.
        self._fd = os.open(
            cleanup_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
        )
        self.size = os.fstat(self._fd).st_size

    def append_path(self, path: str) -> None:
        self._append(path.encode(_FS_ENCODING, _FS_ERRORS) + b"\n")

    def append_context_record(self, path: str) -> None:
        self._append(CONTEXT_RECORD_PREFIX + os.fsencode(path) + b"\n")

    def _append(self, record: bytes) -> None:
        size = len(record)
        written = os.write(self._fd, record)
        if written < size:  # only a full disk or a signal cuts a short line
            view = memoryview(record)[written:]
            while view:
                view = view[os.write(self._fd, view) :]
        self.size += size

    def resync_size_from_disk(self) -> None:
        """Another process appended too: take the file's real size."""
        self.size = os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> CleanupFileWriter:
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], value: object, trace: object) -> None:
        self.close()


# Python's own bytes hash is SipHash keyed with a per-process random seed: unpredictable to
# whoever names the files, and ten times cheaper than a hashlib call per path. When the
# environment pins the seed (PYTHONHASHSEED), the keyed blake2b keeps hashes unpredictable.
_BUILTIN_HASH_IS_KEYED = os.environ.get("PYTHONHASHSEED", "random") in ("", "random")


def _path_hash(key: bytes, path: bytes) -> int:
    if _BUILTIN_HASH_IS_KEYED:
        return hash(path)
    digest = hashlib.blake2b(path, digest_size=8, key=key).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass(frozen=True)
class _Removal:
    """What every thread of the replay needs to reach the paths it removes."""

    previous: PathSet
    trusted_uid: int

    def walker(self) -> FolderWalker:
        return FolderWalker(self.previous.__contains__, self.trusted_uid)


def _remove_window_on_disk(
    pool: ThreadPoolExecutor, removal: _Removal, walker: FolderWalker, paths: List[bytes]
) -> int:
    """Remove a window of consecutive cleanup lines (newest first); returns the count.

    Files and symlinks go in parallel chunks, in any order. A folder goes once its chunk
    and every newer chunk are done: what it held was created after it, so it is listed
    after it and comes earlier in this newest-first order.
    """
    chunks = [paths[start : start + _CHUNK] for start in range(0, len(paths), _CHUNK)]
    removed = 0
    for count, folders in pool.map(functools.partial(_unlink_all_on_disk, removal), chunks):
        removed += count
        for folder in folders:
            removed += _remove_folder_on_disk(walker, folder)
    return removed


def _unlink_all_on_disk(removal: _Removal, paths: List[bytes]) -> Tuple[int, List[bytes]]:
    """Unlink each path (a worker thread); returns the count and the folders met, in order."""
    removed = 0
    folders: List[bytes] = []
    reported: Set[str] = set()
    with removal.walker() as walker:
        for path in paths:
            parent, name = _split(path)
            folder_fd = _open_folder_on_disk(walker, parent, path, reported)
            if folder_fd is None:
                continue
            try:
                os.unlink(name, dir_fd=folder_fd)
                removed += 1
            except (FileNotFoundError, NotADirectoryError):
                pass
            except (IsADirectoryError, PermissionError) as error:
                # Linux answers EISDIR for a folder; POSIX also allows EPERM.
                if not _is_folder_on_disk(name, folder_fd):
                    raise _removal_error(path, error) from error
                folders.append(path)
            except OSError as error:
                raise _removal_error(path, error) from error
    return removed, folders


def _remove_folder_on_disk(walker: FolderWalker, path: bytes) -> int:
    parent, name = _split(path)
    folder_fd = _open_folder_on_disk(walker, parent, path, set())
    if folder_fd is None:
        return 0
    try:
        os.rmdir(name, dir_fd=folder_fd)
    except FileNotFoundError:
        return 0
    except OSError as error:
        if error.errno in _FOLDER_KEPT_ERRNOS:
            return 0
        raise _removal_error(path, error) from error
    walker.forget(os.fsdecode(path))
    return 1


def _split(path: bytes) -> Tuple[str, bytes]:
    """The parent folder (as text, for the walker) and the name of an absolute path."""
    slash = path.rfind(b"/")
    return os.fsdecode(path[:slash]) or "/", path[slash + 1 :]


def _open_folder_on_disk(
    walker: FolderWalker, folder: str, path: bytes, reported: Set[str]
) -> Optional[int]:
    """The folder holding ``path``, or None when it is gone or behind a planted symlink."""
    try:
        return walker.open_folder_on_disk(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except SymlinkNotFollowed as refused:
        if refused.path not in reported:
            reported.add(refused.path)
            log.warning(
                "cleanup: what lies behind a symlink is left alone",
                reason=refused.message,
                path=os.fsdecode(path),
            )
        return None
    except OSError as error:
        raise _removal_error(path, error) from error


def _is_folder_on_disk(name: bytes, folder_fd: int) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _removal_error(path: bytes, error: OSError) -> InstallError:
    return InstallError(
        f"cannot remove {os.fsdecode(path)}, installed by the previous deployment of this group"
        f" and listed in its cleanup file: {error.strerror}"
    )


def _remove_file_context_on_disk(path: bytes, semanage: Optional[str]) -> None:
    if semanage is None:
        log.warning(
            "semanage not found: SELinux file context left in place", path=os.fsdecode(path)
        )
        return
    # A record whose rule is already gone is no reason to stop the next install.
    subprocess.run(
        [semanage, "fcontext", "-d", os.fsdecode(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
