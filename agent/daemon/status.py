"""The daemon's status file: what it is doing, for ``codedeploy-agent status``.

Beside the pid file, ``<program_name>.status.json`` holds the pid, the state, the command
running now, the last command's outcome and when it changed. The daemon rewrites it
(write beside, then rename) whenever its state changes; ``status`` only reads it.
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
    updated: float = 0.0


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
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
