"""What ``codedeploy-server`` costs with a big fleet: 1,000 simulated agents (by default)
long-polling a real server process, one AllAtOnce deployment of a no-op revision to all of
them, on SQLite and on PostgreSQL.

The server is started as the tests start it (tests/support/server.py); PostgreSQL is a
throwaway cluster (tests/support/postgres.py). Set-up is not measured and goes straight
through the server's own modules: a host key per host (``keys create-host`` does the
same), the on-premises instances registered under their keys' ARNs and tagged; the
application and the groups are made through the CodeDeploy API with an operator key.
The hosts (benchmarks/fleet_agents.py) run in ``--processes`` worker processes, each host
with its own key and connection, SigV4-signing every request as the real agent does; they
acknowledge, fetch the specification of and complete every command Succeeded at once.
The revision is an S3 location the hosts never download.

Printed per database, from the same run:

- deploy: wall time from the CreateDeployment call to the driver seeing Succeeded
  (polled every 0.2 s), and the server's own createTime -> completeTime;
- call round trip: each command-service call (acknowledge, get specification, complete)
  from writing the request to reading the whole answer, p50 / p99 / max;
- next command: the gap between a host's completion of one command and its long poll
  returning the next one (the server's orchestration as a host feels it), p50 / p99 / max;
  first command: from CreateDeployment returning to each host receiving its first command;
- the server's CPU seconds during the deployment (and the simulated hosts', which share
  the machine) and its peak RSS (VmHWM) at the end;
- the server runs with its defaults (one process per core, at most 4) and the given
  ``--server-setting`` lines; with ``--servers N`` (PostgreSQL), N servers of one process
  each share the database as replicas behind a load balancer would, each worker process's
  hosts talking to one of them; ``--profile`` profiles a server of one process;
- CPU is the sum over every server process, RSS too (each process's own peak: an upper
  bound, as forked processes share pages);
- baselines: the same deployment to a group of 10 of the hosts (the other hosts idle in
  their long polls meanwhile), and the bare round trip of ``GET /health``.

Targets: all hosts done within 30 s, each command-service call answered within 100 ms at
the 99th percentile (the latency of a command as its host sees it), server peak RSS under
300 MB. The next-command gap has no target: each simulated host asks for its next
command the moment it completes one, so with 1,000 of them the server is the only
bottleneck and the fleet queues for it (by Little's law the mean gap is about the
hosts' number divided by the server's commands per second, whatever the server does);
the server makes them queue in their long polls (``busy_request_limit``, docs/server.md
"Under load") so that the calls of hosts holding a command stay quick. The machine's load
average is printed beside the figures.

Usage: python benchmarks/fleet_bench.py [--hosts 1000] [--processes 2]
       [--database sqlite|postgres|both] [--servers N] [--server-setting "KEY: VALUE"]...
       [--profile DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import botocore.session  # noqa: E402
import psutil  # noqa: E402
from botocore.config import Config  # noqa: E402

import tests.support.server  # noqa: E402
from benchmarks.fleet_agents import Receipt, Sample, SimulatedHost, run_worker  # noqa: E402
from server.access_keys.identities import key_arn  # noqa: E402
from server.access_keys.master_key import load_or_create_master_key_on_disk  # noqa: E402
from server.access_keys.store import KeyKind, issue_access_key  # noqa: E402
from server.configuration import read_server_config  # noqa: E402
from server.database.engine import open_database  # noqa: E402
from server.database.schema import instance_tags, on_premises_instances  # noqa: E402
from tests.support.postgres import PostgresCluster, postgres_unavailable_reason  # noqa: E402
from tests.support.server import ServerFiles, ServerProcess  # noqa: E402

APPLICATION = "fleet-bench"
BASELINE_HOSTS = 10
# Long polls as the real agent's defaults make them (the server holds a poll 20 s at most);
# a host that stops answering for two minutes is timed out.
SERVER_CONFIG = "poll_wait_seconds: 20\nhost_command_timeout_seconds: 120\n"
TARGET_SECONDS = 30.0
TARGET_P99_MS = 100.0
TARGET_RSS_MB = 300.0


@dataclass(frozen=True)
class Phase:
    """One deployment as the driver saw it (epoch times)."""

    hosts: int
    created: float
    seen_done: float
    server_seconds: float
    status: str
    cpu_seconds: float
    hosts_cpu_seconds: float


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def spread_ms(values: Sequence[float]) -> str:
    milliseconds = [value * 1000 for value in values]
    return (
        f"p50 {percentile(milliseconds, 0.5):6.1f}  p99 {percentile(milliseconds, 0.99):6.1f}  "
        f"max {max(milliseconds, default=float('nan')):6.1f} ms  (n={len(milliseconds)})"
    )


def register_hosts(files: ServerFiles, count: int) -> List[SimulatedHost]:
    """Host keys, instances and tags for ``count`` hosts, straight in the database (disk or
    network): the first BASELINE_HOSTS are tagged ``small`` as well as ``fleet``."""
    config = read_server_config(files.config)
    database = open_database(config.effective_database_url)
    master = load_or_create_master_key_on_disk(config.master_key_file)
    hosts: List[SimulatedHost] = []
    now = time.time()
    try:
        with database.write() as connection:
            for number in range(count):
                name = f"bench-host-{number:04d}"
                issued = issue_access_key(connection, master, KeyKind.HOST, name, now)
                arn = key_arn(config, issued.key)
                key_id, secret = issued.key.access_key_id, issued.secret_access_key
                hosts.append(SimulatedHost(name, arn, key_id, secret))
                connection.execute(
                    on_premises_instances.insert().values(
                        name=name,
                        iam_user_arn=arn,
                        instance_arn=f"arn:aws:codedeploy:{config.region}:"
                        f"{config.account_id}:instance/{name}",
                        registered_at=now,
                    )
                )
                tags = [("fleet", "all")] + ([("small", "yes")] if number < BASELINE_HOSTS else [])
                for key, value in tags:
                    connection.execute(
                        instance_tags.insert().values(instance_name=name, key=key, value=value)
                    )
    finally:
        database.dispose()
    return hosts


def codedeploy_client(url: str, operator: Dict[str, str]) -> Any:
    return botocore.session.get_session().create_client(
        "codedeploy",
        region_name=operator["Region"],
        endpoint_url=url,
        aws_access_key_id=operator["AccessKeyId"],
        aws_secret_access_key=operator["SecretAccessKey"],
        config=Config(retries={"max_attempts": 1}),
    )


def make_groups(client: Any) -> None:
    client.create_application(applicationName=APPLICATION, computePlatform="Server")
    for group, tag in (("all", "fleet"), ("small", "small")):
        client.create_deployment_group(
            applicationName=APPLICATION,
            deploymentGroupName=group,
            serviceRoleArn="arn:aws:iam::000000000000:role/codedeploy",
            deploymentConfigName="CodeDeployDefault.AllAtOnce",
            onPremisesInstanceTagFilters=[
                {"Key": tag, "Value": "all" if tag == "fleet" else "yes", "Type": "KEY_AND_VALUE"}
            ],
        )


def cpu_seconds_of(servers: Sequence[psutil.Process]) -> float:
    return sum(sum(server.cpu_times()[:2]) for server in servers)


def deploy(
    client: Any,
    group: str,
    hosts: int,
    servers: Sequence[psutil.Process],
    workers: Sequence[psutil.Process],
) -> Phase:
    """One deployment of the no-op revision to ``group``, waited for (the network)."""
    cpu_before = cpu_seconds_of(servers)
    hosts_cpu_before = cpu_seconds_of(workers)
    created = time.time()
    deployment_id = client.create_deployment(
        applicationName=APPLICATION,
        deploymentGroupName=group,
        revision={
            "revisionType": "S3",
            "s3Location": {"bucket": "fleet-bench", "key": "noop.zip", "bundleType": "zip"},
        },
    )["deploymentId"]
    while True:
        info = client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        if info["status"] in ("Succeeded", "Failed", "Stopped"):
            break
        time.sleep(0.2)
    seen_done = time.time()
    cpu_seconds = cpu_seconds_of(servers) - cpu_before
    hosts_cpu_seconds = cpu_seconds_of(workers) - hosts_cpu_before
    server_seconds = (info["completeTime"] - info["createTime"]).total_seconds()
    return Phase(
        hosts, created, seen_done, server_seconds, info["status"], cpu_seconds, hosts_cpu_seconds
    )


def health_round_trips(url: str, count: int = 200) -> List[float]:
    """``GET /health`` ``count`` times on one keep-alive connection (the network)."""
    host, port = url.split("//", 1)[1].split(":")
    seconds: List[float] = []
    with socket.create_connection((host, int(port))) as connection:
        reader = connection.makefile("rb")
        for _ in range(count):
            started = time.perf_counter()
            connection.sendall(f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            length = 0
            line = reader.readline()
            while line not in (b"\r\n", b""):
                line = reader.readline()
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            seconds.append(time.perf_counter() - started)
    return seconds


def peak_rss_mb(pid: int) -> Tuple[float, float]:
    """The server's RSS now and its peak (VmHWM), in MB, from /proc (the disk)."""
    fields: Dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


