"""Signals that stop a program, turned into one exception before anything else is imported.

Both programs install these handlers as their very first step (their entry modules), so a
signal at any moment (the imports, the early unpack of a local archive, a copy, a hook)
unwinds through the same clean-up as Ctrl-C: the running hook's whole tree is ended and its
cgroup removed, the install's second process is killed, and the program prints one line
and exits with 128 plus the signal's number (130 for Ctrl-C, 143 for SIGTERM, 129 for
SIGHUP), as a shell reports a program a signal ended. A signal that follows within
:data:`REPEAT_IGNORED_SECONDS` of the one that interrupted is ignored, so that a second
Ctrl-C does not cut the clean-up short; a later one interrupts again (Python drops an
exception raised inside a finalizer, so an interrupt can in rare cases be lost: the next
signal still works). This module imports only the smallest standard modules, to keep the
moment before the handlers as short as the interpreter's own start.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType
from typing import Callable, Optional, Sequence

INTERRUPTING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Longer than ending a hook's tree takes with the default grace period (5 s).
REPEAT_IGNORED_SECONDS = 10.0


class Interrupted(KeyboardInterrupt):
    """A signal asked the program to stop; raised once, where the main thread was."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number

    @property
    def exit_status(self) -> int:
        return 128 + self.signal_number

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signal_number).name
        except ValueError:
            return f"signal {self.signal_number}"


def interrupted_by(error: KeyboardInterrupt) -> Interrupted:
    """The :class:`Interrupted` an interrupt stands for (a bare KeyboardInterrupt is SIGINT)."""
    return error if isinstance(error, Interrupted) else Interrupted(signal.SIGINT)


def install_interrupt_handlers(numbers: Sequence[int] = INTERRUPTING_SIGNALS) -> None:
    """Turn these signals into :class:`Interrupted`, but not again soon after one did."""
    interrupted_at: list[float] = []

    def interrupt(number: int, _frame: Optional[FrameType]) -> None:
        now = time.monotonic()
        if interrupted_at and now - interrupted_at[-1] < REPEAT_IGNORED_SECONDS:
            return
        interrupted_at.append(now)
        raise Interrupted(number)

    for number in numbers:
        signal.signal(number, interrupt)


def run_interruptible(program: str, run: Callable[[], int]) -> int:
    """``run()``'s status; an interrupt that reaches here is one line and 128+n."""
    try:
        return run()
    except KeyboardInterrupt as error:
        interrupted = interrupted_by(error)
        print(f"{program}: interrupted ({interrupted.signal_name})", file=sys.stderr, flush=True)
        return interrupted.exit_status
