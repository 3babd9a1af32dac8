"""The agent installed as the systemd service ``codedeploy-agent`` in a systemd box.

The repository's unit file goes to the box's ``/etc/systemd/system`` with one change: its
ExecStart runs the worktree's ``.venv/bin/codedeploy-agent`` (the box sees the real root
read-through) instead of ``/opt/codedeploy-agent-py/current/bin/codedeploy-agent``. The
configuration, the on-premises file, the environment files, the signer's CA and the
revisions are written into the box (its ``/tmp`` is its own, so pytest's folders are not
there); the agent polls the test's command service stub on the host's loopback, which the
box shares. Everything a test checks is read back through the box.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from tests.support.checkout import REPO
from tests.support.command_service import HOST, CommandServiceStub, queue_deployment
from tests.support.signing import SigningKit
from tests.support.systemd_box import SystemdBox
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until

UNIT = "codedeploy-agent.service"
UNIT_FILE = REPO / "systemd" / UNIT
INSTALLED_PROGRAM = "/opt/codedeploy-agent-py/current/bin/codedeploy-agent"
WORKTREE_PROGRAM = REPO / ".venv" / "bin" / "codedeploy-agent"
CONFIG_FILE = "/etc/codedeploy-agent/conf/codedeployagent.yml"
ON_PREMISES_FILE = "/etc/codedeploy-agent/conf/codedeploy.onpremises.yml"
AGENT_ENVIRONMENT_FILE = "/etc/codedeploy-agent/conf/environment"
SYSTEM_ENVIRONMENT_FILE = "/etc/environment"


def unit_text_running(program: Path) -> str:
    """The repository's unit file with ExecStart's program replaced by ``program``."""
    text = UNIT_FILE.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    starts = [n for n, line in enumerate(lines) if line.startswith("ExecStart=")]
    assert len(starts) == 1 and INSTALLED_PROGRAM in lines[starts[0]], starts
    lines[starts[0]] = lines[starts[0]].replace(INSTALLED_PROGRAM, str(program))
    return "".join(lines)


@dataclass(frozen=True)
class AgentService:
    """The agent's service in ``box``; its folders live under ``base`` (a path in the box)."""

    box: SystemdBox
    stub: CommandServiceStub
    base: str

    @property
    def log_file(self) -> str:
        return f"{self.base}/log/codedeploy-agent.log"

    def install(self, kit: SigningKit) -> None:
        """Writes the unit, the configuration, the CA and the on-premises file into the box."""
        self.box.write_file(f"{self.base}/ca-bundle.pem", kit.ca_bundle.read_text(encoding="ascii"))
        self.box.write_file(
            CONFIG_FILE,
            f":root_dir: '{self.base}/deployment-root'\n"
            f":log_dir: '{self.base}/log'\n"
            f":pid_dir: '{self.base}/run'\n"
            f":deploy_control_endpoint: '{self.stub.url}'\n"
            ":wait_between_runs: 0.2\n"
            ":wait_after_error: 1\n"
            ":http_read_timeout: 10\n"
            ":kill_agent_max_wait_time_seconds: 60\n"
            f":deployment_signer_ca_file: '{self.base}/ca-bundle.pem'\n"
            ":hook_kill_grace_seconds: 1\n",
        )
        self.write_on_premises_file()
        self.box.write_file(f"/etc/systemd/system/{UNIT}", unit_text_running(WORKTREE_PROGRAM))
        self.systemctl("daemon-reload")

    def write_on_premises_file(self) -> None:
        self.box.write_file(
            ON_PREMISES_FILE,
            f"region: us-east-1\niam_user_arn: {HOST}\n"
            "aws_access_key_id: AKIDONPREMISES000001\n"
            "aws_secret_access_key: on-premises-secret-not-real\n",
            mode=0o600,
        )

    def remove_on_premises_file(self) -> None:
        self.box.run(["rm", "-f", ON_PREMISES_FILE])

    def systemctl(self, *arguments: str, timeout: float = 120.0) -> str:
        done = self.box.systemctl(*arguments, timeout=timeout)
        assert done.returncode == 0, (arguments, done.stdout, done.stderr, self.box.diagnostics())
        return done.stdout

    def show(self, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", UNIT).strip()

    def status_text(self) -> str:
        """The STATUS line the agent last sent to systemd."""
        return self.show("StatusText")

    def journal(self) -> List[str]:
        """What the agent wrote to the journal (messages only, without prefixes)."""
        done = self.box.run(["journalctl", "--no-pager", "-o", "cat", "-u", UNIT])
        return done.stdout.splitlines()

    def wait_for_journal(self, text: str, timeout: float = 20.0) -> bool:
        """journald writes on its own time: wait for a line holding ``text``, bounded."""
        return wait_until(lambda: any(text in line for line in self.journal()), timeout=timeout)

    def wait_polling(self, timeout: float = 60.0) -> bool:
        """Wait until the agent polls, and until a long poll of an agent stopped before is
        over: the stub would hand that dead connection the next command queued. Two new
        polls do it: the second starts when the first has waited its time."""
        polls = len(self.stub.requests_for("PollHostCommand"))
        return wait_until(
            lambda: (
                self.status_text().startswith(f"polling {self.stub.url} as {HOST}")
                and len(self.stub.requests_for("PollHostCommand")) >= polls + 2
            ),
            timeout=timeout,
        )

    def main_pid(self) -> int:
        return int(self.show("MainPID"))

    def status_json(self) -> Dict[str, object]:
        """``codedeploy-agent status --json`` run in the box."""
        done = self.box.run(
            [str(WORKTREE_PROGRAM), "--config_file", CONFIG_FILE, "status", "--json"]
        )
        report = json.loads(done.stdout)
        assert isinstance(report, dict), done
        return report

    def read_log(self) -> str:
        return self.box.read_text(self.log_file) if self.box.exists(self.log_file) else ""

    def put_revision(
        self,
        host_folder: Path,
        name: str,
        *,
        events: Iterable[str],
        scripts: Dict[str, str],
        timeout: int = 60,
    ) -> str:
        """A revision made on the host (``host_folder``) and copied into the box; returns
        its folder in the box. Its hooks trace to ``<base>/trace.log``."""
        inside = f"{self.base}/revisions/{name}"
        made = make_revision(
            host_folder / name,
            Path(f"{self.base}/trace.log"),
            Path(f"{self.base}/www/{name}"),
            events=events,
            scripts=scripts,
            timeout=timeout,
        )
        self.box.copy_tree_in(made, inside)
        return inside

    def deploy(
        self,
        kit: SigningKit,
        host_folder: Path,
        deployment_id: str,
        scripts: Dict[str, str],
        *,
        timeout: int = 60,
    ) -> List[str]:
        """Queues a deployment whose revision (see :meth:`put_revision`) has ``scripts``:
        DownloadBundle, then those events; returns the host command ids."""
        revision = self.put_revision(
            host_folder, deployment_id, events=tuple(scripts), scripts=scripts, timeout=timeout
        )
        return queue_deployment(
            self.stub,
            deployment_id,
            kit.sign(spec_json(deployment_id, Path(revision))),
            commands=("DownloadBundle", *scripts),
        )

    def start_timed(self) -> float:
        """``systemctl start`` (which returns once the agent said READY=1); its seconds."""
        began = time.monotonic()
        self.systemctl("start", UNIT)
        return time.monotonic() - began

    def vm_rss_kib(self) -> Optional[int]:
        """The agent's resident memory as the kernel counts it (VmRSS of its main pid)."""
        status = self.box.read_text(f"/proc/{self.main_pid()}/status")
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None


def new_box_base() -> str:
    """A folder of the box's own for one module's agent (the overlay keeps it in the box)."""
    return f"/var/lib/codedeploy-unit-test-{uuid.uuid4().hex[:12]}"
