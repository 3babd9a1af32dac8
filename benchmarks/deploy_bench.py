"""Deployment speed and memory against the floor of the same work done by tar and cp.

Builds a revision of N files of 1 KB in 200 folders, packs it as a tgz, and deploys it
twice to one group with codedeploy-local (the second deployment also replays the first
one's cleanup list). It prints, measured in the same run:

- the wall time of each deployment and of the floor, ``tar -xzf`` + ``cp -a`` of the same
  tree, and their ratio (target: each deployment within 2x of the floor), as medians of
  several rounds, each on a fresh deployment root (these machines are noisy);
- the peak RSS of the largest process of each deployment (target: under 40 MB for
  20,000 files);
- with ``--scaling``, the peak RSS for 10x the files and the ratio between the two
  (target: at most 1.5x, since nothing holds a list of every file in memory).

Usage: python benchmarks/deploy_bench.py [--files 20000] [--rounds 5] [--scaling] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import List, Tuple

REPO = Path(__file__).resolve().parent.parent

# Runs the CLI in a fresh interpreter and reports the peak RSS (KiB) of the largest
# process of the deployment: the agent itself or one it started (the install's second
# process, hooks).
_MEASURED_RUN = (
    "import resource, sys\n"
    "from agent.local_deployment.cli import run_local_deployment\n"
    "code = run_local_deployment(sys.argv[1:])\n"
    "own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "forked = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print('peak_rss_kib', max(own, forked), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


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


def deploy(bundle: Path, config: Path) -> Tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one codedeploy-local deployment."""
    command = [
        sys.executable,
        "-c",
        _MEASURED_RUN,
        "-l",
        str(bundle),
        "-t",
        "tgz",
        "-c",
        str(config),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"deployment failed:\n{done.stdout}\n{done.stderr}")
    rss = int(done.stderr.rsplit("peak_rss_kib", 1)[1].split()[0])
    return seconds, rss


@dataclass(frozen=True)
class CaseFigures:
    floor: float  # median seconds of tar -xzf + cp -a
    first: float  # median seconds of the first deployment to a fresh group
    second: float  # median seconds of the redeployment on the same group
    rss_kib: int  # largest peak RSS seen in any deployment


def run_case(files: int, base: Path, rounds: int) -> CaseFigures:
    """``rounds`` rounds of: floor, first deployment, second deployment (fresh root each)."""
    where = Path(tempfile.mkdtemp(prefix=f"deploy-bench-{files}-", dir=base))
    floors: List[float] = []
    firsts: List[float] = []
    seconds: List[float] = []
    rss = 0
    try:
        install = where / "installed"
        bundle = build_revision(where, files, install)
        for round_number in range(rounds):
            root = where / f"root-{round_number}"
            config = where / f"codedeployagent-{round_number}.yml"
            config.write_text(
                f":root_dir: '{root}'\n:log_dir: '{where / 'log'}'\n", encoding="utf-8"
            )
            floors.append(floor_seconds(bundle, where))
            for series in (firsts, seconds):
                took, peak = deploy(bundle, config)
                series.append(took)
                rss = max(rss, peak)
            shutil.rmtree(install)
            shutil.rmtree(root)
        return CaseFigures(median(floors), median(firsts), median(seconds), rss)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def report(title: str, figures: CaseFigures) -> None:
    print(title)
    print(f"  floor (tar -xzf + cp -a):  {figures.floor:6.2f} s")
    for name, took in (("deployment 1", figures.first), ("deployment 2", figures.second)):
        print(f"  {name}:              {took:6.2f} s  = {took / figures.floor:4.2f}x floor")
    print(f"  peak RSS:                  {figures.rss_kib / 1024:5.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds to take medians of")
    parser.add_argument(
        "--scaling", action="store_true", help="also deploy 10x the files and compare peak RSS"
    )
    default_dir = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    parser.add_argument(
        "--dir", type=Path, default=Path(default_dir), help="where to work (default: %(default)s)"
    )
    args = parser.parse_args()

    # An installed agent runs from byte-compiled modules (pip compiles them); do the same
    # for a checkout, even where PYTHONDONTWRITEBYTECODE is set.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "agent")], check=True)
    print(f"working in {args.dir} on {os.cpu_count()} cores; medians of {args.rounds} rounds")
    small = run_case(args.files, args.dir, args.rounds)
    report(f"{args.files} files of 1 KB in 200 folders, tgz bundle", small)
    if args.scaling:
        big_files = args.files * 10
        big = run_case(big_files, args.dir, 1)
        report(f"{big_files} files (one round)", big)
        print(
            f"  peak RSS {big_files} files / {args.files} files = {big.rss_kib / small.rss_kib:4.2f}x"
        )


if __name__ == "__main__":
    main()
