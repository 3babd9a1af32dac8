"""The few Linux process controls the agent relies on (``prctl``), reached through ctypes.

Two guarantees rest on them: a worker the agent forks dies with the agent (parent-death
signal), and every process a hook leaves behind stays a descendant of the agent while it
runs (child subreaper), so that a timeout can find it. Both are per process and survive
nothing but ``fork`` (the death signal is cleared in the child, so it is set again there).
A short-lived program also ends here, without the interpreter's tear-down, and the daemon
gives the C heap's free pages back to the system here when it goes idle.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from typing import Collection, Iterator, NoReturn

from agent.interrupts import INTERRUPTING_SIGNALS

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    """One ``prctl(option, value)`` call; False when the kernel or libc refuses it."""
    try:
        # The interpreter's own symbols include libc's; find_library would spawn ldconfig.
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.prctl
    except (OSError, AttributeError):
        return False
    result = call(
        ctypes.c_int(option),
        ctypes.c_ulong(value),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    return int(result) == 0


def die_with_parent(parent_pid: int, death_signal: int = signal.SIGKILL) -> None:
    """In a freshly forked worker: be killed when the parent dies, and leave at once if it
    already did (before the death signal was armed, the kernel had no one to tell).

    ``parent_pid`` is the parent's pid read before ``fork``. Never returns when the
    parent is gone.
    """
    _prctl(_PR_SET_PDEATHSIG, int(death_signal))
    if os.getppid() != parent_pid:
        os._exit(1)


def become_child_subreaper() -> bool:
    """Make this process adopt the orphans of its descendants (instead of init).

    True when the kernel agreed (Linux 3.4+). Whoever calls it takes on reaping the
    adopted processes that exit: see :func:`agent.lifecycle_event.process_tree.reap_adopted_orphans`.
    """
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


@contextlib.contextmanager
def interrupts_held() -> Iterator[Collection[int]]:
    """Hold SIGINT, SIGTERM and SIGHUP back around a ``fork``; yields the mask to restore.

    Python runs its at-fork callbacks (logging's, for one) in the parent right after the
    fork, and an exception a signal handler raises inside one of them is printed and
    dropped: the interrupt would be lost. Held back, the signal arrives when the block
    ends, in ordinary code. A child must restore the yielded mask before it execs or works.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTING_SIGNALS)
    try:
        yield previous
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or a
    systemd unit may narrow), or the machine's where affinity cannot be read."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``).

    glibc returns freed memory to the kernel only from the top of its heap, so the garbage
    of start-up (service models parsed, modules compiled) and of a deployment stays in the
    daemon's resident set while it idles, pinned by a few live blocks above it. The call
    takes about 10 microseconds once the heap is small. False where the C library has no
    such call (musl): nothing to do there.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    return int(trim(ctypes.c_size_t(0))) == 1


def exit_without_teardown(status: int) -> NoReturn:
    """End a short-lived program with ``status`` once its work is done, without the
    interpreter's tear-down: freeing every module and object of a run that imported the
    whole engine takes tens of milliseconds, spent after the outcome is known.

    What the program wrote is flushed first (standard streams, logging's handlers); an
    interrupt that arrives meanwhile changes nothing any more and is held back.
    """
    with interrupts_held():
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
        os._exit(status)
