"""Benchmark of the Install step against ``cp -a`` of the same tree, on the same disk.

Builds a revision of N files of 1 KB spread over folders in a temporary folder, installs it
twice for one deployment group (the second install first removes what the first one
installed, from its cleanup file), times ``cp -a`` of the same tree in the same run, and
prints the times, the ratios and the peak RSS of the process. ``--rss-compare`` runs the
20,000 and 200,000 file cases in separate processes and compares their peak RSS.

    .venv/bin/python benchmarks/install_bench.py [--files 20000] [--folders 200]
    .venv/bin/python benchmarks/install_bench.py --rss-compare
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

from agent.application_specification.model import (
    ApplicationSpecification,
    FileExistsBehavior,
    FileMapping,
)
from agent.deployment_root.layout import DeploymentRoot
from agent.installer import install_revision_on_disk


def build_tree(archive: Path, files: int, folders: int) -> None:
    payload = os.urandom(1024)
    per_folder = max(1, files // folders)
    for folder_number in range(folders):
        folder = archive / f"folder{folder_number:04d}"
        folder.mkdir(parents=True)
        for file_number in range(per_folder):
            (folder / f"file{file_number:05d}.txt").write_bytes(payload)


STEPS = ("cp -a", "install 1", "install 2")


def timed(action: Callable[[], None]) -> float:
    os.sync()  # so that one step's writeback is not billed to the next
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def touch_tree(archive: Path) -> None:
    """Give every file a new mtime, as a fresh unpack of a rebuilt bundle would."""
    now = time.time_ns()
    for folder, _, names in os.walk(archive):
        for name in names:
            os.utime(os.path.join(folder, name), ns=(now, now))


def run_case(
    files: int, folders: int, rounds: int, keep: bool, touch: bool = False
) -> Dict[str, List[float]]:
    """Each step's time in each of ``rounds`` rounds, each round on fresh destinations.

    Nothing is deleted before the end: deleting thousands of files (with online discard)
    slows down whatever writes next, which would blur the comparison.
    """
    work = Path(tempfile.mkdtemp(prefix="install-bench-"))
    try:
        archive = work / "deployment-archive"
        build_tree(archive, files, folders)
        times: Dict[str, List[float]] = {step: [] for step in STEPS}
        for number in range(rounds):
            root = DeploymentRoot(work / f"root-{number}")
            destination = str(work / f"installed-{number}")
            spec = ApplicationSpecification(files=(FileMapping("/", destination),))

            def install(spec: ApplicationSpecification = spec, root: DeploymentRoot = root) -> None:
                install_revision_on_disk(
                    spec, archive, root, "bench-group", FileExistsBehavior.DISALLOW
                )

            def copy(number: int = number) -> None:
                target = work / f"cp-copy-{number}"
                subprocess.run(["cp", "-a", str(archive), str(target)], check=True)

            # The order alternates so that a disk slowing down over the run favours neither.
            if number % 2:
                times["install 1"].append(timed(install))
                times["cp -a"].append(timed(copy))
            else:
                times["cp -a"].append(timed(copy))
                times["install 1"].append(timed(install))
            if touch:
                touch_tree(archive)
            times["install 2"].append(timed(install))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        times["peak RSS MiB"] = [peak]
        return times
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def report(files: int, folders: int, times: Dict[str, List[float]]) -> None:
    print(f"{files} files of 1 KB in {folders} folders, {len(times['cp -a'])} rounds")
    for number, copy in enumerate(times["cp -a"]):
        first, second = times["install 1"][number], times["install 2"][number]
        print(
            f"  round {number + 1}: cp -a {copy:.3f} s | install 1 {first:.3f} s"
            f" ({first / copy:.2f}x) | install 2 {second:.3f} s ({second / copy:.2f}x)"
        )
    best = {step: min(times[step]) for step in STEPS}
    print(
        f"  best:    cp -a {best['cp -a']:.3f} s | install 1 {best['install 1']:.3f} s"
        f" ({best['install 1'] / best['cp -a']:.2f}x) | install 2 {best['install 2']:.3f} s"
        f" ({best['install 2'] / best['cp -a']:.2f}x)"
    )
    print(f"  peak RSS {times['peak RSS MiB'][0]:.1f} MiB")


def rss_compare(folders: int, rounds: int) -> None:
    peaks: List[float] = []
    for files in (20_000, 200_000):
        completed = subprocess.run(
            [
                sys.executable,
                __file__,
                *("--files", str(files), "--folders", str(folders), "--rounds", str(rounds)),
                "--json",
            ],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        times = json.loads(completed.stdout.splitlines()[-1])
        report(files, folders, times)
        peaks.append(times["peak RSS MiB"][0])
    print(f"peak RSS 200k / 20k: {peaks[1] / peaks[0]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss-compare", action="store_true")
    parser.add_argument(
        "--touch",
        action="store_true",
        help="new mtimes before the second install: nothing of the first can be kept",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    arguments = parser.parse_args()
    if arguments.rss_compare:
        rss_compare(arguments.folders, arguments.rounds)
        return
    results = run_case(
        arguments.files, arguments.folders, arguments.rounds, arguments.keep, arguments.touch
    )
    if arguments.json:
        print(json.dumps(results))
    else:
        report(arguments.files, arguments.folders, results)


if __name__ == "__main__":
    main()
