"""Configuring structlog for the agent's programs.

Every event is one line: a timestamp, the level, the event text, then ``key=value``
fields, with ``deployment_id``, ``command`` and ``event`` bound through context
variables by the engine, so a person can ``grep deployment_id=d-ABC`` through the log.
Values that look like credentials are masked before rendering, wherever they came from;
control characters in text (a hook's carriage returns and terminal escapes) are shown
escaped, so a line of the log is always one line and cannot repaint a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, MutableMapping, Optional, TextIO

import structlog

from agent.logging.printable import escape_control_characters
from agent.logging.shared_log_file import LogRotation, SharedLogFile

_SECRET_KEYS = re.compile(r"(token|secret|password|credential|authorization|signature)", re.I)
# Header values and query parameters that carry credentials, e.g. "Authorization: token abc".
_SECRET_VALUES = re.compile(r"(?i)(\b(?:token|bearer|x-amz-security-token)[ =:]+)[^\s&\"']+")


# What makes the console renderer show a text value as its repr().
_QUOTED_BY_RENDERER = frozenset({" ", "\t", "=", "\r", "\n", '"', "'"})

# The fields the engine binds, always last and in this order, so lines line up for grep.
# (The lifecycle event is bound as lifecycle_event: "event" is structlog's message key.)
_BOUND_FIELDS = ("deployment_id", "command", "lifecycle_event")


def order_bound_fields(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Move the bound deployment fields behind the others, in a fixed order.

    Context variables come back in no fixed order.
    """
    for key in _BOUND_FIELDS:
        if key in event:
            event[key] = event.pop(key)
    return event


