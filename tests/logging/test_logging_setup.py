"""Log lines: bound deployment fields in a fixed order, secrets masked."""

from __future__ import annotations

import io

import structlog

from agent.logging.setup import configure_logging


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
