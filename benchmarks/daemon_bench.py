"""What the daemon costs a host: idle memory and CPU, and the overhead it adds per command.

Starts the command service stub (from the test suite) on loopback and ``codedeploy-agent
run`` as a subprocess against it, with a realistic long poll (the stub holds an empty poll
for ``--poll-wait`` seconds, ``http_read_timeout`` is above it, ``wait_between_runs`` 1).
It prints, measured in the same run:

- idle: the daemon's RSS after warm-up and its peak over the window, and its CPU use in
  percent of one core over ``--idle-seconds`` (targets: RSS < 45 MB, CPU < 0.5 %); a bare
  Python interpreter's RSS is printed beside it as the floor;
- per command: deployments of three commands (BeforeBlockTraffic, AfterBlockTraffic,
  ApplicationStop: each fetches the same signed specification and runs one hook script,
  ``true``, from the last successful revision), each command queued while the daemon waits
  in its long poll; the time from queueing to the completion the stub receives, minus the
  baseline (the same script run directly, as many times), is the agent's overhead
  (target: median < 15 ms per command), shown for all commands, for the first of each
  deployment (its specification verified by openssl) and for the later ones, with where
  the time goes as the stub sees it, the daemon's CPU per command (steadier than wall
  time on a busy host) and how many connections it opened to the stub (one is right).
- DownloadBundle of a small S3 bundle (``--s3-downloads``, 0 to skip): a tgz of a few KB
  in an S3 server on loopback (SeaweedFS when its ``weed`` binary is installed, else
  moto), deployed again and again by another daemon (ApplicationStop, DownloadBundle and
  Install, the start of an in-place deployment: DownloadBundle finds the specification
  verified by the command before it), the time from queueing DownloadBundle to its
  completion (target:
  median < 40 ms after the first, which may build the S3 client), against the same run's
  floor: a warm boto3 client's GET of the object plus ``tarfile`` extracting it, in this
  process.

``--baseline SOURCE`` runs a second daemon from another source tree of the agent (for
example ``git archive main agent | tar -x -C /tmp/base``) beside this tree's, each with its
own stub, commands taking turns, so that both figures come from the same run on the same
load.

The daemons check each specification's signer chain against the test CA (a
``deployment_signer_ca_file``); ``--integrity-only`` runs them with the agent's default
instead (the signature's integrity checked, the signer logged).

Usage: python benchmarks/daemon_bench.py [--idle-seconds 60] [--commands 21] [--poll-wait 20]
       [--s3-downloads 15] [--baseline SOURCE] [--integrity-only]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.command_service import CommandServiceStub, RecordedRequest  # noqa: E402
from tests.support.daemon import AgentDaemon  # noqa: E402
from tests.support.signing import SigningKit, make_signing_kit  # noqa: E402
from tests.support.traced_revisions import spec_json  # noqa: E402

HOST = "arn:aws:iam::123456789012:user/bench-host"
GROUP = "bench-group"
MB = 1024 * 1024
IDLE_RSS_TARGET_MB = 45.0
IDLE_CPU_TARGET_PERCENT = 0.5
OVERHEAD_TARGET_MS = 15.0


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


HOOKED_EVENTS = ("BeforeBlockTraffic", "AfterBlockTraffic", "ApplicationStop")


def write_revision(where: Path) -> Path:
    """A folder revision whose events before DownloadBundle each run a script that does
    nothing (they run the last successful revision's scripts)."""
    revision = where / "revision"
    (revision / "content").mkdir(parents=True)
    (revision / "content" / "index.html").write_text("bench\n", encoding="utf-8")
    (revision / "scripts").mkdir()
    script = revision / "scripts" / "stop.sh"
    script.write_text("#!/bin/sh\ntrue\n", encoding="utf-8")
    script.chmod(0o755)
    hooks = "".join(
        f"  {event}:\n    - location: scripts/stop.sh\n      timeout: 60\n"
        for event in HOOKED_EVENTS
    )
    (revision / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nfiles:\n"
        f"  - source: content\n    destination: {where / 'www'}\n"
        f"hooks:\n{hooks}",
        encoding="utf-8",
    )
    return revision


def spec_for(deployment_id: str, revision: Path) -> str:
    return spec_json(
        deployment_id,
        revision,
        group_id=GROUP,
        DeploymentGroupName="bench",
        ApplicationName="bench-app",
    )


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


@dataclass
class Agent:
    """One daemon under test (this tree's, or the baseline's), with its own stub and folder."""

    label: str
    source: Path
    where: Path
    stub: TimedStub
    revision: Path
    daemon: Optional[AgentDaemon] = None
    latencies: List[float] = field(default_factory=list)
    first: List[float] = field(default_factory=list)  # the first command of each deployment
    later: List[float] = field(default_factory=list)
    phases: Dict[str, List[float]] = field(
        default_factory=lambda: {"spec": [], "ack": [], "complete": []}
    )
    cpu_at_start: Tuple[float, float] = (0.0, 0.0)  # (own, children's) before the commands

    @property
    def process(self) -> psutil.Process:
        assert self.daemon is not None and self.daemon.process is not None
        return psutil.Process(self.daemon.process.pid)

    def start(self, kit: SigningKit, poll_wait: float, **daemon_options: Any) -> None:
        """Start the stub and the daemon; ``daemon_options`` go to :class:`AgentDaemon`."""
        self.stub.start()
        self.daemon = AgentDaemon(
            self.where,
            self.stub,
            kit,
            source=self.source,
            host=HOST,
            wait_between_runs=1,
            wait_after_error=1,
            http_read_timeout=poll_wait + 10,
            hook_kill_grace_seconds=None,
            **daemon_options,
        )
        self.daemon.run(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        self.stub.stop()


def measure_idle(agents: List[Agent], seconds: float) -> None:
    for agent in agents:
        if not agent.stub.wait_for_poll_after(0.0, timeout=60):
            raise SystemExit(f"the {agent.label} daemon never polled; see its log")
    time.sleep(5.0)  # warm-up: imports done, first long polls settled
    processes = [agent.process for agent in agents]
    after_warmup = [int(process.memory_info().rss) for process in processes]
    highest = list(after_warmup)
    before = [process.cpu_times() for process in processes]
    polls_before = [len(agent.stub.polls) for agent in agents]
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - started))))
        highest = [max(h, int(p.memory_info().rss)) for h, p in zip(highest, processes)]
    wall = time.monotonic() - started
    floor = bare_interpreter_rss()
    print(f"idle window: {wall:.1f} s (the daemons idle side by side)")
    for index, agent in enumerate(agents):
        after = processes[index].cpu_times()
        cpu = (after.user - before[index].user) + (after.system - before[index].system)
        percent = 100.0 * cpu / wall
        rss = highest[index] / MB
        print(
            f"  {agent.label}: {len(agent.stub.polls) - polls_before[index]} long polls;"
            f" RSS after warm-up {after_warmup[index] / MB:.1f} MB, peak in window {rss:.1f} MB,"
            f" VmHWM {peak_rss_bytes(processes[index].pid) / MB:.1f} MB"
            f" (target < {IDLE_RSS_TARGET_MB:g} MB: {'met' if rss < IDLE_RSS_TARGET_MB else 'MISSED'});"
            f" CPU {cpu * 1000:.0f} ms = {percent:.3f} % of one core"
            f" (target < {IDLE_CPU_TARGET_PERCENT:g} %:"
            f" {'met' if percent < IDLE_CPU_TARGET_PERCENT else 'MISSED'})"
        )
    print(f"  baseline: a bare Python interpreter: {floor / MB:.1f} MB")


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