def redact_secrets(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask fields whose name says they are secret, and token-shaped text in values.

    A yes/no or an absent value (``token_refreshed=True``, ``token=None``) carries no
    secret and is shown as it is.
    """
    for key, value in list(event.items()):
        if key != "event" and _SECRET_KEYS.search(key):
            if value is not None and not isinstance(value, bool):
                event[key] = "***"
        elif isinstance(value, str) and _may_carry_a_token(value):
            event[key] = _SECRET_VALUES.sub(r"\1***", value)
    return event


def _may_carry_a_token(value: str) -> bool:
    # Every pattern of _SECRET_VALUES names one of these: much cheaper than the pattern.
    lowered = value.lower()
    return "token" in lowered or "bearer" in lowered


def escape_control_text(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Show control characters of the event text and of text values escaped.

    The renderer already shows a value with a space, a quote, ``=`` or a line break as
    its ``repr()``, which escapes every unprintable character; escaping those again would
    double their backslashes, so only the other values (and the event text, which is
    never quoted) are escaped here.
    """
    for key, value in list(event.items()):
        if isinstance(value, str) and (key == "event" or _QUOTED_BY_RENDERER.isdisjoint(value)):
            event[key] = escape_control_characters(value)
    return event


def configure_logging(
    *, stream: Optional[TextIO] = None, verbose: bool = False, utc: bool = False
) -> None:
    """Send structured events, rendered as greppable lines, to ``stream`` (stderr by default)."""
    _configure_structlog(structlog.PrintLoggerFactory(stream or sys.stderr), verbose, utc)


def _configure_structlog(logger_factory: Callable[..., Any], verbose: bool, utc: bool) -> None:
    """The one rendering of every event, whatever it is written to."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            order_bound_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=utc),
            redact_secrets,
            escape_control_text,
            structlog.dev.ConsoleRenderer(colors=False, sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=logger_factory,
        cache_logger_on_first_use=False,
    )


# The daemon's own log is bounded in size and in age on disk: a new file at 10 MiB or
# after a day, five old files at most, none older than two weeks.
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5
LOG_FILE_ROTATE_SECONDS = 24 * 3600.0
LOG_FILE_MAX_AGE_SECONDS = 14 * 24 * 3600.0


class BoundedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Rotates at a size or after an interval, and drops old files by count and by age."""

    def __init__(
        self,
        log_file: Path,
        *,
        max_bytes: int = LOG_FILE_MAX_BYTES,
        backup_count: int = LOG_FILE_BACKUPS,
        rotate_seconds: float = LOG_FILE_ROTATE_SECONDS,
        max_age_seconds: float = LOG_FILE_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(log_file, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        self._rotate_seconds = rotate_seconds
        self._max_age_seconds = max_age_seconds
        self._clock = clock
        self._started = clock()
        self.remove_expired_backups_on_disk()

    def shouldRollover(self, record: logging.LogRecord) -> int:
        if self._clock() - self._started >= self._rotate_seconds:
            return 1
        return super().shouldRollover(record)

    def doRollover(self) -> None:
        super().doRollover()
        self._started = self._clock()
        self.remove_expired_backups_on_disk()

    def remove_expired_backups_on_disk(self) -> None:
        oldest = self._clock() - self._max_age_seconds
        for number in range(1, self.backupCount + 1):
            backup = f"{self.baseFilename}.{number}"
            with contextlib.suppress(FileNotFoundError):
                if os.stat(backup).st_mtime < oldest:
                    os.unlink(backup)


def configure_file_logging(
    log_file: Path,
    *,
    verbose: bool = False,
    utc: bool = False,
    max_bytes: int = LOG_FILE_MAX_BYTES,
    backup_count: int = LOG_FILE_BACKUPS,
    echo: Optional[TextIO] = None,
) -> None:
    """Send structured events to ``log_file`` (created with its folder), rotated by size
    and age (:class:`BoundedRotatingFileHandler`), and to ``echo`` too when given (the
    terminal of an operator who runs the daemon by hand).

    The same one-line rendering as :func:`configure_logging`; tracebacks of unexpected
    errors follow their line. Rotation goes through :mod:`logging`'s handler so every
    thread of the daemon writes through one lock.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = BoundedRotatingFileHandler(log_file, max_bytes=max_bytes, backup_count=backup_count)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handlers: List[logging.Handler] = [handler]
    if echo is not None:
        terminal = logging.StreamHandler(echo)
        terminal.setFormatter(logging.Formatter("%(message)s"))
        handlers.append(terminal)
    target = logging.getLogger(f"codedeploy-agent.file.{log_file}")
    target.handlers = handlers
    target.propagate = False
    target.setLevel(logging.DEBUG)
    _configure_structlog(lambda *_: target, verbose, utc)


class TeeLogger:
    """A structlog logger writing each rendered line to a stream and to a shared log file.

    The file is appended to by every process that logs there (``codedeploy-local`` runs
    may overlap), and rotated by :class:`~agent.logging.shared_log_file.SharedLogFile`. A
    file that cannot be written is reported once on the stream and then left alone. Lines
    can be held back for a while (:meth:`hold_lines`), then written or dropped: a request
    that ends up refused is one line, whatever its checks logged on the way.
    """

    def __init__(self, stream: TextIO, log_file: SharedLogFile) -> None:
        self._stream = stream
        self._log_file: Optional[SharedLogFile] = log_file
        self._held: Optional[List[str]] = None

    def hold_lines(self) -> None:
        """Keep every line from now on until :meth:`release_lines`."""
        self._held = []

    def release_lines(self, *, write: bool) -> None:
        """Stop holding lines; write those held (``write``) or drop them."""
        held, self._held = self._held or [], None
        if write:
            for message in held:
                self.msg(message)

    def msg(self, message: str) -> None:
        if self._held is not None:
            self._held.append(message)
            return
        print(message, file=self._stream, flush=True)
        if self._log_file is None:
            return
        try:
            self._log_file.write(message + "\n")
        except OSError as error:
            path, self._log_file = self._log_file.path, None
            print(
                f"cannot write the log file {path}: {error.strerror or error}; logging to"
                " the terminal only",
                file=self._stream,
                flush=True,
            )

    log = debug = info = warn = warning = fatal = failure = err = error = critical = msg
    exception = msg


# codedeploy-local.log: bounded like the daemon's own log (five old files of 10 MiB).
LOCAL_LOG_ROTATION = LogRotation(max_bytes=LOG_FILE_MAX_BYTES, files=LOG_FILE_BACKUPS + 1)


def configure_tee_logging(
    log_file: Path,
    *,
    stream: Optional[TextIO] = None,
    verbose: bool = False,
    utc: bool = False,
    rotation: LogRotation = LOCAL_LOG_ROTATION,
) -> TeeLogger:
    """Send structured events to ``stream`` (stderr by default) and append them to
    ``log_file``, shared with other processes and rotated by ``rotation``; returns the
    logger, which can hold lines back."""
    tee = TeeLogger(stream or sys.stderr, SharedLogFile(log_file, rotation))
    _configure_structlog(lambda *_: tee, verbose, utc)
    return tee
