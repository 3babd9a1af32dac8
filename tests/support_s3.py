"""Test support for S3 revisions: moto's S3 server and a tiny stub S3 endpoint on loopback.

moto stands in for S3 where its behaviour is faithful (versions, ETags, ranges, If-Match).
The stub serves one object and can misbehave on purpose (refuse access, cut a body
short) and records every request, so tests can see which ranges were asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import boto3
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from moto.server import ThreadedMotoServer

from agent.revision.fetchers.settings import FetchSettings
from tests.support import LocalAgent

REGION = "us-east-1"
# moto accepts any keys; the stub does not check signatures at all.
TEST_CREDENTIALS = Credentials("AKIDTESTTESTTESTTEST", "test-secret-key")


# What a codedeploy-local subprocess needs in its environment to reach moto.
LOCAL_AGENT_ENV: Dict[str, str] = {
    "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS.access_key,
    "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS.secret_key,
    "AWS_REGION": REGION,
}


def put_object_in_moto(endpoint: str, bucket: str, key: str, body: bytes) -> str:
    """Create ``bucket`` in moto and store ``body`` at ``key``; returns the ETag."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=TEST_CREDENTIALS.access_key,
        aws_secret_access_key=TEST_CREDENTIALS.secret_key,
    )
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
