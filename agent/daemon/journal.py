"""The daemon's few lines on stderr, which systemd puts in its journal.

The detailed log goes to ``<log_dir>/<program_name>.log``; ``journalctl -u
codedeploy-agent`` shows only what an operator needs at a glance: the start (version,
configuration file, log file), readiness, the identity it polls as (or why it waits for
one), the stop, and a fatal error. In a terminal the log lines are echoed there already,
so these lines are left out; a fatal error is always printed, as the one line a refusal
is. Control characters are shown escaped.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TextIO

from agent.logging.printable import escape_control_characters

PROGRAM = "codedeploy-agent"


@dataclass(frozen=True)
class Journal:
    """Writes to ``stream`` (stderr); ``echoing`` says the log is shown there already."""

    stream: TextIO
    echoing: bool

    def say(self, text: str) -> None:
        """One line for the journal (not in a terminal, which has the whole log)."""
        if not self.echoing:
            self._write(text)

    def fatal(self, message: str) -> None:
        """The one line of a failure that ends the daemon (exit 1)."""
        self._write(f"{PROGRAM}: {message}")

    def _write(self, text: str) -> None:
        # No stderr left (closed by whoever started us): the log file has it all.
        with contextlib.suppress(OSError, ValueError):
            print(escape_control_characters(" ".join(text.split())), file=self.stream, flush=True)
