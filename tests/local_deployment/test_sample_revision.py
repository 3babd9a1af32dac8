"""The sample revision in hooks/ deploys, starts, validates and is stopped by the next one.

This is what the README's quick start runs; the test keeps it working.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import urllib.request
from pathlib import Path

from tests.support.checkout import REPO
from tests.support.local_agent import LocalAgent

PIDFILE = Path("/tmp/codedeploy-sample/run/server.pid")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sample_revision_deploys_twice(local_agent: LocalAgent) -> None:
    env = {"SAMPLE_APP_PORT": str(_free_port())}
    arguments = ("--bundle-location", str(REPO / "hooks"), "--file-exists-behavior", "OVERWRITE")
    try:
        first = local_agent.run(*arguments, env=env)
        assert first.returncode == 0, first.stderr
        first_pid = int(PIDFILE.read_text())
        second = local_agent.run(*arguments, env=env)
        assert second.returncode == 0, second.stderr
        # The second deployment's ApplicationStop (the first revision's stop.sh) stopped the
        # first server; a new one answers with the second deployment's id.
        log = (second.deployment_dir / "logs/scripts.log").read_text()
        assert f"stopped server {first_pid}" in log
        url = f"http://127.0.0.1:{env['SAMPLE_APP_PORT']}/health"
        with urllib.request.urlopen(url, timeout=5) as reply:
            answer = json.load(reply)
        assert answer["release"] == second.deployment_dir.name
        assert os.stat("/tmp/codedeploy-sample/app/server.py").st_mode & 0o777 == 0o755
    finally:
        if PIDFILE.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(PIDFILE.read_text()), signal.SIGTERM)
            PIDFILE.unlink()
