"""SQLite's one writer, taken in turn by the processes of one server without sleeping.

When ``server_processes`` is above 1, several processes write to one SQLite file. SQLite
makes a second writer wait in its busy handler, which sleeps (up to 100 ms a time) and
polls, so most of a write's latency would be sleep. The processes take turns on an
exclusive ``flock`` of a lock file beside the database instead: a waiter is woken the
moment the holder lets go. Each process opens its own descriptor (a lock belongs to an
open file description, which a fork would share), after the fork.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator, Optional


class ProcessWriteLock:
    """An exclusive lock on ``path`` (made with mode 0600 when absent) for the duration of a
    write transaction; threads of one process must already take turns among themselves."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: Optional[int] = None
        self._pid = -1

    @contextlib.contextmanager
    def held_on_disk(self) -> Iterator[None]:
        fd = self._descriptor_on_disk()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _descriptor_on_disk(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            # A descriptor inherited across a fork is another process's: leave it open (the
            # parent's lock must not be dropped by closing it here) and open our own.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


class NoProcessWriteLock:
    """One server process: SQLite's own busy timeout covers the rare other writer."""

    @contextlib.contextmanager
    def held_on_disk(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        pass
