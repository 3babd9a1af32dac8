"""A log file that several processes append to at once, bounded by size-based rotation.

The deployments log (``<root_dir>/deployment-logs/codedeploy-agent-deployments.log``) is
written by the daemon and by every ``codedeploy-local`` run, and ``codedeploy-local.log``
by every ``codedeploy-local`` run; left alone either grows without bound. They rotate as
the AWS agent's deployments log does: when a line would take the file past its limit,
``<log>.0`` becomes ``<log>.1`` (and so on, the oldest dropped), ``<log>`` becomes
``<log>.0``, and a new ``<log>`` is started.

Every line is one ``write()`` to a descriptor opened with ``O_APPEND``, so lines of two
processes never mix. The writer that finds the file full rotates it while holding an
exclusive ``flock`` on it; the others, whose descriptors now point at ``<log>.0``, take
the same lock, see that the name leads to another file, and reopen the log by name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# Symlinks are followed, as the AWS agent follows them: operators point logs at other disks.
_OPEN_FOR_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_MIB = 1024 * 1024
# The file's real size (other processes write to it too) is looked up again after this
# many bytes of our own (a sixteenth of the limit at most), and whenever our own count
# says the limit is near: N writers at once overshoot the limit by N times that at most.
_RECHECK_BYTES = 64 * 1024


@dataclass(frozen=True)
class LogRotation:
    """When a shared log rotates and how many files it keeps, the current one included."""

    max_bytes: int = 64 * _MIB
    files: int = 8

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.files < 1:
            raise ValueError("a log rotation needs max_bytes >= 1 and files >= 1")


# The AWS agent's deployments log: 8 files of 64 MiB.
DEPLOYMENTS_LOG_ROTATION = LogRotation()


def rotated_log_name(path: Path, number: int) -> Path:
    """The name of the ``number``-th older file of the log ``path`` (0 is the newest)."""
    return path.with_name(f"{path.name}.{number}")


def shift_log_files_on_disk(path: Path, files: int) -> None:
    """Rename ``path`` to ``path.0``, ``path.0`` to ``path.1``, ... keeping ``files`` files
    in all (``path`` included): the oldest is replaced by the one before it."""
    if files < 2:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    for number in range(files - 3, -1, -1):
        with contextlib.suppress(FileNotFoundError):
            os.rename(rotated_log_name(path, number), rotated_log_name(path, number + 1))
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, rotated_log_name(path, 0))


class SharedLogFile:
    """Appends text to ``path``, rotating it by :class:`LogRotation` (touches the disk).

    The file and its folder are created at the first write. Errors are raised as
    ``OSError``: the caller decides whether a log that cannot be written matters.
    """

    def __init__(self, path: Path, rotation: LogRotation = DEPLOYMENTS_LOG_ROTATION) -> None:
        self.path = path
        self.rotation = rotation
        self._fd: Optional[int] = None
        # The size last read from the file, and the bytes we wrote since.
        self._size = 0
        self._unchecked = 0
        self._recheck = min(_RECHECK_BYTES, max(1, rotation.max_bytes // 16))

    def write(self, text: str) -> None:
        """Append ``text`` (whole lines) in one write."""
        data = text.encode("utf-8", "backslashreplace")
        if self._fd is None:
            self._fd = self._open_on_disk()
            self._unchecked = self._recheck  # read its size now
        limit = self.rotation.max_bytes
        if self._unchecked >= self._recheck or self._size + self._unchecked + len(data) > limit:
            self._size, self._unchecked = os.fstat(self._fd).st_size, 0
            if self._size and self._size + len(data) > limit:
                self._rotate_on_disk(len(data))
                self._size = os.fstat(self._fd).st_size
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._unchecked += len(data)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _open_on_disk(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, _OPEN_FOR_APPEND, 0o644)

    def _rotate_on_disk(self, incoming: int) -> None:
        current = self._lock_current_file_on_disk()
        try:
            ours = os.fstat(self._fd) if self._fd is not None else None
            info = os.fstat(current)
            already_rotated = ours is None or (ours.st_dev, ours.st_ino) != (
                info.st_dev,
                info.st_ino,
            )
            if not already_rotated and info.st_size + incoming > self.rotation.max_bytes:
                shift_log_files_on_disk(self.path, self.rotation.files)
                fresh = self._open_on_disk()
            else:
                # Another process rotated it (or it has room again): write where it points.
                fcntl.flock(current, fcntl.LOCK_UN)
                fresh, current = current, -1
        finally:
            if current != -1:
                os.close(current)  # closing releases the lock
        self.close()
        self._fd = fresh

    def _lock_current_file_on_disk(self) -> int:
        """A descriptor of the file the name leads to, exclusively locked."""
        while True:
            fd = self._open_on_disk()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                locked = os.fstat(fd)
                try:
                    named = os.stat(self.path)
                except FileNotFoundError:
                    named = None
            except BaseException:
                os.close(fd)
                raise
            if named is not None and (named.st_dev, named.st_ino) == (
                locked.st_dev,
                locked.st_ino,
            ):
                return fd
            # Rotated between our open and our lock: try the new file.
            os.close(fd)
