"""Handing a share of a job to a forked copy of this process.

With many small files the per-file work of the interpreter dominates; a second process,
unlike a thread, does not wait for this one's interpreter lock. The installer's plan and
copy hand half of a large tree to such a worker, and the unpack half of a large archive's
members. The worker answers through a pipe with bytes (its result) or an error message,
and may first send progress marks that the parent waits for one by one (the unpack's
members that must be written in the archive's order). A worker whose parent gives up is
killed before anything else touches the files, and a worker whose parent dies (SIGKILL,
or a signal it does not handle) is killed by the kernel: nothing writes as root for a
program that is gone.

``fork()`` is only safe while this process runs a single thread (:func:`fork_is_safe`):
a lock another thread held at that moment stays held forever in the child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from typing import Callable, List

from agent.errors import AgentError
from agent.interrupts import INTERRUPTING_SIGNALS
from agent.process_control import die_with_parent, interrupts_held

_OK, _FAILED, _PROGRESS = b"\0", b"\1", b"."

# What a share's work is given to mark its progress with.
Progress = Callable[[], None]


@dataclass(frozen=True)
class ForkedShare:
    """A worker at work: its pid, the read end of its answers, and how its failure is
    reported (the error class of the job's domain; ``name`` for a worker that died)."""

    pid: int
    reply_fd: int
    error: Callable[[str], AgentError]
    name: str


def fork_is_safe() -> bool:
    """Whether this process may fork a worker now (it runs a single thread)."""
    return threading.active_count() == 1


def start_share_in_child(
    work: Callable[[Progress], bytes], *, error: Callable[[str], AgentError], name: str
) -> ForkedShare:
    """Run ``work`` in a forked child; its bytes come back through :func:`collect_share`.

    ``work`` gets a function that sends one progress mark (see :func:`wait_for_progress`).
    An :class:`AgentError` it raises comes back as ``error(message)``; ``name`` (such as
    "the install's second process") names the worker in the other failures.
    """
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
            _serve_in_child(work, write_fd, name)
    os.close(write_fd)
    return ForkedShare(pid, read_fd, error, name)


def _write_all(fd: int, data: bytes) -> None:  # pragma: no cover - the worker process
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _serve_in_child(
    work: Callable[[Progress], bytes], reply_fd: int, name: str
) -> None:  # pragma: no cover - the worker process
    status = 1
    try:
        try:
            reply = _OK + work(lambda: _write_all(reply_fd, _PROGRESS))
            status = 0
        except AgentError as error:
            reply = _FAILED + error.message.encode("utf-8", "replace")
        except BaseException as error:  # reported to the parent, never lost
            reply = _FAILED + f"{name} failed: {error!r}".encode()
        _write_all(reply_fd, reply)
    finally:
        os._exit(status)


def wait_for_progress(share: ForkedShare) -> None:
    """Wait for the worker's next progress mark. When it ends instead (it failed), it is
    reaped and its failure raised, as :func:`collect_share` does."""
    mark = os.read(share.reply_fd, 1)
    if mark == _PROGRESS:
        return
    collect_share(share, first=mark)
    # A worker that answered without the mark its parent waits for did not follow the job.
    raise share.error(f"{share.name} ended before the member its parent waited for")


def collect_share(share: ForkedShare, first: bytes = b"") -> bytes:
    """Wait for the worker; its result, or its domain's error with its message. ``first``
    is what the parent already read of the answer."""
    chunks: List[bytes] = [first]
    try:
        while True:
            chunk = os.read(share.reply_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(share.reply_fd)
    _, status = os.waitpid(share.pid, 0)
    reply = b"".join(chunks).lstrip(_PROGRESS)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and reply[:1] == _OK:
        return reply[1:]
    if reply[:1] == _FAILED:
        raise share.error(reply[1:].decode("utf-8", "replace"))
    raise share.error(f"{share.name} ended abnormally (wait status {status})")


def abandon_share(share: ForkedShare) -> None:
    """The parent failed: stop the worker and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(share.pid, signal.SIGKILL)
    os.waitpid(share.pid, 0)
    with contextlib.suppress(OSError):
        os.close(share.reply_fd)
