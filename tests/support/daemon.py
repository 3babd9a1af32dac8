"""``codedeploy-agent`` as tests and benchmarks run it: a real process polling the command
service stub on loopback, with its configuration, deployment root, pid and log folders
under one folder of the caller's.

Its environment is the caller's without any ``AWS_*`` variable or service-manager socket,
plus the tests' host identity, region and (fake) keys, and shared AWS files that do not
exist, so nothing of the machine's own AWS set-up reaches it. ``source`` picks the agent's
source tree (``PYTHONPATH``): this checkout, or another one a benchmark compares with.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Dict, List, Mapping, Optional, Sequence, Union

from agent.daemon.pidfile import process_is_running, read_pid_file
from agent.deployment_root.layout import DeploymentRoot
from tests.support.checkout import REPO
from tests.support.command_service import HOST, REGION, CommandServiceStub
from tests.support.signing import SigningKit
from tests.support.traced_revisions import read_trace

Output = Union[int, IO[str], None]

# Not real keys: the stub checks that requests are signed, not by whom.
TEST_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
}


class AgentDaemon:
    """One agent's configuration and folders under ``base``, and the processes started.

    The defaults poll fast and give up fast (tests); a benchmark passes the timings of a
    real long poll. ``extra_config`` is appended to the configuration file as it is.
    Specifications are checked against the kit's CA unless ``check_signer_chain`` is
    False (the agent's default: integrity only).
    """

    def __init__(
        self,
        base: Path,
        stub: CommandServiceStub,
        kit: SigningKit,
        *,
        source: Path = REPO,
        host: str = HOST,
        credentials: Mapping[str, str] = TEST_CREDENTIALS,
        wait_between_runs: float = 0.05,
        wait_after_error: float = 0.05,
        http_read_timeout: float = 2.0,
        hook_kill_grace_seconds: Optional[float] = 1.0,
        extra_config: str = "",
        check_signer_chain: bool = True,
    ) -> None:
        self.base = base
        self.source = source
        self.host = host
        self.credentials = dict(credentials)
        self.config = base / "codedeployagent.yml"
        self.root = DeploymentRoot(base / "deployment-root")
        self.log_dir = base / "log"
        self.pid_file = base / "pid" / "codedeploy-agent.pid"
        self.log_file = self.log_dir / "codedeploy-agent.log"
        # Where traced revisions (tests/support/traced_revisions.py) write and install.
        self.trace = base / "trace.log"
        self.destination = base / "www"
        self.processes: List[subprocess.Popen[str]] = []
        grace = (
            f":hook_kill_grace_seconds: {hook_kill_grace_seconds:g}\n"
            if hook_kill_grace_seconds is not None
            else ""
        )
        self.config.write_text(
            f":root_dir: '{self.root.path}'\n"
            f":log_dir: '{self.log_dir}'\n"
            f":pid_dir: '{base / 'pid'}'\n"
            f":deploy_control_endpoint: '{stub.url}'\n"
            f":wait_between_runs: {wait_between_runs:g}\n"
            f":wait_after_error: {wait_after_error:g}\n"
            f":http_read_timeout: {http_read_timeout:g}\n"
            ":kill_agent_max_wait_time_seconds: 60\n"
            + (f":deployment_signer_ca_file: '{kit.ca_bundle}'\n" if check_signer_chain else "")
            + f":on_premises_config_file: '{self.on_premises_file}'\n"
            + grace
            + extra_config,
            encoding="utf-8",
        )

    @property
    def on_premises_file(self) -> Path:
        """The on-premises identity file the configuration names (absent unless written)."""
        return self.base / "no-onpremises.yml"

    @property
    def process(self) -> Optional[subprocess.Popen[str]]:
        """The process started last, if any."""
        return self.processes[-1] if self.processes else None

    def environment(
        self, extra: Optional[Dict[str, str]] = None, without: Sequence[str] = ()
    ) -> Dict[str, str]:
        """The daemon's environment; ``without`` drops some of the variables set here."""
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("AWS_") and name not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")
        }
        env.update(
            AWS_REGION=REGION,
            AWS_HOST_IDENTIFIER=self.host,
            AWS_CONFIG_FILE=str(self.base / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.base / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
            PYTHONPATH=str(self.source),
        )
        env.update(self.credentials)
        for name in without:
            del env[name]
        env.update(extra or {})
        return env

    def command(self, verb: str) -> List[str]:
        return [sys.executable, "-m", "agent.daemon", "--config_file", str(self.config), verb]

    def run(
        self,
        extra_env: Optional[Dict[str, str]] = None,
        *,
        without: Sequence[str] = (),
        stdout: Output = subprocess.PIPE,
        stderr: Output = subprocess.PIPE,
    ) -> subprocess.Popen[str]:
        """``codedeploy-agent run`` in the foreground, as a service manager starts it."""
        process = subprocess.Popen(
            self.command("run"),
            env=self.environment(extra_env, without),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=True,
            cwd=self.base,
        )
        self.processes.append(process)
        return process

    def manage(
        self, verb: str, *, config: Optional[Path] = None, json_output: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """An operator's verb (``start``, ``status``, ``stop``...) run to its end."""
        command = self.command(verb)
        if config is not None:
            command[4] = str(config)
        if json_output:
            command.insert(-1, "--json")
        return subprocess.run(
            command,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.base,
        )

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM to the process started last; its exit status (-9: it was still running
        after ``timeout`` and was killed)."""
        process = self.process
        assert process is not None, "no daemon was started"
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout=10)

    def cleanup(self) -> None:
        """Kill whatever is still running: the processes started and the pid file's."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        pid = read_pid_file(self.pid_file)
        if pid is not None and process_is_running(pid):
            os.kill(pid, signal.SIGKILL)

    def trace_lines(self) -> List[str]:
        return read_trace(self.trace)

    def logs(self) -> str:
        """Every log file of the agent, concatenated."""
        return "".join(
            path.read_text(encoding="utf-8", errors="replace")
            for path in sorted(self.log_dir.glob("*.log"))
        )
