"""Micro-benchmark: getting a revision into deployment-archive/ against the classic tools.

Builds a tree of small files (20,000 x 1 KB in 100 folders by default), packs it as tgz,
tar and zip, then times, alternately and in the same run, the baseline tool and our
function for each case: ``tar -xzf`` / ``tar -xf`` / ``unzip -q`` against
``unpack_bundle_to_disk``, and ``cp -a`` against ``copy_directory_revision_to_disk``.
Outputs go to a folder as deep as a real deployment folder, on the disk under --root.
The disk is synced before each run (unless --no-sync) so that one run's write-back does
not land in the next one's time. Prints the minimum and median of each and the ratio of the medians.

    .venv/bin/python benchmarks/unpack_bench.py [--root /var/tmp] [--files 20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.deployment_specification.model import BundleType
from agent.revision.fetchers.local import copy_directory_revision_to_disk
from agent.revision.unpack import unpack_bundle_to_disk


def build_tree_on_disk(root: Path, files: int, size: int, folders: int) -> Path:
    tree = root / "source" / "app"
    for index in range(files):
        folder = tree / f"dir{index % folders:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{index:05d}.txt").write_bytes(os.urandom(size))
    script = tree / "scripts" / "start.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\necho started\n", encoding="utf-8")
    script.chmod(0o755)
    (tree / "appspec.yml").write_text("version: 0.0\nos: linux\n", encoding="utf-8")
    return tree


def build_bundles_on_disk(tree: Path, root: Path) -> Dict[str, Path]:
    bundles = {"tgz": root / "bundle.tgz", "tar": root / "bundle.tar", "zip": root / "bundle.zip"}
    with tarfile.open(bundles["tgz"], "w:gz", compresslevel=6) as archive:
        archive.add(tree, arcname=".")
    with tarfile.open(bundles["tar"], "w") as archive:
        archive.add(tree, arcname=".")
    with zipfile.ZipFile(bundles["zip"], "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(tree.rglob("*")):
            archive.write(path, path.relative_to(tree).as_posix())
    return bundles


def timed(action: Callable[[], None], sync: bool) -> float:
    if sync:
        subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_tool(*argv: str) -> Callable[[], None]:
    return lambda: subprocess.run(list(argv), check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/var/tmp", help="where to work (a real disk)")
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--folders", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cases", default="tgz,tar,zip,directory")
    parser.add_argument(
        "--no-sync", action="store_true", help="do not sync the disk before each run"
    )
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="unpack-bench-", dir=options.root))
    try:
        tree = build_tree_on_disk(work, options.files, options.size, options.folders)
        bundles = build_bundles_on_disk(tree, work)
        # As deep as <root_dir>/<group-id>/<deployment-id>/ on a real host.
        deployment = work / "opt" / "codedeploy-agent" / "deployment-root"
        deployment = deployment / "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0" / "d-ABCDEFGHI"
        deployment.mkdir(parents=True)
        archive_dir = deployment / "deployment-archive"
        baseline_out = deployment / "baseline"

        cases: Dict[str, Tuple[str, Callable[[], None], Callable[[], None]]] = {}
        for kind, flag in (("tgz", "-xzf"), ("tar", "-xf")):
            bundle, bundle_type = bundles[kind], BundleType(kind)
            cases[kind] = (
                f"tar {flag}",
                run_tool("tar", "-C", str(baseline_out), flag, str(bundle)),
                lambda b=bundle, t=bundle_type: unpack_bundle_to_disk(b, t, archive_dir),
            )
        cases["zip"] = (
            "unzip -q",
            run_tool("unzip", "-q", str(bundles["zip"]), "-d", str(baseline_out)),
            lambda: unpack_bundle_to_disk(bundles["zip"], BundleType.ZIP, archive_dir),
        )
        cases["directory"] = (
            "cp -a",
            run_tool("cp", "-a", str(tree), str(baseline_out)),
            lambda: copy_directory_revision_to_disk(tree, archive_dir),
        )

        print(f"{options.files} files x {options.size} B, {options.repeat} runs each, in {work}")
        print(
            f"{'case':10} {'baseline':10} {'min':>7} {'median':>7} {'ours min':>9} {'median':>7} {'ratio':>6}"
        )
        for name in options.cases.split(","):
            label, baseline, ours = cases[name]
            base_times: List[float] = []
            our_times: List[float] = []
            for _ in range(options.repeat):
                shutil.rmtree(baseline_out, ignore_errors=True)
                if name != "directory":
                    baseline_out.mkdir()
                base_times.append(timed(baseline, not options.no_sync))
                shutil.rmtree(baseline_out, ignore_errors=True)
                shutil.rmtree(archive_dir, ignore_errors=True)
                our_times.append(timed(ours, not options.no_sync))
                shutil.rmtree(archive_dir, ignore_errors=True)
            base_median = statistics.median(base_times)
            our_median = statistics.median(our_times)
            print(
                f"{name:10} {label:10} {min(base_times):7.3f} {base_median:7.3f}"
                f" {min(our_times):9.3f} {our_median:7.3f} {our_median / base_median:6.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
