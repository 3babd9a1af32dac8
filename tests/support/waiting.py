"""Waiting, bounded, for something another process or thread does: tests never sleep a
guessed time, they poll for the state they expect and fail when it does not come."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Whether ``predicate()`` became true within ``timeout`` seconds (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
