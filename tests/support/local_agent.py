"""``codedeploy-local`` as the tests run it: a real subprocess with its own configuration
file and deployment root under the test's tmp folder, run to the end (:meth:`LocalAgent.run`)
or started to be signalled or raced (:meth:`LocalAgent.start`)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence, Union

Output = Union[int, IO[str], None]


@dataclass(frozen=True)
class LocalRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def deployment_dir(self) -> Path:
        first = self.stdout.splitlines()[0]
        prefix = "Starting to execute deployment from within folder "
        assert first.startswith(prefix), self.stdout
        return Path(first[len(prefix) :])


@dataclass(frozen=True)
class LocalAgent:
    """A codedeploy-local with its own configuration and deployment root under ``base``."""

    base: Path

    @classmethod
    def configured(cls, base: Path, *, root: Optional[Path] = None) -> LocalAgent:
        """A new ``base`` folder with a configuration: the deployment root (``root``, or
        ``base/deployment-root``), the log folder in ``base``, a 1 s hook kill grace."""
        base.mkdir()
        agent = cls(base)
        agent.config.write_text(
            f":root_dir: '{root or agent.root}'\n:log_dir: '{base / 'log'}'\n"
            ":hook_kill_grace_seconds: 1\n",
            encoding="utf-8",
        )
        return agent

    @property
    def root(self) -> Path:
        return self.base / "deployment-root"

    @property
    def config(self) -> Path:
        return self.base / "codedeployagent.yml"

    def command(self, *arguments: str, config: Optional[Path] = None) -> List[str]:
        """The program's argument list with this agent's (or ``config``) configuration."""
        chosen = self.config if config is None else config
        return [sys.executable, "-m", "agent.local_deployment", "-c", str(chosen), *arguments]

    def run(
        self,
        *arguments: str,
        env: Optional[Dict[str, str]] = None,
        timeout: float = 120,
        prefix: Sequence[str] = (),
    ) -> LocalRun:
        """Run one deployment to its end; ``prefix`` runs the program under another one
        (``unshare ...``)."""
        completed = subprocess.run(
            [*prefix, *self.command(*arguments)],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            check=False,
            cwd=self.base,
        )
        return LocalRun(completed.returncode, completed.stdout, completed.stderr)

    def start(
        self,
        *arguments: str,
        config: Optional[Path] = None,
        stdout: Output = subprocess.PIPE,
        stderr: Output = subprocess.PIPE,
    ) -> subprocess.Popen[str]:
        """Start a deployment and return at once; the caller waits for it (or kills it)."""
        return subprocess.Popen(
            self.command(*arguments, config=config),
            stdout=stdout,
            stderr=stderr,
            text=True,
            cwd=self.base,
        )