@dataclass
class Workers:
    """The simulated agents' worker processes and their pipes."""

    processes: List[Any]
    pipes: List[Any]

    def stop(self) -> Tuple[List[Sample], List[Receipt]]:
        for pipe in self.pipes:
            pipe.send("stop")
        samples: List[Sample] = []
        receipts: List[Receipt] = []
        for pipe in self.pipes:
            got_samples, got_receipts = pipe.recv()
            samples += got_samples
            receipts += got_receipts
        for process in self.processes:
            process.join(30)
        return samples, receipts


def start_workers(
    hosts: List[SimulatedHost], urls: Sequence[str], region: str, count: int
) -> Workers:
    """``count`` worker processes; worker N talks to server N modulo the servers' number."""
    context = multiprocessing.get_context("fork")
    workers = Workers([], [])
    for index in range(count):
        ours, theirs = context.Pipe()
        url = urls[index % len(urls)]
        process = context.Process(
            target=run_worker, args=(hosts[index::count], url, region, theirs), daemon=True
        )
        process.start()
        workers.processes.append(process)
        workers.pipes.append(ours)
    for pipe in workers.pipes:
        assert pipe.recv() == "ready"
    return workers


def phase_figures(phase: Phase, samples: List[Sample], receipts: List[Receipt]) -> Dict[str, Any]:
    inside = [sample for sample in samples if phase.created <= sample.started <= phase.seen_done]
    mine = [receipt for receipt in receipts if phase.created <= receipt.received <= phase.seen_done]
    gaps = [
        receipt.received - receipt.previous_completed
        for receipt in mine
        if receipt.previous_completed is not None and receipt.previous_completed >= phase.created
    ]
    firsts = [
        receipt.received - phase.created
        for receipt in mine
        if receipt.previous_completed is None or receipt.previous_completed < phase.created
    ]
    return {
        "calls": [sample.seconds for sample in inside],
        "by_operation": {
            operation: [sample.seconds for sample in inside if sample.operation == operation]
            for operation in sorted({sample.operation for sample in inside})
        },
        "gaps": gaps,
        "firsts": firsts,
    }


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def report(
    label: str, phases: List[Phase], figures: List[Dict[str, Any]], extra: Dict[str, Any]
) -> None:
    print(f"\n== {label}  (load average {extra['load_before']} -> {extra['load_after']})")
    for phase, figure in zip(phases, figures):
        kind = "baseline" if phase.hosts == BASELINE_HOSTS else "fleet"
        print(
            f"  {kind:8} {phase.hosts:5} hosts: {phase.status} in {phase.seen_done - phase.created:6.2f} s"
            f" (server: {phase.server_seconds:6.2f} s), server CPU {phase.cpu_seconds:6.2f} s,"
            f" simulated hosts' CPU {phase.hosts_cpu_seconds:6.2f} s"
        )
        print(f"      call round trip  {spread_ms(figure['calls'])}")
        for operation, values in figure["by_operation"].items():
            print(f"        {operation:30} {spread_ms(values)}")
        print(f"      next command     {spread_ms(figure['gaps'])}")
        print(f"      first command    {spread_ms(figure['firsts'])}")
    print(f"  GET /health round trip {spread_ms(extra['health'])}")
    print(
        f"  server RSS idle with all hosts polling {extra['rss_idle']:.1f} MB, peak (VmHWM) {extra['peak']:.1f} MB"
    )
    fleet, figure = phases[-1], figures[-1]
    call_p99 = percentile(figure["calls"], 0.99) * 1000
    gap_p99 = percentile(figure["gaps"], 0.99) * 1000
    duration = fleet.seen_done - fleet.created
    print(
        f"  target: {fleet.hosts} hosts done within {TARGET_SECONDS:.0f} s: {verdict(fleet.status == 'Succeeded' and duration <= TARGET_SECONDS)}"
    )
    print(
        f"  target: call round trip p99 < {TARGET_P99_MS:.0f} ms ({call_p99:.1f}): {verdict(call_p99 < TARGET_P99_MS)}"
    )
    print(f"  next command p99 {gap_p99:.1f} ms: the fleet's queue for the server, no target")
    print(
        f"  target: server peak RSS < {TARGET_RSS_MB:.0f} MB ({extra['peak']:.1f}): {verdict(extra['peak'] < TARGET_RSS_MB)}"
    )


