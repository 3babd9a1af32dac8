"""The daemon's stop request: wake-ups are never lost, and a signal that lands anywhere in
a wait ends it (a handler that took a lock its own thread held used to hang the daemon)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from agent.daemon.stop_request import StopRequest
from tests.support.checkout import REPO


def test_a_wake_sent_before_the_wait_ends_it_at_once_and_only_once() -> None:
    stop = StopRequest()
    stop.wake()
    stop.wake()
    assert stop.wait_for_wake(None) is False
    # Both wake-ups were drained by that wait: the next one lasts its time.
    assert stop.wait_for_wake(0.01) is False
    assert not stop.requested


def test_a_wake_from_another_thread_ends_a_wait_for_wake_but_not_a_wait_for_stop() -> None:
    stop = StopRequest()
    waker = threading.Timer(0.05, stop.wake)
    waker.start()
    assert stop.wait_for_wake(30) is False
    waker.join()
    waker = threading.Timer(0.05, stop.wake)
    waker.start()
    assert stop.wait_for_stop(0.3) is False
    waker.join()


def test_a_request_from_another_thread_ends_a_wait_for_stop_without_a_limit() -> None:
    stop = StopRequest()
    requester = threading.Timer(0.05, stop.request)
    requester.start()
    assert stop.wait_for_stop(None) is True
    requester.join()
    # Once asked for, a stop stays asked for: later waits return at once.
    assert stop.wait_for_wake(None) is True and stop.wait_for_stop(None) is True


def test_a_full_pipe_of_wake_ups_neither_blocks_nor_loses_the_stop() -> None:
    stop = StopRequest()
    for _ in range(200_000):  # More than a pipe holds.
        stop.wake()
    stop.request()
    assert stop.wait_for_stop(None) is True


# A child that spins through waits while a timer signal lands at a random moment, many
# times over; it prints how many stops it saw. Any lock taken by the handler that the
# waiting thread can hold shows up here as a hang (it did, about once in 300 signals, when
# the handler set a threading.Event).
SIGNALS_ANYWHERE = textwrap.dedent(
    """
    import random, signal, sys
    from agent.daemon.stop_request import StopRequest

    rounds = int(sys.argv[1])
    stops = 0
    for _ in range(rounds):
        stop = StopRequest()
        stop.request_on_signals([signal.SIGALRM])
        signal.setitimer(signal.ITIMER_REAL, random.uniform(0.0001, 0.002))
        while not stop.wait_for_wake(random.choice([0, 0.0005])):
            stop.wake()
        stops += stop.requested
    print(stops)
    """
)


def test_signals_landing_anywhere_in_busy_waits_always_stop_them(tmp_path: Path) -> None:
    rounds = 400
    script = tmp_path / "signals_anywhere.py"
    script.write_text(SIGNALS_ANYWHERE, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(rounds)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(rounds)]
