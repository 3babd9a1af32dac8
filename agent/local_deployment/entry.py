"""Where ``codedeploy-local`` starts: the signal handlers before anything else is imported.

See :mod:`agent.interrupts`: SIGINT, SIGTERM and SIGHUP at any moment end the program with
its clean-up, one line and 128 plus the signal's number. This is the console script's
entry and ``python -m agent.local_deployment``'s.
"""

from __future__ import annotations

from agent.interrupts import install_interrupt_handlers, run_interruptible


def main() -> None:
    status = run_interruptible("codedeploy-local", _run)
    # Imported with the engine by now: the handlers came first.
    from agent.process_control import exit_without_teardown

    exit_without_teardown(status)


def _run() -> int:
    # Set inside run_interruptible: a signal that arrives while the second or third
    # handler is being set is still one line and 128 plus its number, not a traceback.
    install_interrupt_handlers()
    from agent.garbage_collection import garbage_collector_paused

    # The program's imports, a tenth quicker without collections that would find nothing
    # among the modules, classes and functions they make, all kept until the exit.
    with garbage_collector_paused(freeze_after=True):
        from agent.local_deployment.cli import run_local_deployment

    return run_local_deployment()