def profile_server(base: Path, stats: Path) -> None:
    """Have ServerProcess start the server through profiled_server.py (writes ``stats``
    when it exits): a launcher script in ``base`` (the disk) stands in for the program."""
    stats.parent.mkdir(parents=True, exist_ok=True)
    launcher = base / "profiled-codedeploy-server"
    profiled = REPO / "benchmarks" / "profiled_server.py"
    launcher.write_text(
        f"#!{sys.executable}\nimport runpy, sys\nsys.argv[1:1] = [{str(stats)!r}]\n"
        f"sys.path.insert(0, {str(REPO)!r})\nrunpy.run_path({str(profiled)!r}, run_name='__main__')\n"
    )
    launcher.chmod(0o755)
    tests.support.server.SERVER_PROGRAM = str(launcher)


def serving_processes(servers: Sequence[ServerProcess]) -> List[psutil.Process]:
    """Every process of every server: with ``server_processes`` above 1, a server's first
    process forks the others."""
    found: List[psutil.Process] = []
    for server in servers:
        assert server.process is not None
        first = psutil.Process(server.process.pid)
        found += [first, *first.children()]
    return found


def wait_until_idle(server: psutil.Process, limit: float = 120.0) -> None:
    """Wait until the server has answered the hosts' first polls (under 10 % of a core over
    half a second), so that the deployments start from a fleet idle in its long polls."""
    deadline = time.monotonic() + limit
    while server.cpu_percent(0.5) > 10.0 and time.monotonic() < deadline:
        pass


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run_one(
    label: str, base: Path, database_url: Optional[str], arguments: argparse.Namespace
) -> None:
    files = ServerFiles(base)
    extra = "".join(f"{setting}\n" for setting in arguments.server_setting)
    # The server's own default number of processes, except for a profile (of one process)
    # and for replicas (--servers: one process each, unless a setting says otherwise).
    one_process = bool(arguments.profile) or arguments.servers > 1
    files.write_config(SERVER_CONFIG + extra, database_url=database_url, one_process=one_process)
    operator = files.create_operator()
    hosts = register_hosts(files, arguments.hosts)
    load_before = load_average()
    if arguments.profile:
        profile_server(base, arguments.profile / f"{label.lower()}.pstats")
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(ServerProcess(files)) for _ in range(arguments.servers)]
        processes = serving_processes(servers)
        print(f"  {len(processes)} server process(es) in {len(servers)} server(s)", flush=True)
        client = codedeploy_client(servers[0].url, operator)
        make_groups(client)
        urls = [server.url for server in servers]
        workers = start_workers(hosts, urls, operator["Region"], arguments.processes)
        for process in processes:
            wait_until_idle(process)
        rss_idle = sum(peak_rss_mb(process.pid)[0] for process in processes)
        simulated = [psutil.Process(process.pid) for process in workers.processes if process.pid]
        phases = [deploy(client, "small", BASELINE_HOSTS, processes, simulated)]
        phases.append(deploy(client, "all", arguments.hosts, processes, simulated))
        health = health_round_trips(servers[0].url)
        peak = sum(peak_rss_mb(process.pid)[1] for process in processes)
        samples, receipts = workers.stop()
    figures = [phase_figures(phase, samples, receipts) for phase in phases]
    extra = {
        "load_before": load_before,
        "load_after": load_average(),
        "health": health,
        "rss_idle": rss_idle,
        "peak": peak,
    }
    report(label, phases, figures, extra)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="server processes sharing the database (PostgreSQL only); hosts split among them",
    )
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="'KEY: VALUE'",
        help="a line added to the server's configuration (repeatable), e.g. 'worker_threads: 4'",
    )
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--profile", type=Path, help="write the server's cProfile statistics to this folder"
    )
    arguments = parser.parse_args()
    if arguments.servers < 1 or (arguments.servers > 1 and arguments.database != "postgres"):
        parser.error("--servers above 1 takes --database postgres (SQLite serves one process)")
    if arguments.servers > 1 and arguments.profile:
        parser.error("--profile profiles one server: leave --servers at 1")
    print(
        f"codedeploy-server fleet benchmark: {arguments.hosts} hosts in {arguments.processes} processes, {arguments.servers} server(s), {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as folder:
        if arguments.database in ("sqlite", "both"):
            run_one("SQLite", Path(folder) / "sqlite", None, arguments)
        if arguments.database in ("postgres", "both"):
            reason = postgres_unavailable_reason()
            if reason:
                print(f"\n== PostgreSQL skipped: {reason}")
                return 0
            cluster = PostgresCluster().start()
            try:
                run_one(
                    "PostgreSQL", Path(folder) / "postgres", cluster.create_database(), arguments
                )
            finally:
                cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