def set_up(agent: Agent, kit: SigningKit) -> None:
    """A first deployment makes the revision the group's last successful one, so each
    later deployment's first events run its scripts."""
    for command in ("DownloadBundle", "Install"):
        moment = time.monotonic()
        host_command = queue(agent.stub, kit, "d-BENCHSETUP", agent.revision, command)
        if agent.stub.wait_for_completion(host_command) is None:
            raise SystemExit(f"{agent.label}: setup command {command} did not complete")
        agent.stub.wait_for_poll_after(moment)


def run_one_command(agent: Agent, deployment_id: str, command: str, position: int) -> None:
    """Queue one command once the daemon is back in its long poll, as a service would find
    it, and note how long it took and where the time went."""
    stub = agent.stub
    with stub.arrivals:
        last = max(stub.completed.values())
    if not stub.wait_for_poll_after(last):
        raise SystemExit(f"the {agent.label} daemon stopped polling")
    time.sleep(0.05)
    queued = time.monotonic()
    host_command = str(stub.queue_command(HOST, command, deployment_id)["HostCommandIdentifier"])
    done = stub.wait_for_completion(host_command)
    if done is None:
        raise SystemExit(f"{agent.label}: {command} of {deployment_id} did not complete")
    agent.latencies.append(done - queued)
    (agent.first if position == 0 else agent.later).append(done - queued)
    with stub.arrivals:
        spec_at = stub.arrived[("GetDeploymentSpecification", deployment_id)]
        ack_at = stub.arrived[("PutHostCommandAcknowledgement", host_command)]
    if position == 0:
        agent.phases["spec"].append(spec_at - queued)
        agent.phases["ack"].append(ack_at - spec_at)
    agent.phases["complete"].append(done - ack_at)


