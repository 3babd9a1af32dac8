"""Deployment speed and memory against the floor of the same work done by tar and cp.

Builds a revision of N files of 1 KB in 200 folders, packs it as a tgz, and deploys it
twice to one group with each program: ``codedeploy-local``, and the daemon
``codedeploy-agent`` fed by the project's test command service on loopback (signed
specifications, a local-file tgz revision; each deployment is its DownloadBundle and
Install commands, queued while the daemon waits in its long poll). The second deployment
also replays the first one's cleanup list. It prints, measured in the same run:

- the wall time of each deployment and of its floor, and their ratio (target: each
  deployment within 1.5x of the floor), as medians of several rounds, each on a fresh
  deployment root (codedeploy-local) or a fresh deployment group (the daemon; these
  machines are noisy). The floor is ``tar -xzf`` + ``cp -a`` of the same tree; for the
  daemon, plus a plain read of the bundle (what fetching it costs at least); the
  daemon's time runs from queueing DownloadBundle to the service receiving Install's
  completion;
- for ``codedeploy-local``, the CPU time of each deployment too (user and system, with the
  install's second process): on a shared machine it moves far less than the wall time;
- the peak RSS of the largest process of each ``codedeploy-local`` deployment (target:
  under 40 MB for 20,000 files), and the daemon's own peak (its install runs in a helper);
- with ``--scaling``, the peak RSS for 10x the files and the ratio between the two
  (target: at most 1.5x, since nothing holds a list of every file in memory).

``--compare SOURCE`` deploys with another source tree of the agent too (for example
``git worktree add DIR BASE``), taking turns with this one in every round (which goes
first alternates), and prints each figure of this tree against that one's. The load
average is printed before and after: other work on the machine shows in every figure.

Usage: python benchmarks/deploy_bench.py [--files 20000] [--rounds 5] [--scaling]
       [--programs local,daemon] [--dir /dev/shm] [--compare SOURCE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Dict, List, Optional, Sequence, Tuple

# daemon_bench (beside this file) also puts the repository on sys.path for tests.*.
from daemon_bench import HOST, TimedStub, peak_rss_bytes
from measured_run import run_measured

from tests.support.daemon import AgentDaemon
from tests.support.signing import make_signing_kit

REPO = Path(__file__).resolve().parent.parent


def build_revision(where: Path, files: int, install: Path) -> Path:
    source = where / "revision"
    folders = 200
    per_folder = max(1, files // folders)
    payload = (b"0123456789abcdef" * 64)[:1024]
    for folder in range(folders):
        directory = source / "app" / f"d{folder:03d}"
        directory.mkdir(parents=True)
        for index in range(per_folder):
            (directory / f"f{index:05d}.txt").write_bytes(payload)
    (source / "appspec.yml").write_text(
        f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {install}\n",
        encoding="utf-8",
    )
    bundle = where / "revision.tgz"
    subprocess.run(["tar", "-czf", str(bundle), "-C", str(source), "."], check=True)
    return bundle


def settle() -> None:
    """Flush what earlier steps wrote or deleted so it is not charged to the next one.

    On a disk mounted with online discard, a large rmtree makes the following writes
    slow for a while; every timed step starts from a synced file system instead.
    """
    os.sync()


def timed(command: List[str]) -> float:
    settle()
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def floor_seconds(bundle: Path, where: Path) -> float:
    """tar -xzf + cp -a of the same tree: what any deployment must at least do."""
    unpacked, copied = where / "floor-unpacked", where / "floor-copied"
    unpacked.mkdir()
    seconds = timed(["tar", "-xzf", str(bundle), "-C", str(unpacked)])
    seconds += timed(["cp", "-a", str(unpacked), str(copied)])
    shutil.rmtree(unpacked)
    shutil.rmtree(copied)
    return seconds


def deploy(bundle: Path, config: Path, source: Path = REPO) -> Tuple[float, int, float]:
    """(wall seconds, peak RSS in KiB, CPU seconds) of one codedeploy-local deployment by
    the agent of the ``source`` tree: the RSS of the largest process of it, the program
    itself or one it started (the install's second process); the CPU of them all."""
    command = [
        sys.executable,
        "-m",
        "agent.local_deployment",
        "-l",
        str(bundle),
        "-t",
        "tgz",
        "-c",
        str(config),
    ]
    # ``-m`` finds the agent in the working folder first.
    done = run_measured(command, capture_output=True, text=True, cwd=source)
    if done.returncode != 0:
        sys.exit(f"deployment failed:\n{done.output}")
    return done.seconds, done.peak_rss_kib, done.cpu_seconds


@dataclass(frozen=True)
class CaseFigures:
    floor: float  # median seconds of the floor (tar -xzf + cp -a; for the daemon, + a read)
    first: float  # median seconds of the first deployment to a fresh group
    second: float  # median seconds of the redeployment on the same group
    rss_kib: int  # largest peak RSS seen in any deployment
    # Median CPU seconds of the first and second deployments (codedeploy-local only).
    cpu: Optional[Tuple[float, float]] = None


class DaemonDeployer:
    """``codedeploy-agent run`` of the ``source`` tree against the test command service;
    deploys a tgz bundle."""

    def __init__(self, where: Path, source: Path = REPO, extra_config: str = "") -> None:
        self.where = where
        self.kit = make_signing_kit(where / "signing")
        self.stub = TimedStub(poll_wait=20.0, hang_seconds=5.0)
        self.stub.start()
        (where / "daemon").mkdir()
        self.daemon = AgentDaemon(
            where / "daemon",
            self.stub,
            self.kit,
            host=HOST,
            # The next command of a deployment is polled for at once, as a service
            # hands it out as soon as the previous one completes.
            wait_between_runs=0,
            wait_after_error=1,
            http_read_timeout=30,
            hook_kill_grace_seconds=None,
            source=source,
            extra_config=extra_config,
        )
        self.daemon.run(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not self.stub.wait_for_poll_after(0.0):
            self.close()
            sys.exit(f"the daemon never polled; see {self.daemon.log_dir}")
        self.deployments = 0

    def deploy(self, bundle: Path, group: str) -> float:
        """Wall seconds from queueing DownloadBundle to Install's completion."""
        self.deployments += 1
        deployment_id = f"d-BENCH{self.deployments:05d}"
        with self.stub.arrivals:
            moments = list(self.stub.completed.values())
        # Queue only once the daemon is back in its long poll, as a service would find it.
        if moments and not self.stub.wait_for_poll_after(max(moments)):
            sys.exit("the daemon stopped polling")
        time.sleep(0.05)
        spec = {
            "DeploymentId": f"arn:aws:codedeploy:us-east-1:123456789012:deployment/{deployment_id}",
            "DeploymentGroupId": group,
            "DeploymentGroupName": group,
            "ApplicationName": "bench-app",
            "Revision": {
                "RevisionType": "Local File",
                "LocalRevision": {"Location": str(bundle), "BundleType": "tgz"},
            },
            "AgentActionOverrides": {"AgentOverrides": {"FileExistsBehavior": "OVERWRITE"}},
        }
        self.stub.set_specification(deployment_id, self.kit.sign(json.dumps(spec)), "PKCS7/JSON")
        settle()
        queued = time.monotonic()
        ids = [
            str(self.stub.queue_command(HOST, name, deployment_id)["HostCommandIdentifier"])
            for name in ("DownloadBundle", "Install")
        ]
        done = self.stub.wait_for_completion(ids[-1], timeout=600)
        if done is None:
            sys.exit(f"{deployment_id} did not complete; see {self.daemon.log_dir}")
        failed = [c for c in self.stub.completions() if c["CommandStatus"] != "Succeeded"]
        if failed:
            sys.exit(f"{deployment_id} failed: {failed}")
        return done - queued

    def peak_rss_kib(self) -> int:
        assert self.daemon.process is not None
        return peak_rss_bytes(self.daemon.process.pid) // 1024

    def close(self) -> None:
        self.daemon.stop()
        self.stub.stop()


# Figures per program ("local", "daemon") and source tree, in the order of ``sources``.
Figures = Dict[str, List[CaseFigures]]
# Of one program and tree: the first and second deployments' wall times, their peak RSS,
# and (codedeploy-local) their CPU times.
_Series = Tuple[List[float], List[float], List[int], List[float], List[float]]


def run_case(
    files: int, base: Path, rounds: int, programs: Sequence[str], sources: Sequence[Path] = (REPO,)
) -> Figures:
    """``rounds`` rounds of: the floor, then with each program and each source tree (taking
    turns, the first one alternating) a first deployment and a second one (on a fresh root
    for codedeploy-local, a fresh group for the daemon)."""
    where = Path(tempfile.mkdtemp(prefix=f"deploy-bench-{files}-", dir=base))
    floors: List[float] = []
    reads: List[float] = []
    series: Dict[Tuple[str, int], _Series] = {
        (name, index): ([], [], [], [], []) for name in programs for index in range(len(sources))
    }
    daemons: List[DaemonDeployer] = []
    try:
        install = where / "installed"
        bundle = build_revision(where, files, install)
        if "daemon" in programs:
            for index, source in enumerate(sources):
                (where / f"daemon-{index}").mkdir()
                daemons.append(DaemonDeployer(where / f"daemon-{index}", source))
        for round_number in range(rounds):
            floors.append(floor_seconds(bundle, where))
            reads.append(timed(["cat", str(bundle)]))
            order = list(range(len(sources)))
            if round_number % 2:
                order.reverse()
            for index in order:
                if "local" in programs:
                    _deploy_local_twice(bundle, where, sources[index], series[("local", index)])
                if daemons:
                    group = f"bench-group-{round_number}-{index}"
                    for took in series[("daemon", index)][:2]:
                        took.append(daemons[index].deploy(bundle, group))
                    shutil.rmtree(install)
        return _case_figures(programs, series, floors, reads, daemons)
    finally:
        for daemon in daemons:
            daemon.close()
        shutil.rmtree(where, ignore_errors=True)


def _deploy_local_twice(bundle: Path, where: Path, source: Path, into: _Series) -> None:
    """Two codedeploy-local deployments of ``bundle`` on a fresh deployment root."""
    root = Path(tempfile.mkdtemp(prefix="root-", dir=where))
    config = root.with_suffix(".yml")
    config.write_text(f":root_dir: '{root}'\n:log_dir: '{where / 'log'}'\n", encoding="utf-8")
    for took, cpu in ((into[0], into[3]), (into[1], into[4])):
        seconds, peak, cpu_seconds = deploy(bundle, config, source)
        took.append(seconds)
        into[2].append(peak)
        cpu.append(cpu_seconds)
    shutil.rmtree(where / "installed")
    shutil.rmtree(root)
    config.unlink()


def _case_figures(
    programs: Sequence[str],
    series: Dict[Tuple[str, int], _Series],
    floors: List[float],
    reads: List[float],
    daemons: List[DaemonDeployer],
) -> Figures:
    figures: Figures = {name: [] for name in programs}
    for (name, index), (firsts, seconds, peaks, cpu_firsts, cpu_seconds) in sorted(series.items()):
        cpu: Optional[Tuple[float, float]] = None
        if name == "local":
            floor = median(floors)
            rss = max(peaks)
            cpu = (median(cpu_firsts), median(cpu_seconds))
        else:
            floor = median(f + r for f, r in zip(floors, reads))
            rss = daemons[index].peak_rss_kib()
        figures[name].append(CaseFigures(floor, median(firsts), median(seconds), rss, cpu))
    return figures


def report(
    title: str, figures: Sequence[CaseFigures], floor_name: str, rss_name: str, labels: List[str]
) -> None:
    """The figures of each source tree; with two, this tree's against the other's."""
    print(title)
    print(f"  floor ({floor_name}): {figures[0].floor:6.2f} s")
    for label, tree in zip(labels, figures):
        indent = "  "
        if len(figures) > 1:
            print(f"  {label}:")
            indent = "    "
        for number, took in ((0, tree.first), (1, tree.second)):
            cpu = "" if tree.cpu is None else f", CPU {tree.cpu[number]:5.2f} s"
            print(
                f"{indent}deployment {number + 1}: {took:6.2f} s  = {took / tree.floor:4.2f}x"
                f" floor{cpu}"
            )
        print(f"{indent}{rss_name}: {tree.rss_kib / 1024:5.1f} MB")
    if len(figures) > 1:
        this, other = figures[0], figures[1]
        line = (
            f"  this tree / {labels[1]}: deployment 1 {this.first / other.first:4.2f}x,"
            f" deployment 2 {this.second / other.second:4.2f}x"
        )
        if this.cpu is not None and other.cpu is not None:
            line += f"; CPU {this.cpu[0] / other.cpu[0]:4.2f}x, {this.cpu[1] / other.cpu[1]:4.2f}x"
        print(line)


def report_case(figures: Figures, title: str, labels: List[str]) -> None:
    if "local" in figures:
        report(
            f"{title}, codedeploy-local",
            figures["local"],
            "tar -xzf + cp -a",
            "peak RSS (largest process)",
            labels,
        )
    if "daemon" in figures:
        report(
            f"{title}, the daemon (DownloadBundle + Install)",
            figures["daemon"],
            "read + tar -xzf + cp -a",
            "daemon peak RSS (VmHWM)",
            labels,
        )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds to take medians of")
    parser.add_argument(
        "--scaling", action="store_true", help="also deploy 10x the files and compare peak RSS"
    )
    parser.add_argument(
        "--programs",
        default="local,daemon",
        help="comma-separated: local (codedeploy-local), daemon (default: %(default)s)",
    )
    default_dir = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    parser.add_argument(
        "--dir", type=Path, default=Path(default_dir), help="where to work (default: %(default)s)"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="SOURCE",
        help="another source tree of the agent (e.g. `git worktree add DIR BASE`) deployed"
        " in the same rounds, taking turns with this one",
    )
    args = parser.parse_args()
    programs = [name for name in args.programs.split(",") if name]
    if not programs or set(programs) - {"local", "daemon"}:
        parser.error("--programs takes local, daemon or both")

    sources = [REPO] + ([args.compare.resolve()] if args.compare else [])
    labels = ["this tree" if source == REPO else str(source) for source in sources]

    # An installed agent runs from byte-compiled modules (pip compiles them); do the same
    # for a checkout, even where PYTHONDONTWRITEBYTECODE is set.
    for source in sources:
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(source / "agent")], check=True
        )
    print(f"working in {args.dir} on {os.cpu_count()} cores; medians of {args.rounds} rounds")
    print(f"before: {load_average()}")
    small = run_case(args.files, args.dir, args.rounds, programs, sources)
    print(f"after: {load_average()}")
    title = f"{args.files} files of 1 KB in 200 folders, tgz bundle"
    report_case(small, title, labels)
    if args.scaling and "local" in programs:
        big_files = args.files * 10
        big = run_case(big_files, args.dir, 1, ["local"])["local"]
        report_case({"local": big}, f"{big_files} files (one round)", labels[:1])
        ratio = big[0].rss_kib / small["local"][0].rss_kib
        print(f"  peak RSS {big_files} files / {args.files} files = {ratio:4.2f}x")


if __name__ == "__main__":
    main()
