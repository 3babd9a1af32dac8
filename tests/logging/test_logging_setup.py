"""Log lines: bound deployment fields in a fixed order, secrets masked."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import structlog

from agent.logging.setup import BoundedRotatingFileHandler, configure_logging


def test_bound_fields_come_last_in_a_fixed_order_and_secrets_are_masked() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    log = structlog.get_logger("test")
    try:
        for order in (("command", "deployment_id"), ("deployment_id", "command")):
            values = {"command": "AfterInstall", "deployment_id": "d-ABC"}
            bound = {k: values[k] for k in order}
            # The lifecycle event is bound first here, unlike in the engine.
            with structlog.contextvars.bound_contextvars(lifecycle_event="AfterInstall", **bound):
                log.info("running scripts", scripts=2, github_token="ghp_secret")
    finally:
        structlog.reset_defaults()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "running scripts" in line
        assert line.endswith(
            "deployment_id=d-ABC command=AfterInstall lifecycle_event=AfterInstall"
        )
        assert "scripts=2" in line
        assert "ghp_secret" not in line and "github_token=***" in line


def test_log_files_rotate_by_size_and_by_age_and_old_ones_go(tmp_path: Path) -> None:
    now = [1_000_000.0]
    log_file = tmp_path / "agent.log"
    handler = BoundedRotatingFileHandler(
        log_file,
        max_bytes=10_000,
        backup_count=3,
        rotate_seconds=3600,
        max_age_seconds=7200,
        clock=lambda: now[0],
    )
    logger = logging.getLogger(f"test-rotation-{tmp_path}")
    logger.handlers = [handler]
    logger.propagate = False
    try:
        logger.warning("first")
        now[0] += 3600  # an hour later: a new file, whatever its size
        logger.warning("second")
        assert (tmp_path / "agent.log.1").read_text() == "first\n"
        assert log_file.read_text() == "second\n"
        # Make the first file older than the age bound: it goes at the next rollover,
        # although the count bound (3) would keep it.
        os.utime(tmp_path / "agent.log.1", (now[0] - 10_000, now[0] - 10_000))
        logger.warning("x" * 20_000)  # over the size: rolled over before it is written
        assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.log", "agent.log.1"]
        assert (tmp_path / "agent.log.1").read_text() == "second\n"
        assert log_file.read_text().startswith("xxx")
    finally:
        handler.close()


def test_a_yes_or_no_under_a_secret_sounding_key_is_shown() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    log = structlog.get_logger("test")
    try:
        log.info("refreshed", token_refreshed=True, imds_token=False, session_token=None)
        log.info("secret", session_token="abc123", password=1234)
    finally:
        structlog.reset_defaults()
    first, second = stream.getvalue().splitlines()
    assert "token_refreshed=True" in first and "imds_token=False" in first
    assert "session_token=None" in first
    assert "abc123" not in second and "session_token=***" in second
    assert "1234" not in second and "password=***" in second


def test_control_characters_are_shown_escaped_in_every_value_and_the_event() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    log = structlog.get_logger("test")
    try:
        log.info(
            "hook said\r\x1b[2J",
            bare="a\x1b]0;title\x07b",
            spaced="clear \x1b[2J now",
            c1="\x9b31m",
            bidi="abc\u202edef",
        )
    finally:
        structlog.reset_defaults()
    [line] = stream.getvalue().splitlines()
    assert not any(ch in line for ch in "\r\x1b\x07\x9b\u202e")
    assert "hook said\\r\\x1b[2J" in line
    assert "bare=a\\x1b]0;title\\x07b" in line
    assert "spaced='clear \\x1b[2J now'" in line
    assert "c1=\\x9b31m" in line and "bidi=abc\\u202edef" in line
