"""What the daemon costs a host: idle memory and CPU, and the overhead it adds per command.

Starts the command service stub (from the test suite) on loopback and ``codedeploy-agent
run`` as a subprocess against it, with a realistic long poll (the stub holds an empty poll
for ``--poll-wait`` seconds, ``http_read_timeout`` is above it, ``wait_between_runs`` 1).
It prints, measured in the same run:

- idle: the daemon's RSS after warm-up and its peak over the window, and its CPU use in
  percent of one core over ``--idle-seconds`` (targets: RSS < 45 MB, CPU < 0.5 %); a bare
  Python interpreter's RSS is printed beside it as the floor;
- per command: ``--commands`` single-command deployments whose only command is
  ApplicationStop running one hook script (``true``), each queued while the daemon waits
  in its long poll; the time from queueing to the completion the stub receives, minus
  the baseline (the same script run directly, as many times), is the agent's overhead
  (target: < 50 ms per command).

Usage: python benchmarks/daemon_bench.py [--idle-seconds 60] [--commands 20] [--poll-wait 20]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support_command_service import (  # noqa: E402
    CommandServiceStub,
    RecordedRequest,
)
from tests.support_signing import SigningKit, make_signing_kit  # noqa: E402

HOST = "arn:aws:iam::123456789012:user/bench-host"
GROUP = "bench-group"
MB = 1024 * 1024
IDLE_RSS_TARGET_MB = 45.0
IDLE_CPU_TARGET_PERCENT = 0.5
OVERHEAD_TARGET_MS = 50.0


class TimedStub(CommandServiceStub):
    """The stub, noting when each poll and each completion arrives."""

    def __init__(self, *, poll_wait: float, hang_seconds: float) -> None:
        super().__init__(poll_wait=poll_wait, hang_seconds=hang_seconds)
        self.arrivals = threading.Condition()
        self.polls: List[float] = []
        self.completed: Dict[str, float] = {}
        # Arrival of each operation, by the command (or deployment) it is about.
        self.arrived: Dict[Tuple[str, str], float] = {}

    def _record(self, request: RecordedRequest) -> None:
        now = time.monotonic()
        super()._record(request)
        with self.arrivals:
            if request.operation == "PollHostCommand":
                self.polls.append(now)
            elif request.operation == "PutHostCommandComplete":
                self.completed[str(request.body.get("HostCommandIdentifier"))] = now
            about = request.body.get("HostCommandIdentifier") or request.body.get(
                "DeploymentExecutionId"
            )
            self.arrived[(request.operation, str(about))] = now
            self.arrivals.notify_all()

    def wait_for_poll_after(self, moment: float, timeout: float = 60.0) -> bool:
        with self.arrivals:
            return self.arrivals.wait_for(
                lambda: any(p > moment for p in self.polls), timeout=timeout
            )

    def wait_for_completion(self, host_command: str, timeout: float = 60.0) -> Optional[float]:
        with self.arrivals:
            self.arrivals.wait_for(lambda: host_command in self.completed, timeout=timeout)
            return self.completed.get(host_command)


def write_revision(where: Path) -> Path:
    """A folder revision whose ApplicationStop runs one script that does nothing."""
    revision = where / "revision"
    (revision / "content").mkdir(parents=True)
    (revision / "content" / "index.html").write_text("bench\n", encoding="utf-8")
    (revision / "scripts").mkdir()
    script = revision / "scripts" / "stop.sh"
    script.write_text("#!/bin/sh\ntrue\n", encoding="utf-8")
    script.chmod(0o755)
    (revision / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nfiles:\n"
        f"  - source: content\n    destination: {where / 'www'}\n"
        "hooks:\n  ApplicationStop:\n    - location: scripts/stop.sh\n      timeout: 60\n",
        encoding="utf-8",
    )
    return revision


def spec_for(deployment_id: str, revision: Path) -> str:
    return json.dumps(
        {
            "DeploymentId": f"arn:aws:codedeploy:us-east-1:123456789012:deployment/{deployment_id}",
            "DeploymentGroupId": GROUP,
            "DeploymentGroupName": "bench",
            "ApplicationName": "bench-app",
            "Revision": {
                "RevisionType": "Local Directory",
                "LocalRevision": {"Location": str(revision), "BundleType": "directory"},
            },
            "AgentActionOverrides": {"AgentOverrides": {"FileExistsBehavior": "OVERWRITE"}},
        }
    )


def write_config(where: Path, stub: CommandServiceStub, kit: SigningKit, poll_wait: float) -> Path:
    config = where / "codedeployagent.yml"
    config.write_text(
        f":root_dir: '{where / 'deployment-root'}'\n"
        f":log_dir: '{where / 'log'}'\n"
        f":pid_dir: '{where / 'pid'}'\n"
        f":deploy_control_endpoint: '{stub.url}'\n"
        ":wait_between_runs: 1\n"
        ":wait_after_error: 1\n"
        f":http_read_timeout: {poll_wait + 10:g}\n"
        ":kill_agent_max_wait_time_seconds: 60\n"
        f":deployment_signer_ca_file: '{kit.ca_bundle}'\n"
        f":on_premises_config_file: '{where / 'no-onpremises.yml'}'\n",
        encoding="utf-8",
    )
    return config


def daemon_environment(where: Path) -> Dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")
    }
    env.update(
        AWS_REGION="us-east-1",
        AWS_HOST_IDENTIFIER=HOST,
        AWS_ACCESS_KEY_ID="AKIDBENCHMARK",
        AWS_SECRET_ACCESS_KEY="benchmark-secret",  # noqa: S106 (not a real key)
        AWS_CONFIG_FILE=str(where / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(where / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=str(REPO),
    )
    return env


def peak_rss_bytes(pid: int) -> int:
    """The kernel's high-water mark of the process's resident set (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def bare_interpreter_rss() -> int:
    """RSS of a Python interpreter that imports nothing: the floor of any Python daemon."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(0.5)
        return int(psutil.Process(child.pid).memory_info().rss)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


def measure_idle(process: psutil.Process, stub: TimedStub, seconds: float) -> None:
    if not stub.wait_for_poll_after(0.0, timeout=60):
        raise SystemExit("the daemon never polled; see its log")
    time.sleep(5.0)  # warm-up: imports done, first long polls settled
    rss_after_warmup = int(process.memory_info().rss)
    before = process.cpu_times()
    started = time.monotonic()
    polls_before = len(stub.polls)
    highest = rss_after_warmup
    while time.monotonic() - started < seconds:
        time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - started))))
        highest = max(highest, int(process.memory_info().rss))
    wall = time.monotonic() - started
    after = process.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    percent = 100.0 * cpu / wall
    floor = bare_interpreter_rss()
    print(f"idle window: {wall:.1f} s, {len(stub.polls) - polls_before} long polls")
    print(
        f"  RSS after warm-up: {rss_after_warmup / MB:.1f} MB, peak in window:"
        f" {highest / MB:.1f} MB, peak since start (VmHWM):"
        f" {peak_rss_bytes(process.pid) / MB:.1f} MB   target < {IDLE_RSS_TARGET_MB:g} MB"
        f" ({'met' if highest / MB < IDLE_RSS_TARGET_MB else 'MISSED'})"
    )
    print(f"  baseline: a bare Python interpreter: {floor / MB:.1f} MB")
    print(
        f"  CPU: {cpu * 1000:.0f} ms in {wall:.1f} s = {percent:.3f} % of one core"
        f"   target < {IDLE_CPU_TARGET_PERCENT:g} %"
        f" ({'met' if percent < IDLE_CPU_TARGET_PERCENT else 'MISSED'})"
    )


def hook_baseline_seconds(script: Path, runs: int) -> float:
    """Mean wall time of running the hook script directly, as the agent does (fork + exec)."""
    times: List[float] = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([str(script)], stdin=subprocess.DEVNULL, check=True)
        times.append(time.monotonic() - started)
    return statistics.mean(times)


def queue(
    stub: TimedStub, kit: SigningKit, deployment_id: str, revision: Path, command: str
) -> str:
    stub.set_specification(deployment_id, kit.sign(spec_for(deployment_id, revision)), "PKCS7/JSON")
    return str(stub.queue_command(HOST, command, deployment_id)["HostCommandIdentifier"])


def measure_overhead(stub: TimedStub, kit: SigningKit, revision: Path, count: int) -> None:
    # A first deployment makes the revision the group's last successful one, so each
    # later deployment's ApplicationStop runs its script.
    for command in ("DownloadBundle", "Install"):
        moment = time.monotonic()
        host_command = queue(stub, kit, "d-BENCHSETUP", revision, command)
        if stub.wait_for_completion(host_command) is None:
            raise SystemExit(f"setup command {command} did not complete; see the daemon log")
        stub.wait_for_poll_after(moment)
    latencies: List[float] = []
    phases: Dict[str, List[float]] = {"spec": [], "ack": [], "complete": []}
    for index in range(count):
        # Queue only once the daemon is back in its long poll, as a service would find it.
        with stub.arrivals:
            last = max(stub.completed.values())
        if not stub.wait_for_poll_after(last):
            raise SystemExit("the daemon stopped polling")
        time.sleep(0.05)
        queued = time.monotonic()
        host_command = queue(stub, kit, f"d-BENCH{index:04d}", revision, "ApplicationStop")
        done = stub.wait_for_completion(host_command)
        if done is None:
            raise SystemExit(f"command {index} did not complete; see the daemon log")
        latencies.append(done - queued)
        deployment_id = f"d-BENCH{index:04d}"
        with stub.arrivals:
            spec_at = stub.arrived[("GetDeploymentSpecification", deployment_id)]
            ack_at = stub.arrived[("PutHostCommandAcknowledgement", host_command)]
        phases["spec"].append(spec_at - queued)
        phases["ack"].append(ack_at - spec_at)
        phases["complete"].append(done - ack_at)
    statuses = [body["CommandStatus"] for body in stub.completions()]
    if any(status != "Succeeded" for status in statuses):
        raise SystemExit(f"some commands failed: {statuses}")
    baseline = hook_baseline_seconds(revision / "scripts" / "stop.sh", count)
    overheads = sorted((latency - baseline) * 1000 for latency in latencies)
    median = statistics.median(overheads)
    print(f"per command ({count} single-command ApplicationStop deployments, hook 'true'):")
    print(
        f"  queue-to-completion: median {statistics.median(latencies) * 1000:.1f} ms,"
        f" min {min(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    print(
        "  where it goes (medians): queued -> spec request"
        f" {statistics.median(phases['spec']) * 1000:.1f} ms, spec -> acknowledgement"
        f" {statistics.median(phases['ack']) * 1000:.1f} ms, acknowledgement -> completion"
        f" {statistics.median(phases['complete']) * 1000:.1f} ms (runs the hook)"
    )
    print(f"  baseline: the hook run directly: {baseline * 1000:.2f} ms (mean of {count})")
    print(
        f"  overhead: median {median:.1f} ms, p90 {overheads[int(0.9 * (len(overheads) - 1))]:.1f}"
        f" ms, max {overheads[-1]:.1f} ms   target < {OVERHEAD_TARGET_MS:g} ms"
        f" ({'met' if median < OVERHEAD_TARGET_MS else 'MISSED'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--poll-wait", type=float, default=20.0, help="stub long-poll seconds")
    parser.add_argument("--dir", default=None, help="where to put the agent's files")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="daemon-bench-", dir=args.dir) as folder:
        where = Path(folder)
        kit = make_signing_kit(where / "signing")
        revision = write_revision(where)
        stub = TimedStub(poll_wait=args.poll_wait, hang_seconds=5.0)
        stub.start()
        try:
            config = write_config(where, stub, kit, args.poll_wait)
            daemon = subprocess.Popen(
                [sys.executable, "-m", "agent.daemon", "--config_file", str(config), "run"],
                env=daemon_environment(where),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=where,
            )
            try:
                process = psutil.Process(daemon.pid)
                print(
                    f"daemon pid {daemon.pid}; stub long poll {args.poll_wait:g} s,"
                    f" http_read_timeout {args.poll_wait + 10:g} s, wait_between_runs 1 s"
                )
                measure_idle(process, stub, args.idle_seconds)
                measure_overhead(stub, kit, revision, args.commands)
                print(
                    f"  daemon RSS after the commands: {process.memory_info().rss / MB:.1f} MB,"
                    f" peak since start (VmHWM): {peak_rss_bytes(daemon.pid) / MB:.1f} MB"
                )
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait(timeout=10)
        finally:
            stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
