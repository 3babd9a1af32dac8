"""Walking half of a large tree in a second process.

With many small files the install's per-file Python work dominates; a second process,
unlike a thread, does not wait for this one's interpreter lock, so the plan and the copy
hand every other top-level folder of a large tree to a forked worker. The worker answers
through a pipe with bytes (its result) or an error message; a worker whose parent gives up
is killed before anything else touches the tree, and a worker whose parent dies (SIGKILL,
or a signal it does not handle) is killed by the kernel: nothing copies as root for a
program that is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from typing import Callable, List, Optional

from agent.installer.result import InstallError
from agent.interrupts import INTERRUPTING_SIGNALS
from agent.process_control import die_with_parent, interrupts_held

# A tree whose top level has this many folders is split between two processes.
MIN_FOLDERS_TO_SPLIT = 2

_OK, _FAILED = b"\0", b"\1"


@dataclass(frozen=True)
class ForkedShare:
    pid: int
    reply_fd: int


def split_top_level(
    children: List[os.DirEntry[str]],
) -> Optional[List[os.DirEntry[str]]]:
    """The share for a worker (every other child), or None when splitting does not pay."""
    folders = sum(1 for child in children if child.is_dir(follow_symlinks=False))
    # fork() is only safe while this process runs a single thread.
    if folders < MIN_FOLDERS_TO_SPLIT or threading.active_count() != 1:
        return None
    return children[1::2]


def start_share_in_child(work: Callable[[], bytes]) -> ForkedShare:
    """Run ``work`` in a forked child; its bytes come back through :func:`collect_share`."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    with interrupts_held() as mask:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the worker process, which never returns
            die_with_parent(parent)
            # The parent's handlers turn signals into exceptions for its own clean-up; the
            # worker just ends, and the parent (which kills it anyway) reports the failure.
            for number in INTERRUPTING_SIGNALS:
                signal.signal(number, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(read_fd)
            _serve_in_child(work, write_fd)
    os.close(write_fd)
    return ForkedShare(pid, read_fd)


def _serve_in_child(work: Callable[[], bytes], reply_fd: int) -> None:  # pragma: no cover
    status = 1
    try:
        try:
            reply = _OK + work()
            status = 0
        except InstallError as error:
            reply = _FAILED + error.message.encode("utf-8", "replace")
        except BaseException as error:  # reported to the parent, never lost
            reply = _FAILED + f"the install's second process failed: {error!r}".encode()
        view = memoryview(reply)
        while view:
            view = view[os.write(reply_fd, view) :]
    finally:
        os._exit(status)


def collect_share(share: ForkedShare) -> bytes:
    """Wait for the worker; its result, or InstallError with its message."""
    chunks: List[bytes] = []
    try:
        while True:
            chunk = os.read(share.reply_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(share.reply_fd)
    _, status = os.waitpid(share.pid, 0)
    reply = b"".join(chunks)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and reply[:1] == _OK:
        return reply[1:]
    if reply[:1] == _FAILED:
        raise InstallError(reply[1:].decode("utf-8", "replace"))
    raise InstallError(f"the install's second process ended abnormally (wait status {status})")


def abandon_share(share: ForkedShare) -> None:
    """The parent failed: stop the worker and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(share.pid, signal.SIGKILL)
    os.waitpid(share.pid, 0)
    with contextlib.suppress(OSError):
        os.close(share.reply_fd)
