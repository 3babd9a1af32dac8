"""A test's own processes, found by a unique marker, signals sent to a program at a
known moment (from its signal handlers, read in ``/proc``), and the wait for this process
to run one thread again."""

from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Tuple

_WAIT_SECONDS = 30.0


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"


def pids_with_marker(marker: str) -> List[int]:
    """The live processes whose command line holds ``marker`` (unique to one test)."""
    found: List[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            command = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in command and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def children_with_marker(parent: int, marker: str) -> List[int]:
    """The children of ``parent`` whose command line holds ``marker``, zombies included
    (a child not reaped yet is still there)."""
    found: List[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text(encoding="ascii")
            command = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        parent_line = re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)
        if (
            parent_line is not None
            and int(parent_line.group(1)) == parent
            and marker.encode() in command
        ):
            found.append(int(entry.name))
    return found


def kill_marked(marker: str) -> None:
    for pid in pids_with_marker(marker):
        os.kill(pid, signal.SIGKILL)


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


def interrupt_during_imports(process: subprocess.Popen[str]) -> Tuple[str, str]:
    """Ctrl-C ``process`` while it imports the program; its stdout and stderr."""
    try:
        assert hold_once_handlers_are_set(process.pid), "no SIGTERM handler was ever set"
        process.send_signal(signal.SIGINT)
        os.kill(process.pid, signal.SIGCONT)
        return process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()


def wait_for_one_thread(timeout: float = 10.0) -> bool:
    """Whether this process is down to its one thread within ``timeout`` seconds.

    Servers that earlier tests ran in this process (moto's, the stand-ins) answer each
    kept-alive connection on a thread of their own, which ends only when its client hangs
    up; a botocore client of an earlier test closes its connections only once the cyclic
    garbage collector frees it. So: collect, then wait for those threads to end.
    """
    deadline = time.monotonic() + timeout
    while threading.active_count() > 1:
        gc.collect()
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
