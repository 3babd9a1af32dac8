"""Test support: looking at a process's signal handlers, to signal it at a known moment."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_WAIT_SECONDS = 30.0


def catches(pid: int, number: int) -> bool:
    """Whether ``pid`` has a handler for signal ``number`` (SigCgt in its status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (number - 1)))
    return False


def hold_once_handlers_are_set(pid: int) -> bool:
    """Stop ``pid`` (SIGSTOP) as soon as it handles SIGTERM: its entry module has run and
    the program's own imports are what comes next (Python handles SIGINT by itself, never
    SIGTERM)."""
    deadline = time.monotonic() + _WAIT_SECONDS
    while time.monotonic() < deadline:
        if catches(pid, signal.SIGTERM):
            os.kill(pid, signal.SIGSTOP)
            return True
    return False
