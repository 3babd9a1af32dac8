"""The daemon's own log file: one line per event, bounded in size by rotation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.checkout import REPO

PROGRAM = """
import sys
from pathlib import Path
import structlog
from agent.logging.setup import configure_file_logging

configure_file_logging(Path(sys.argv[1]), max_bytes=2000, backup_count=2)
log = structlog.get_logger("test")
with structlog.contextvars.bound_contextvars(deployment_id="d-ROTATE001"):
    for number in range(200):
        log.info("event", number=number, aws_secret_access_key="hidden-value")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("unexpected failure")
"""


def test_the_log_rotates_within_its_bounds_and_keeps_secrets_out(tmp_path: Path) -> None:
    log_file = tmp_path / "log" / "codedeploy-agent.log"
    subprocess.run([sys.executable, "-c", PROGRAM, str(log_file)], check=True, cwd=REPO, timeout=60)
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files == ["codedeploy-agent.log", "codedeploy-agent.log.1", "codedeploy-agent.log.2"]
    assert all(p.stat().st_size <= 2500 for p in log_file.parent.iterdir())
    text = log_file.read_text(encoding="utf-8")
    assert "number=199" in text and "deployment_id=d-ROTATE001" in text
    assert "hidden-value" not in text
    assert "Traceback" in text and "ValueError: boom" in text
