"""Where ``codedeploy-server`` starts: the signal handlers before anything else is imported.

Ctrl-C or SIGTERM during the imports or an admin command is one line and 128 plus the
signal's number (:mod:`agent.interrupts`); ``run`` then hands SIGTERM and SIGINT to the
HTTP server, which stops gracefully and exits 0.
"""

from __future__ import annotations

import signal
import sys

from agent.interrupts import install_interrupt_handlers, run_interruptible


def main() -> None:
    install_interrupt_handlers((signal.SIGINT, signal.SIGTERM))
    sys.exit(run_interruptible("codedeploy-server", _run))


def _run() -> int:
    from server.cli import main as cli_main

    return cli_main()
