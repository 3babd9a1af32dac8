"""Where ``codedeploy-local`` starts: its signal handling comes before anything else.

SIGINT (Ctrl-C), SIGTERM and SIGHUP are turned into :class:`Interrupted` before the rest of
the program is even imported, so that a signal at any moment (during the imports, the
pre-flight of a large archive, a copy, a hook) unwinds through the same clean-up: the
running hook's whole tree is ended and its cgroup removed, the install's second process is
killed, and the program prints one line and exits with 128 plus the signal's number (130
for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP), as a shell reports a program a signal ended.
Only the first signal interrupts; those that follow while the clean-up runs are ignored,
so that a second Ctrl-C cannot cut the clean-up short. This module imports only the
standard library's smallest modules, to keep the moment before the handlers as short as
the interpreter's own start.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Optional

INTERRUPTING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


def install_interrupt_handlers() -> None:
    """Turn the first SIGINT, SIGTERM or SIGHUP into :class:`Interrupted`; ignore the rest."""
    seen: list[int] = []

    def interrupt(number: int, _frame: Optional[FrameType]) -> None:
        if seen:
            return
        seen.append(number)
        raise Interrupted(number)

    for number in INTERRUPTING_SIGNALS:
        signal.signal(number, interrupt)


def main() -> None:
    """The ``codedeploy-local`` console script and ``python -m agent.local_deployment``."""
    install_interrupt_handlers()
    sys.exit(_run_guarded())


def _run_guarded() -> int:
    try:
        from agent.local_deployment.cli import run_local_deployment

        return run_local_deployment()
    except KeyboardInterrupt as error:
        interrupted = interrupted_by(error)
        print(f"codedeploy-local: interrupted ({interrupted.signal_name})", file=sys.stderr)
        return interrupted.exit_status