def cpu_seconds(agent: Agent) -> Tuple[float, float]:
    """The daemon's CPU time so far: its own, and its waited-for children's (the hooks)."""
    times = agent.process.cpu_times()
    return times.user + times.system, times.children_user + times.children_system


def print_cpu_per_command(agent: Agent, commands: int) -> None:
    """CPU per command: less sensitive than wall time to what else runs on the host."""
    own, children = cpu_seconds(agent)
    print(
        f"    CPU per command: {(own - agent.cpu_at_start[0]) / commands * 1000:.1f} ms in the"
        f" daemon, {(children - agent.cpu_at_start[1]) / commands * 1000:.1f} ms in its hooks"
    )


def measure_overhead(agents: List[Agent], kit: SigningKit, count: int) -> None:
    for agent in agents:
        set_up(agent, kit)
        agent.cpu_at_start = cpu_seconds(agent)
    deployments = -(-count // len(HOOKED_EVENTS))
    for index in range(deployments):
        # Turns alternate, and who goes first too, so load on the host hits all alike.
        order = agents if index % 2 == 0 else list(reversed(agents))
        for agent in order:
            deployment_id = f"d-BENCH{index:04d}"
            agent.stub.set_specification(
                deployment_id, kit.sign(spec_for(deployment_id, agent.revision)), "PKCS7/JSON"
            )
            for position, event in enumerate(HOOKED_EVENTS):
                run_one_command(agent, deployment_id, event, position)
    baseline = hook_baseline_seconds(agents[0].revision / "scripts" / "stop.sh", count)
    print(
        f"per command ({deployments} deployments of {len(HOOKED_EVENTS)} commands,"
        f" {', '.join(HOOKED_EVENTS)}, each running the hook 'true'; turns alternate):"
    )
    print(f"  baseline: the hook run directly: {baseline * 1000:.2f} ms (mean of {count})")
    for agent in agents:
        statuses = [body["CommandStatus"] for body in agent.stub.completions()]
        if any(status != "Succeeded" for status in statuses):
            raise SystemExit(f"{agent.label}: some commands failed: {statuses}")
        print_overhead(agent, baseline)
        print_cpu_per_command(agent, len(agent.latencies))
        print_connections(agent)


def print_connections(agent: Agent) -> None:
    """How many connections the daemon opened to its stub for all its calls: one when it
    keeps its connection, as it should (a new one per call would add a handshake each)."""
    print(
        f"    connections to the command service: {agent.stub.connections_accepted}"
        f" for {len(agent.stub.requests)} calls"
    )


def _ms(values: List[float], baseline: float = 0.0) -> float:
    return (statistics.median(values) - baseline) * 1000


def print_overhead(agent: Agent, baseline: float) -> None:
    overheads = sorted((latency - baseline) * 1000 for latency in agent.latencies)
    median = statistics.median(overheads)
    print(f"  {agent.label}:")
    print(
        f"    overhead: median {median:.1f} ms, p90 {overheads[int(0.9 * (len(overheads) - 1))]:.1f}"
        f" ms, max {overheads[-1]:.1f} ms   target < {OVERHEAD_TARGET_MS:g} ms"
        f" ({'met' if median < OVERHEAD_TARGET_MS else 'MISSED'});"
        f" first command of a deployment {_ms(agent.first, baseline):.1f} ms,"
        f" later ones {_ms(agent.later, baseline):.1f} ms"
    )
    print(
        "    where it goes (medians): queued -> spec request"
        f" {_ms(agent.phases['spec']):.1f} ms, spec -> acknowledgement (verification)"
        f" {_ms(agent.phases['ack']):.1f} ms (first commands), acknowledgement -> completion"
        f" {_ms(agent.phases['complete']):.1f} ms (runs the hook)"
    )
    print(
        f"    RSS after the commands: {agent.process.memory_info().rss / MB:.1f} MB,"
        f" VmHWM {peak_rss_bytes(agent.process.pid) / MB:.1f} MB"
    )


# DownloadBundle of a small S3 bundle: its own daemons, stubs and S3 server.

S3_BUCKET = "bench-bundles"
S3_KEY = "small-app.tgz"
S3_REGION = "us-east-1"
S3_DOWNLOAD_TARGET_MS = 40.0


@dataclass(frozen=True)
class LoopbackS3:
    label: str
    endpoint: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        import boto3  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )


