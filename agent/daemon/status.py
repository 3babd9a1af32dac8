"""The daemon's status file: what it is doing, for ``codedeploy-agent status``.

Beside the pid file, ``<program_name>.status.json`` holds the pid, the daemon's version,
the state, what it does in words (polling what as whom, running which command), the
command running now, the last command's outcome, when the state began, when the next try
after an error is due, and how deployment specifications are verified. The daemon
rewrites it (write beside, then rename) whenever its state changes; ``status`` only reads
it and tells durations from those times (:func:`describe_status`).

One rule (:func:`compose_status_line`) writes the line that systemd shows, the one in
the file and the one ``status`` prints (which adds how long the state has lasted):
``<doing>[ for <duration>][: <error>][; next try in <duration>][; last: <outcome>]``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class DaemonStatus:
    pid: int
    state: str
    line: str
    current: Optional[str] = None
    last: Optional[str] = None
    updated: float = 0.0  # when the state began
    error: Optional[str] = None
    next_try: Optional[float] = None
    signature_policy: Optional[str] = None
    doing: Optional[str] = None
    version: Optional[str] = None


def status_file_for(pid_file: Path) -> Path:
    return pid_file.with_name(pid_file.stem + ".status.json")


def write_status_file(path: Path, status: DaemonStatus) -> None:
    """Replace the status file (disk); failures are the caller's to ignore or report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(asdict(status)), encoding="utf-8")
    partial.replace(path)


def read_status_file(path: Path) -> Optional[DaemonStatus]:
    """The status the daemon last wrote, or None when there is none (or it is unreadable)."""
    try:
        document: Dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return DaemonStatus(
            pid=int(document["pid"]),
            state=str(document["state"]),
            line=str(document.get("line") or document["state"]),
            current=document.get("current"),
            last=document.get("last"),
            updated=float(document.get("updated") or 0.0),
            error=document.get("error"),
            next_try=float(document["next_try"]) if document.get("next_try") else None,
            signature_policy=document.get("signature_policy"),
            doing=document.get("doing"),
            version=document.get("version"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def duration_text(seconds: float) -> str:
    """``40s``, ``1m12s``, ``2h05m``, ``3d4h``: short and exact enough for an operator."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600}h"


def compose_status_line(
    doing: str,
    *,
    error: Optional[str] = None,
    last: Optional[str] = None,
    next_try_in: Optional[float] = None,
    lasted: Optional[float] = None,
) -> str:
    """The one status line: what the agent does (and for how long, ``lasted`` seconds),
    the error it waits after, when it tries again, and the last command's outcome."""
    head = doing if lasted is None else f"{doing} for {duration_text(lasted)}"
    if error:
        head += f": {error}"
    parts = [head]
    if next_try_in is not None:
        parts.append(f"next try in {duration_text(next_try_in)}")
    if last:
        parts.append(f"last: {last}")
    return "; ".join(parts)


def describe_status(status: DaemonStatus, now: float) -> str:
    """What the daemon does and for how long, e.g. ``running ApplicationStart of d-X (2 of
    its commands done) for 1m12s`` or ``backing off after an error for 40s: <error>; next
    try in 35s``."""
    if status.doing:
        doing = status.doing
    elif status.state == "waiting after error":  # a file an older version wrote
        doing = "backing off after an error"
    else:
        doing = status.state if status.current is None else f"{status.state} {status.current}"
    return compose_status_line(
        doing,
        error=status.error,
        last=status.last,
        next_try_in=None if status.next_try is None else status.next_try - now,
        lasted=now - status.updated if status.updated else None,
    )
