"""Configuring structlog for the agent's programs.

Every event is one line: a timestamp, the level, the event text, then ``key=value``
fields, with ``deployment_id``, ``command`` and ``event`` bound through context
variables by the engine, so a person can ``grep deployment_id=d-ABC`` through the log.
Values that look like credentials are masked before rendering, wherever they came from.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from pathlib import Path
from typing import Any, MutableMapping, Optional, TextIO

import structlog

_SECRET_KEYS = re.compile(r"(token|secret|password|credential|authorization|signature)", re.I)
# Header values and query parameters that carry credentials, e.g. "Authorization: token abc".
_SECRET_VALUES = re.compile(r"(?i)(\b(?:token|bearer|x-amz-security-token)[ =:]+)[^\s&\"']+")


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
    """Mask fields whose name says they are secret, and token-shaped text in values."""
    for key, value in list(event.items()):
        if key != "event" and _SECRET_KEYS.search(key):
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = _SECRET_VALUES.sub(r"\1***", value)
    return event


def configure_logging(
    *, stream: Optional[TextIO] = None, verbose: bool = False, utc: bool = False
) -> None:
    """Send structured events, rendered as greppable lines, to ``stream`` (stderr by default)."""
    level = logging.DEBUG if verbose else logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            order_bound_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=utc),
            redact_secrets,
            structlog.dev.ConsoleRenderer(colors=False, sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


# The daemon's own log is kept to a bounded size on disk: five files of 10 MiB.
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5


def configure_file_logging(
    log_file: Path,
    *,
    verbose: bool = False,
    utc: bool = False,
    max_bytes: int = LOG_FILE_MAX_BYTES,
    backup_count: int = LOG_FILE_BACKUPS,
) -> None:
    """Send structured events to ``log_file`` (created with its folder), rotated by size.

    The same one-line rendering as :func:`configure_logging`; tracebacks of unexpected
    errors follow their line. Rotation goes through :mod:`logging`'s handler so every
    thread of the daemon writes through one lock.
    """
    level = logging.DEBUG if verbose else logging.INFO
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    target = logging.getLogger(f"codedeploy-agent.file.{log_file}")
    target.handlers = [handler]
    target.propagate = False
    target.setLevel(logging.DEBUG)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            order_bound_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=utc),
            redact_secrets,
            structlog.dev.ConsoleRenderer(colors=False, sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: target,
        cache_logger_on_first_use=False,
    )