@contextlib.contextmanager
def loopback_s3(where: Path) -> Iterator[LoopbackS3]:
    """SeaweedFS on 127.0.0.1 when its binary is installed (a real store that checks
    signatures, in a process of its own), else moto's server in this process."""
    from tests.support.s3_servers import seaweedfs_s3_server, weed_binary

    if weed_binary() is not None:
        with seaweedfs_s3_server(where / "seaweedfs") as server:
            yield LoopbackS3("SeaweedFS", server.endpoint, server.access_key, server.secret_key)
        return
    from tests.support.s3_servers import TEST_CREDENTIALS, moto_s3_server

    with moto_s3_server() as endpoint:
        key, secret = TEST_CREDENTIALS.access_key, TEST_CREDENTIALS.secret_key
        yield LoopbackS3("moto (in this process)", endpoint, key, secret)


def small_s3_bundle(destination: Path) -> bytes:
    """A tgz of a few KB: an appspec installing ``content/`` to ``destination``, a few
    small files and a script."""
    files: Dict[str, bytes] = {
        "appspec.yml": (
            "version: 0.0\nos: linux\nfiles:\n"
            f"  - source: content\n    destination: {destination}\n"
        ).encode(),
        "scripts/start.sh": b"#!/bin/sh\ntrue\n",
    }
    for index in range(8):
        files[f"content/page{index}.html"] = os.urandom(384).hex().encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mode = 0o755 if name.endswith(".sh") else 0o644
            member.mtime = int(time.time())
            archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def s3_spec_for(deployment_id: str, etag: str) -> str:
    document = json.loads(spec_for(deployment_id, Path("/unused")))
    document["Revision"] = {
        "RevisionType": "S3",
        "S3Revision": {"Bucket": S3_BUCKET, "Key": S3_KEY, "BundleType": "tgz", "ETag": etag},
    }
    return json.dumps(document)


