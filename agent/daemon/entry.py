"""Where ``codedeploy-agent`` starts: the signal handlers before anything else is imported.

Until ``run`` installs its own (SIGTERM and SIGINT then stop polling and let the running
command finish), Ctrl-C or SIGTERM during the imports or a ``start``/``stop``/``status``
is one line and 128 plus the signal's number (see :mod:`agent.interrupts`). SIGHUP keeps
its default, as before. This is the console script's entry and ``python -m agent.daemon``'s.
"""

from __future__ import annotations

import signal
import sys

from agent.interrupts import install_interrupt_handlers, run_interruptible


def main() -> None:
    install_interrupt_handlers((signal.SIGINT, signal.SIGTERM))
    sys.exit(run_interruptible("codedeploy-agent", _run))


def _run() -> int:
    from agent.daemon.cli import main as cli_main

    return cli_main()
