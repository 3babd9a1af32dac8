"""Deployments in the steady state, where each one prunes the group's oldest folder.

Once a group has ``max_revisions`` deployment folders, every deployment removes the oldest
before its download: for a revision of many files on a disk-backed root, that removal is
as costly as the unpack. This deploys the same tgz of N files of 1 KB (200 folders)
again and again to one group through the daemon (``codedeploy-agent run`` against the
test command service: DownloadBundle then Install, timed from queueing the first to the
completion of the second) with ``max_revisions: 2``, so that from the third deployment on
each one prunes a whole revision. It prints, from the rounds where that happens:

- the median and range of the daemon's deployments (``--compare SOURCE``: also another
  source tree of the agent, taking turns in the same rounds, each with its own root);
- the floor measured in the same rounds: ``tar -xzf`` + ``cp -a`` of the tree, and the
  same after an ``rm -rf`` of a tree as large (what removing in the deployment's way
  costs at least); every timed step starts from a synced filesystem.

The working folder (``--dir``, default /var/tmp) should be on a disk: on tmpfs removal is
cheap and the figure shows little.

Usage: python benchmarks/retention_bench.py [--files 20000] [--rounds 6] [--dir /var/tmp]
       [--compare SOURCE]
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
from statistics import median
from typing import Dict, List, Optional

# deploy_bench (beside this file) also puts the repository on sys.path for tests.*.
from deploy_bench import REPO, DaemonDeployer, build_revision, settle

_MAX_REVISIONS = 2


def floor_seconds(bundle: Path, where: Path, remove_first: bool) -> float:
    """tar -xzf + cp -a of the tree; with ``remove_first``, after an rm -rf of a copy."""
    unpacked, copied, old = where / "floor-unpacked", where / "floor-copied", where / "floor-old"
    if remove_first:
        old.mkdir()
        subprocess.run(["tar", "-xzf", str(bundle), "-C", str(old)], check=True)
    unpacked.mkdir()
    settle()
    started = time.perf_counter()
    if remove_first:
        subprocess.run(["rm", "-rf", "--", str(old)], check=True)
    subprocess.run(["tar", "-xzf", str(bundle), "-C", str(unpacked)], check=True)
    subprocess.run(["cp", "-a", str(unpacked), str(copied)], check=True)
    seconds = time.perf_counter() - started
    shutil.rmtree(unpacked)
    shutil.rmtree(copied)
    return seconds


def spread(values: List[float]) -> str:
    return f"{median(values):.2f} s (range {min(values):.2f} to {max(values):.2f})"


def measure(args: argparse.Namespace, where: Path) -> None:
    sources: Dict[str, Path] = {"this tree": REPO}
    if args.compare is not None:
        sources[f"compare ({args.compare})"] = args.compare
    deployers: Dict[str, DaemonDeployer] = {}
    bundles: Dict[str, Path] = {}
    try:
        for number, (label, source) in enumerate(sources.items()):
            folder = where / f"side-{number}"
            folder.mkdir()
            bundles[label] = build_revision(folder, args.files, folder / "installed")
            deployers[label] = DaemonDeployer(
                folder, source, extra_config=f":max_revisions: {_MAX_REVISIONS}\n"
            )
        times: Dict[str, List[float]] = {label: [] for label in sources}
        floors: Dict[bool, List[float]] = {False: [], True: []}
        for round_number in range(args.rounds):
            for label, deployer in deployers.items():
                took = deployer.deploy(bundles[label], "bench-group")
                # The first two fill the group; each later one prunes a whole revision.
                if round_number >= _MAX_REVISIONS:
                    times[label].append(took)
            first = next(iter(bundles.values()))
            for remove_first in (False, True):
                floors[remove_first].append(floor_seconds(first, where, remove_first))
            print(f"round {round_number + 1} done", flush=True)
    finally:
        for deployer in deployers.values():
            deployer.close()
    report(args, times, floors)


def report(
    args: argparse.Namespace, times: Dict[str, List[float]], floors: Dict[bool, List[float]]
) -> None:
    floor = median(floors[False])
    print(
        f"\n{args.files} files of 1 KB, tgz, through the daemon, max_revisions"
        f" {_MAX_REVISIONS}; {args.rounds - _MAX_REVISIONS} pruning deployments of"
        f" {args.rounds} (load {os.getloadavg()[0]:.1f})"
    )
    print(f"  floor (tar -xzf + cp -a):            {spread(floors[False])}")
    print(f"  floor after an rm -rf of a tree:     {spread(floors[True])}")
    for label, values in times.items():
        print(f"  {label}: {spread(values)} = {median(values) / floor:.2f}x floor")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=6, help="deployments per side (> 2)")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where to work")
    parser.add_argument("--compare", type=Path, help="another source tree of the agent")
    args = parser.parse_args(argv)
    if args.rounds <= _MAX_REVISIONS:
        parser.error(f"--rounds must be more than {_MAX_REVISIONS}")
    where = Path(tempfile.mkdtemp(prefix="retention-bench.", dir=args.dir))
    try:
        measure(args, where)
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
