"""The script log of a deployment: hook output as it arrives, in the AWS agent's format.

Operators ``tail -f`` ``<deployment>/logs/scripts.log`` and grep the deployments log, and
tools written for the AWS agent parse both, so the line formats are a contract:
``YYYY-MM-DD HH:MM:SS <entry>`` (local time) in the script log and
``[YYYY-MM-DD HH:MM:SS.mmm] [<deployment-id>]<entry>`` in the deployments log. The tail of
what was written (entries without timestamps) is what a failed command reports.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import threading
from pathlib import Path
from types import TracebackType
from typing import Deque, Optional, TextIO, Type

import structlog

from agent.errors import LOG_TAIL_CHARACTERS, ErrorCode
from agent.lifecycle_event.errors import LifecycleEventError
from agent.logging.shared_log_file import DEPLOYMENTS_LOG_ROTATION, LogRotation, SharedLogFile

_log = structlog.get_logger(__name__)

# The prefix of lines the agent itself adds to the script log (never script output).
AGENT_NOTE_PREFIX = "[agent]"


class ScriptLog:
    """Appends one deployment's hook entries to its script log and the deployments log.

    Files are opened at the first entry, so an event without scripts leaves no trace.
    Every entry is flushed at once. The deployments log is shared with other processes
    and rotated by ``deployments_log_rotation``. Use :func:`open_script_log` and ``with``.
    """

    def __init__(
        self,
        script_log_path: Path,
        deployment_id: str,
        deployments_log_path: Optional[Path],
        deployments_log_rotation: LogRotation = DEPLOYMENTS_LOG_ROTATION,
    ) -> None:
        self._script_log_path = script_log_path
        self._deployment_id = deployment_id
        self._deployments_log_path = deployments_log_path
        self._deployments_log_rotation = deployments_log_rotation
        self._script_file: Optional[TextIO] = None
        self._deployments_file: Optional[SharedLogFile] = None
        self._write_failed = False
        self._tail: Deque[str] = collections.deque()
        self._tail_characters = 0
        # Output may one day be written from more than one thread; a line must stay whole.
        self._lock = threading.Lock()

    def __enter__(self) -> ScriptLog:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def event_started(self, event: str) -> None:
        self._write(f"LifecycleEvent - {event}")

    def script_started(self, location: str) -> None:
        self._write(f"Script - {location}")

    def output_line(self, stream: str, line: str) -> None:
        """One line of a script's ``stdout`` or ``stderr``, without its line break."""
        self._write(f"[{stream}]{line}")

    def agent_note(self, message: str) -> None:
        """A line of the agent's own about the running script (e.g. who holds its output)."""
        self._write(AGENT_NOTE_PREFIX + message)

    def tail(self) -> str:
        """The last :data:`LOG_TAIL_CHARACTERS` characters written, entries without timestamps."""
        with self._lock:
            return "".join(self._tail)[-LOG_TAIL_CHARACTERS:]

    def close(self) -> None:
        with self._lock:
            for handle in (self._script_file, self._deployments_file):
                if handle is not None:
                    with contextlib.suppress(OSError):
                        handle.close()
            self._script_file = None
            self._deployments_file = None

    def _write(self, entry: str) -> None:
        with self._lock:
            self._remember(entry + "\n")
            self._open_files_if_needed()
            now = datetime.datetime.now()
            script_line = f"{now:%Y-%m-%d %H:%M:%S} {entry}\n"
            try:
                if self._script_file is not None:
                    self._script_file.write(script_line)
                    self._script_file.flush()
            except OSError as error:
                # A full log disk must not fail the deployment; the tail still reports.
                if not self._write_failed:
                    self._write_failed = True
                    _log.warning(
                        "script log write failed", path=str(self._script_log_path), error=str(error)
                    )
            if self._deployments_file is not None:
                # The AWS agent strips the entry in this log; tools split on the id.
                stamp = f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond // 1000:03d}"
                line = f"[{stamp}] [{self._deployment_id}]{entry.strip()}\n"
                self._write_deployments_log(self._deployments_file, line)

    def _write_deployments_log(self, log_file: SharedLogFile, line: str) -> None:
        try:
            log_file.write(line)
        except OSError as error:
            # The deployments log is a convenience copy; the script log is the record.
            _log.warning(
                "deployments log unavailable",
                path=str(log_file.path),
                error=error.strerror or str(error),
            )
            with contextlib.suppress(OSError):
                log_file.close()
            self._deployments_file = None
            self._deployments_log_path = None

    def _remember(self, entry: str) -> None:
        self._tail.append(entry)
        self._tail_characters += len(entry)
        while self._tail and self._tail_characters - len(self._tail[0]) >= LOG_TAIL_CHARACTERS:
            self._tail_characters -= len(self._tail.popleft())

    def _open_files_if_needed(self) -> None:
        if self._script_file is None:
            self._script_file = _open_for_append(self._script_log_path, "script log")
        if self._deployments_file is None and self._deployments_log_path is not None:
            # Opened (and created) by its first write; a failure there is a failed write.
            self._deployments_file = SharedLogFile(
                self._deployments_log_path, self._deployments_log_rotation
            )


def open_script_log(
    script_log_path: Path,
    deployment_id: str,
    deployments_log_path: Optional[Path],
    deployments_log_rotation: LogRotation = DEPLOYMENTS_LOG_ROTATION,
) -> ScriptLog:
    """A script log for one deployment; nothing touches the disk before the first entry."""
    return ScriptLog(script_log_path, deployment_id, deployments_log_path, deployments_log_rotation)


def _open_for_append(path: Path, what: str) -> TextIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Surrogates from undecodable file names must not stop the log.
        return path.open("a", encoding="utf-8", errors="backslashreplace")
    except OSError as error:
        raise LifecycleEventError(
            f"Cannot open the {what} {path}: {error.strerror or error}",
            error_code=ErrorCode.UNKNOWN_ERROR,
        ) from error