def start_s3_daemon(agent: Agent, kit: SigningKit, poll_wait: float, s3: LoopbackS3) -> None:
    """``agent``'s daemon, its S3 requests going to ``s3`` with that server's keys (the
    stub does not check signatures)."""
    agent.start(
        kit,
        poll_wait,
        credentials={"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key},
        extra_config=f":s3_endpoint_override: '{s3.endpoint}'\n",
    )


@dataclass
class S3Downloads:
    """One daemon's DownloadBundle figures, in seconds."""

    first: float = 0.0
    later: List[float] = field(default_factory=list)  # queued -> completion
    work: List[float] = field(default_factory=list)  # acknowledgement -> completion
    cpu: List[float] = field(default_factory=list)  # the daemon's own CPU, queued -> completion


def deploy_from_s3(
    agent: Agent, kit: SigningKit, deployment_id: str, etag: str
) -> Tuple[float, float, float]:
    """ApplicationStop, DownloadBundle and Install of one deployment, each queued once the
    daemon is back in its long poll; returns DownloadBundle's seconds from queueing to
    completion, from acknowledgement to completion, and the daemon's CPU seconds in
    between."""
    stub = agent.stub
    stub.set_specification(deployment_id, kit.sign(s3_spec_for(deployment_id, etag)), "PKCS7/JSON")
    figures = (0.0, 0.0, 0.0)
    for command in ("ApplicationStop", "DownloadBundle", "Install"):
        with stub.arrivals:
            last = max(stub.completed.values(), default=0.0)
        if not stub.wait_for_poll_after(last):
            raise SystemExit(f"the {agent.label} daemon stopped polling")
        time.sleep(0.05)
        cpu_before = agent.process.cpu_times()
        queued = time.monotonic()
        host_command = str(
            stub.queue_command(HOST, command, deployment_id)["HostCommandIdentifier"]
        )
        done = stub.wait_for_completion(host_command)
        if done is None:
            raise SystemExit(f"{agent.label}: {command} of {deployment_id} did not complete")
        if command == "DownloadBundle":
            cpu_after = agent.process.cpu_times()
            cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
            with stub.arrivals:
                ack_at = stub.arrived[("PutHostCommandAcknowledgement", host_command)]
            figures = (done - queued, done - ack_at, cpu)
    statuses = {body["CommandStatus"] for body in stub.completions()}
    if statuses != {"Succeeded"}:
        raise SystemExit(f"{agent.label}: some commands failed: {statuses}")
    return figures


def get_and_extract_seconds(client: Any, where: Path) -> float:
    """The floor: a warm client's GET of the bundle, extracted by ``tarfile``."""
    target = Path(tempfile.mkdtemp(prefix="extract-", dir=where))
    started = time.monotonic()
    body = client.get_object(Bucket=S3_BUCKET, Key=S3_KEY)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        archive.extractall(target, filter="data")
    took = time.monotonic() - started
    shutil.rmtree(target)
    return took


def measure_s3_downloads(
    sources: List[Tuple[str, Path]], kit: SigningKit, folder: Path, count: int, poll_wait: float
) -> None:
    """``count`` deployments of a small S3 bundle per daemon, turns alternating, with the
    floor measured between them."""
    with loopback_s3(folder) as s3:
        client = s3.client()
        client.create_bucket(Bucket=S3_BUCKET)
        bundle = small_s3_bundle(folder / "www-s3")
        etag = str(client.put_object(Bucket=S3_BUCKET, Key=S3_KEY, Body=bundle)["ETag"])
        agents: List[Agent] = []
        for label, source in sources:
            where = folder / f"s3-{label.replace(' ', '-')}"
            where.mkdir()
            stub = TimedStub(poll_wait=poll_wait, hang_seconds=5.0)
            agents.append(Agent(label, source, where, stub, where))
        figures = {agent.label: S3Downloads() for agent in agents}
        try:
            for agent in agents:
                start_s3_daemon(agent, kit, poll_wait, s3)
            for agent in agents:
                if not agent.stub.wait_for_poll_after(0.0):
                    raise SystemExit(f"the {agent.label} daemon never polled")
                figures[agent.label].first = deploy_from_s3(agent, kit, "d-S3BENCH00", etag)[0]
            get_and_extract_seconds(client, folder)  # the floor's client warms up too
            floors: List[float] = []
            for index in range(1, count):
                order = agents if index % 2 == 0 else list(reversed(agents))
                for agent in order:
                    took, work, cpu = deploy_from_s3(agent, kit, f"d-S3BEN{index:04d}", etag)
                    mine = figures[agent.label]
                    mine.later.append(took)
                    mine.work.append(work)
                    mine.cpu.append(cpu)
                floors.append(get_and_extract_seconds(client, folder))
            report_s3_downloads(figures, floors, len(bundle), s3.label)
        finally:
            for agent in agents:
                agent.stop()


def report_s3_downloads(
    figures: Dict[str, S3Downloads], floors: List[float], size: int, store: str
) -> None:
    print(
        f"DownloadBundle of a small S3 bundle ({size} bytes, tgz, {store} on loopback;"
        " each deployment ApplicationStop, DownloadBundle, Install; turns alternate):"
    )
    print(
        "  floor: a warm boto3 GET + tarfile extract in one process:"
        f" median {_ms(floors):.1f} ms (min {min(floors) * 1000:.1f},"
        f" max {max(floors) * 1000:.1f}; {len(floors)} runs)"
    )
    for label, mine in figures.items():
        later = sorted(mine.later)
        median = _ms(later)
        print(
            f"  {label}: first {mine.first * 1000:.1f} ms; after the first, queued -> completed:"
            f" median {median:.1f} ms, p90 {later[int(0.9 * (len(later) - 1))] * 1000:.1f} ms,"
            f" min {later[0] * 1000:.1f} ms ({len(later)} runs)"
            f"   target < {S3_DOWNLOAD_TARGET_MS:g} ms"
            f" ({'met' if median < S3_DOWNLOAD_TARGET_MS else 'MISSED'})"
        )
        print(
            f"    acknowledgement -> completion (the download and unpack) {_ms(mine.work):.1f} ms"
            f" (median); the daemon's CPU per DownloadBundle"
            f" {statistics.mean(mine.cpu) * 1000:.1f} ms (mean: the kernel counts it in ticks)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--commands", type=int, default=21, help="commands per daemon")
    parser.add_argument("--poll-wait", type=float, default=20.0, help="stub long-poll seconds")
    parser.add_argument("--dir", default=None, help="where to put the agents' files")
    parser.add_argument(
        "--s3-downloads",
        type=int,
        default=15,
        help="deployments of a small S3 bundle per daemon (0: skip)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="SOURCE",
        help="another source tree of the agent (e.g. `git archive main | tar -x -C DIR`)"
        " whose daemon runs in the same run, turn about with this one",
    )
    parser.add_argument(
        "--integrity-only",
        action="store_true",
        help="the agent's default verification (no deployment_signer_ca_file) for the"
        " per-command figures, instead of a chain checked against the test CA",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="daemon-bench-", dir=args.dir) as folder:
        kit = make_signing_kit(Path(folder) / "signing")
        sources = [("this tree", REPO)]
        if args.baseline:
            sources.insert(0, ("baseline", Path(args.baseline).resolve()))
        agents: List[Agent] = []
        for label, source in sources:
            where = Path(folder) / label.replace(" ", "-")
            where.mkdir()
            stub = TimedStub(poll_wait=args.poll_wait, hang_seconds=5.0)
            agents.append(Agent(label, source, where, stub, write_revision(where)))
        try:
            for agent in agents:
                agent.start(kit, args.poll_wait, check_signer_chain=not args.integrity_only)
            print(
                f"daemons: {', '.join(f'{a.label} ({a.source}) pid {a.process.pid}' for a in agents)};"
                f" stub long poll {args.poll_wait:g} s, http_read_timeout {args.poll_wait + 10:g} s,"
                " wait_between_runs 1 s; specifications: "
                + ("integrity only (the default)" if args.integrity_only else "chain checked")
            )
            measure_idle(agents, args.idle_seconds)
            measure_overhead(agents, kit, args.commands)
        finally:
            for agent in agents:
                agent.stop()
        if args.s3_downloads > 1:
            measure_s3_downloads(sources, kit, Path(folder), args.s3_downloads, args.poll_wait)
    return 0


if __name__ == "__main__":
    sys.exit(main())
