"""The pid file of a daemon started without systemd, and whether its process still lives.

``<pid_dir>/<program_name>.pid`` holds the daemon's pid and a newline. The daemon writes it
when it starts (refusing to start while another live daemon holds it) and removes it when
it exits; ``start``, ``stop`` and ``status`` read it. A pid whose process is gone, or is a
zombie nobody reaped yet, counts as not running.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional

from agent.errors import AgentError


class PidFileError(AgentError):
    """The pid file cannot be written, or another daemon already runs."""


# Linux never hands out a pid above 2^22 (PID_MAX_LIMIT on 64-bit hosts).
PID_MAX_LIMIT = 4 * 1024 * 1024


def read_pid_file(path: Path) -> Optional[int]:
    """The pid in the file, or None when there is no file or it holds no pid."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise PidFileError(f"cannot read the pid file {path}: {error.strerror or error}") from None
    # Anything beyond the kernel's largest pid is not a pid (and overflows os.kill).
    if not text.isdigit() or len(text) > 7 or not 0 < int(text) <= PID_MAX_LIMIT:
        return None
    return int(text)


def process_is_running(pid: int) -> bool:
    """Whether ``pid`` names a live process (reads ``/proc`` to tell zombies apart)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    # The state follows the parenthesised command name, which may itself hold spaces.
    state = stat[stat.rfind(")") + 1 :].split()[:1]
    return state != ["Z"]


def running_pid(path: Path) -> Optional[int]:
    """The pid of the live daemon the pid file names, or None."""
    pid = read_pid_file(path)
    return pid if pid is not None and process_is_running(pid) else None


def claim_pid_file(path: Path, pid: int) -> None:
    """Write ``pid`` into the pid file, unless a live process other than ``pid`` holds it."""
    holder = running_pid(path)
    if holder is not None and holder != pid:
        raise PidFileError(f"another agent already runs with pid {holder} (pid file {path})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{pid}")
        partial.write_text(f"{pid}\n", encoding="ascii")
        partial.replace(path)
    except OSError as error:
        raise PidFileError(f"cannot write the pid file {path}: {error.strerror or error}") from None


def release_pid_file(path: Path, pid: int) -> None:
    """Remove the pid file if it still names ``pid``."""
    with contextlib.suppress(PidFileError):
        if read_pid_file(path) != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
