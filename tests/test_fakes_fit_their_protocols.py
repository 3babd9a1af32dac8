"""The in-process fakes of ``tests/support/`` fit the Protocols the agent is typed against.

mypy (strict, on ``agent/``) checks that the agent's own implementations fit the seams
where they are passed: the botocore command service client where the daemon hands it to
the poll loop, the fetcher by source where DownloadBundle picks it. The fakes are checked
here with the same mypy, so that a fake cannot drift from the seam it stands in for: a
test run against a fake that no longer fits would show nothing about the agent.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.checkout import REPO

_ASSIGNMENTS = """\
from agent.command_poller.service_client import CommandServiceClient
from agent.revision.fetchers.revision_fetcher import RevisionFetcher
from tests.support.fake_command_service import FakeCommandService
from tests.support.fake_revision_fetcher import FakeRevisionFetcher

client: CommandServiceClient = FakeCommandService()
fetcher: RevisionFetcher = FakeRevisionFetcher()
"""


def test_the_fakes_fit_the_command_service_client_and_revision_fetcher_protocols(
    tmp_path: Path,
) -> None:
    check = tmp_path / "fakes_fit.py"
    check.write_text(_ASSIGNMENTS, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            # Only the assignments are judged; the modules they import are read for types.
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(check),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout
