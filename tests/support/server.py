"""``codedeploy-server`` as a real process, for the self-hosted service's tests.

:class:`ServerProcess` writes a configuration under a test folder (data folder and master
key apart), runs ``codedeploy-server run`` on 127.0.0.1 port 0 and reads the URL from
its ready line; :class:`ServerFiles` are the paths of one server's configuration.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

VENV_BIN = Path(sys.executable).parent
SERVER_PROGRAM = str(VENV_BIN / "codedeploy-server")
READY_PREFIX = "listening on "


def free_loopback_port() -> int:
    """A port of 127.0.0.1 free now: for a server that must come back on the same port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_environment() -> Dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    environ.pop("NOTIFY_SOCKET", None)
    return environ


@dataclass
class ServerFiles:
    """Where one test server keeps its files."""

    base: Path

    @property
    def config(self) -> Path:
        return self.base / "server.yml"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def master_key(self) -> Path:
        return self.base / "keys" / "master.key"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def write_config(
        self, extra: str = "", database_url: Optional[str] = None, one_process: bool = True
    ) -> None:
        """``one_process``: the server runs one process unless ``extra`` says otherwise
        (tests of one behaviour need not fork copies; those of several processes set it)."""
        self.base.mkdir(parents=True, exist_ok=True)
        lines = [
            f"data_dir: {self.data_dir}",
            f"master_key_file: {self.master_key}",
            "key_cache_seconds: 1",
        ]
        if one_process and "server_processes:" not in extra:
            lines.append("server_processes: 1")
        if database_url:
            lines.append(f"database_url: '{database_url}'")
        self.config.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")

    def admin(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``codedeploy-server --config <ours> ARGUMENTS`` and wait for it."""
        completed = subprocess.run(
            [SERVER_PROGRAM, "--config", str(self.config), *arguments],
            capture_output=True,
            text=True,
            env=server_environment(),
            timeout=120,
            check=False,
        )
        if check and completed.returncode != 0:
            raise AssertionError(f"{arguments} failed: {completed.stderr}")
        return completed

    def create_operator(self, name: str = "operator") -> Dict[str, str]:
        document: Dict[str, str] = json.loads(self.admin("keys", "create-operator", name).stdout)
        return document


class ServerProcess:
    """``codedeploy-server run`` in the background: ``with ServerProcess(files) as server``."""

    def __init__(self, files: ServerFiles, extra_arguments: Sequence[str] = ()) -> None:
        self.files = files
        self.marker = f"codedeploy-server-test-{uuid.uuid4().hex}"
        self._extra = list(extra_arguments)
        self.process: Optional[subprocess.Popen[str]] = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> ServerProcess:
        log = self.files.log.open("a", encoding="utf-8")
        environ = {**server_environment(), "CODEDEPLOY_SERVER_TEST_MARKER": self.marker}
        self.process = subprocess.Popen(
            [
                SERVER_PROGRAM,
                "--config",
                str(self.files.config),
                "run",
                "--listen",
                "127.0.0.1:0",
                *self._extra,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=environ,
        )
        log.close()
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.process.stdout.readline()
        while not line.startswith(READY_PREFIX):
            if not line or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"server did not start: {self.files.log.read_text()}")
            line = self.process.stdout.readline()
        self.url = line[len(READY_PREFIX) :].strip()
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
