"""Deployment speed and memory against the floor of the same work done by tar and cp.

Builds a revision of N files of 1 KB in 200 folders, packs it as a tgz, and deploys it
twice to one group with codedeploy-local (the second deployment also replays the first
one's cleanup list). It prints, measured in the same run:

- the wall time of each deployment and of the floor, ``tar -xzf`` + ``cp -a`` of the same
  tree, and their ratio (target: each deployment within 2x of the floor);
- the peak RSS of the largest process of each deployment (target: under 40 MB for
  20,000 files);
- with ``--scaling``, the peak RSS for 10x the files and the ratio between the two
  (target: at most 1.5x, since nothing holds a list of every file in memory).

Usage: python benchmarks/deploy_bench.py [--files 20000] [--scaling] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
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


def run_case(files: int, base: Path) -> Tuple[List[Tuple[float, int]], float]:
    where = Path(tempfile.mkdtemp(prefix=f"deploy-bench-{files}-", dir=base))
    try:
        install = where / "installed"
        bundle = build_revision(where, files, install)
        config = where / "codedeployagent.yml"
        config.write_text(
            f":root_dir: '{where / 'root'}'\n:log_dir: '{where / 'log'}'\n", encoding="utf-8"
        )
        floor = floor_seconds(bundle, where)
        runs = [deploy(bundle, config), deploy(bundle, config)]
        floor = min(floor, floor_seconds(bundle, where))
        return runs, floor
    finally:
        shutil.rmtree(where, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
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
    print(f"working in {args.dir} on {os.cpu_count()} cores")
    runs, floor = run_case(args.files, args.dir)
    print(f"{args.files} files of 1 KB in 200 folders, tgz bundle")
    print(f"  floor (tar -xzf + cp -a):  {floor:6.2f} s")
    for number, (seconds, rss) in enumerate(runs, 1):
        print(
            f"  deployment {number}:          {seconds:6.2f} s  = {seconds / floor:4.2f}x floor"
            f"   peak RSS {rss / 1024:5.1f} MB"
        )
    if args.scaling:
        big = args.files * 10
        big_runs, big_floor = run_case(big, args.dir)
        small_rss = max(rss for _, rss in runs)
        big_rss = max(rss for _, rss in big_runs)
        print(f"{big} files:")
        print(f"  floor (tar -xzf + cp -a):  {big_floor:6.2f} s")
        for number, (seconds, rss) in enumerate(big_runs, 1):
            print(
                f"  deployment {number}:          {seconds:6.2f} s  = {seconds / big_floor:4.2f}x floor"
                f"   peak RSS {rss / 1024:5.1f} MB"
            )
        print(f"  peak RSS {big} files / {args.files} files = {big_rss / small_rss:4.2f}x")


if __name__ == "__main__":
    main()
