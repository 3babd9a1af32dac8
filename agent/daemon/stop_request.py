"""The daemon's stop request: asked for by SIGTERM or SIGINT, waited on by the main thread.

A Python signal handler runs on the main thread between two bytecodes, possibly while
that same thread is inside ``threading.Event.wait()`` or ``clear()`` holding the event's
internal lock. A handler that calls ``Event.set()`` then waits for a lock its own thread
holds, and the daemon never stops (SIGTERM ignored until systemd's SIGKILL). So the
handler here takes no lock: it sets a flag and writes one byte into a pipe, and every
wait polls the pipe's read end. Worker threads wake a wait the same way (a finished try
for an identity); a byte written before the wait starts is not lost, since the pipe stays
readable until the waiting thread drains it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from types import FrameType
from typing import Optional, Sequence

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """A flag set once (by a signal or :meth:`request`) and a wake-up any thread may send.

    Only one thread (the main one) waits; any thread, or a signal handler, may wake it.
    """

    def __init__(self) -> None:
        self._read_end, self._write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller = select.poll()
        self._poller.register(self._read_end, select.POLLIN)
        self._requested = False

    @property
    def requested(self) -> bool:
        return self._requested

    def request(self) -> None:
        """Ask the daemon to stop; safe inside a signal handler."""
        self._requested = True
        self.wake()

    def wake(self) -> None:
        """End the current (or next) :meth:`wait_for_wake` early; safe from any thread."""
        # A full pipe holds wake-ups already: the waiter will see one.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write_end, b"\0")

    def wait_for_wake(self, seconds: Optional[float]) -> bool:
        """Wait up to ``seconds`` (None: no limit) for a wake-up; True when a stop is asked for.

        Wake-ups sent before the call count: the waiter then returns at once.
        """
        if not self._requested:
            timeout_ms = None if seconds is None else max(0, _ceil_ms(seconds))
            if self._poller.poll(timeout_ms):
                self._drain()
        return self._requested

    def wait_for_stop(self, seconds: Optional[float]) -> bool:
        """Wait up to ``seconds`` for a stop, whatever wakes the pipe meanwhile; True when
        a stop is asked for."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self._requested:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self.wait_for_wake(remaining)
        return self._requested

    def request_on_signals(self, numbers: Sequence[int] = STOPPING_SIGNALS) -> None:
        """From now on these signals ask for a stop (instead of what they did before)."""

        def on_signal(_number: int, _frame: Optional[FrameType]) -> None:
            self.request()

        for number in numbers:
            signal.signal(number, on_signal)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read_end, 4096):
                pass


def _ceil_ms(seconds: float) -> int:
    # Rounded up: a wait that ends a little before its deadline would loop once more.
    return int(-(-seconds * 1000 // 1))
