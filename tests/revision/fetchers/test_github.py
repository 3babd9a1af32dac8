"""GitHub revisions: fetched from a stub API on loopback that redirects to a stub download
host on another port, as GitHub redirects to codeload."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import pytest
from structlog.testing import capture_logs

from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import BundleType, GitHubRevision
from agent.host_command.download_bundle import download_revision_to_disk
from agent.revision.bundle import UnpackPolicy
from agent.revision.errors import BundleError
from agent.revision.fetchers.github import download_github_bundle_to_disk
from agent.revision.fetchers.settings import FetchSettings
from tests.support.archives import file, make_tar

TOKEN = "ghp_SECRETtoken1234567890"
ARCHIVE = b"pretend this is a tarball " * 100


@dataclass
class GitHubStub:
    """How the stub API answers, and every request both stub hosts received."""

    archive: bytes = ARCHIVE
    # API answers 500 this many times before it redirects.
    failures_before_success: int = 0
    # API always answers with this status instead.
    status: Optional[int] = None
    # API redirects to itself (same origin) before redirecting to the download host.
    redirect_via_api: bool = False
    # The download host sends only this many bytes of its first answer.
    cut_first_download_after: Optional[int] = None
    download_origin: str = ""
    requests: List[Tuple[str, str, Dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, host: str, path: str, headers: Dict[str, str]) -> int:
        with self.lock:
            self.requests.append((host, path, headers))
            return len(self.requests)

    def headers_of(self, host: str) -> List[Dict[str, str]]:
        return [headers for name, _, headers in self.requests if name == host]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        stub, host = self.server.stub, self.server.host
        stub.record(host, self.path, dict(self.headers.items()))
        if host == "api":
            self._api(stub)
        else:
            self._download(stub)

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _api(self, stub: GitHubStub) -> None:
        if stub.status is not None:
            self._send(stub.status, b'{"message": "Not Found"}')
            return
        if len(stub.headers_of("api")) <= stub.failures_before_success:
            self._send(500, b"oops")
            return
        if stub.redirect_via_api and not self.path.startswith("/moved"):
            self._send(302, Location="/moved" + self.path)
            return
        target = f"{stub.download_origin}/legacy.tar.gz{self.path}?token=short-lived"
        self._send(302, Location=target)

    def _download(self, stub: GitHubStub) -> None:
        first = len(stub.headers_of("download")) == 1
        if first and stub.cut_first_download_after is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(stub.archive)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(stub.archive[: stub.cut_first_download_after])
            self.close_connection = True
            return
        self._send(200, stub.archive, Content_Type="application/x-gzip")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, stub: GitHubStub, host: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stub = stub
        self.host = host

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextlib.contextmanager
def github_stub(stub: GitHubStub) -> Iterator[str]:
    """Start the stub API and download host; yield the API base URL."""
    servers = [_Server(stub, "api"), _Server(stub, "download")]
    stub.download_origin = servers[1].origin
    threads = [
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        for server in servers
    ]
    for thread in threads:
        thread.start()
    try:
        yield servers[0].origin + "/api/v3"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join()


def _settings(api: str, **overrides: Any) -> FetchSettings:
    values: Dict[str, Any] = {
        "github_api_endpoint": api,
        "max_attempts": 3,
        "retry_delay_seconds": 0.01,
    }
    values.update(overrides)
    return FetchSettings(**values)


def _revision(token: Optional[str] = TOKEN, **fields: Any) -> GitHubRevision:
    return GitHubRevision("octo", "app", "abc123", access_token=token, **fields)


def _no_token_anywhere(logs: Sequence[Mapping[str, Any]], *texts: str) -> None:
    assert TOKEN not in repr(logs)
    for text in texts:
        assert TOKEN not in text


def test_token_goes_to_the_api_only(tmp_path: Path) -> None:
    stub = GitHubStub()
    bundle = tmp_path / "bundle.tar"
    with github_stub(stub) as api, capture_logs() as logs:
        download_github_bundle_to_disk(_revision(), bundle, _settings(api))
    assert bundle.read_bytes() == ARCHIVE
    (api_path, api_headers), (download_path, download_headers) = [
        (path, headers) for _, path, headers in stub.requests
    ]
    assert api_path == "/api/v3/repos/octo/app/tarball/abc123"
    assert api_headers["Authorization"] == f"token {TOKEN}"
    assert download_path.startswith("/legacy.tar.gz/api/v3/repos/octo/app/tarball/abc123")
    assert "Authorization" not in download_headers
    assert [name for name in os.listdir(tmp_path)] == ["bundle.tar"]
    _no_token_anywhere(logs)


def test_a_same_origin_redirect_keeps_the_token(tmp_path: Path) -> None:
    stub = GitHubStub(redirect_via_api=True)
    with github_stub(stub) as api:
        download_github_bundle_to_disk(_revision(), tmp_path / "bundle.tar", _settings(api))
    api_headers = stub.headers_of("api")
    assert len(api_headers) == 2
    assert all(headers["Authorization"] == f"token {TOKEN}" for headers in api_headers)
    assert "Authorization" not in stub.headers_of("download")[0]


def test_zip_bundles_use_the_zipball_and_no_token_sends_no_header(tmp_path: Path) -> None:
    stub = GitHubStub()
    with github_stub(stub) as api:
        download_github_bundle_to_disk(
            _revision(token=None, bundle_type=BundleType.ZIP),
            tmp_path / "bundle.tar",
            _settings(api),
        )
    assert stub.requests[0][1] == "/api/v3/repos/octo/app/zipball/abc123"
    assert all("Authorization" not in headers for _, _, headers in stub.requests)


def test_server_errors_are_retried(tmp_path: Path) -> None:
    stub = GitHubStub(failures_before_success=2)
    bundle = tmp_path / "bundle.tar"
    with github_stub(stub) as api, capture_logs() as logs:
        download_github_bundle_to_disk(_revision(), bundle, _settings(api))
    assert bundle.read_bytes() == ARCHIVE
    assert len(stub.headers_of("api")) == 3
    retries = [entry for entry in logs if entry["event"] == "GitHub download failed, retrying"]
    assert [entry["reason"] for entry in retries] == ["GitHub answered HTTP 500"] * 2
    _no_token_anywhere(logs)


def test_a_cut_download_is_retried(tmp_path: Path) -> None:
    stub = GitHubStub(cut_first_download_after=100)
    bundle = tmp_path / "bundle.tar"
    with github_stub(stub) as api:
        download_github_bundle_to_disk(_revision(), bundle, _settings(api))
    assert bundle.read_bytes() == ARCHIVE
    assert len(stub.headers_of("download")) == 2
    assert [name for name in os.listdir(tmp_path)] == ["bundle.tar"]


def test_persistent_server_errors_give_up(tmp_path: Path) -> None:
    stub = GitHubStub(status=502)
    with github_stub(stub) as api, capture_logs() as logs, pytest.raises(BundleError) as raised:
        download_github_bundle_to_disk(_revision(), tmp_path / "bundle.tar", _settings(api))
    assert str(raised.value) == (
        "cannot download octo/app@abc123 from GitHub after 3 attempts: GitHub answered HTTP 502"
    )
    _no_token_anywhere(logs, str(raised.value))
    assert not (tmp_path / "bundle.tar").exists()


def test_not_found_names_the_commit(tmp_path: Path) -> None:
    stub = GitHubStub(status=404)
    with github_stub(stub) as api, capture_logs() as logs, pytest.raises(BundleError) as raised:
        download_github_bundle_to_disk(_revision(), tmp_path / "bundle.tar", _settings(api))
    message = str(raised.value)
    assert message.startswith("GitHub has no commit octo/app@abc123 (HTTP 404")
    assert len(stub.requests) == 1
    _no_token_anywhere(logs, message)


@pytest.mark.parametrize(("status", "expected"), [(401, "invalid or expired"), (403, "lacks")])
def test_refused_token_is_explained(tmp_path: Path, status: int, expected: str) -> None:
    stub = GitHubStub(status=status)
    with github_stub(stub) as api, capture_logs() as logs, pytest.raises(BundleError) as raised:
        download_github_bundle_to_disk(_revision(), tmp_path / "bundle.tar", _settings(api))
    message = str(raised.value)
    assert f"HTTP {status}" in message
    assert expected in message
    assert "octo/app@abc123" in message
    _no_token_anywhere(logs, message, repr(raised.value))


def test_unreachable_api_is_retried_then_reported(tmp_path: Path) -> None:
    stub = GitHubStub()
    with github_stub(stub) as api:
        pass
    with pytest.raises(BundleError) as raised:
        download_github_bundle_to_disk(_revision(), tmp_path / "bundle.tar", _settings(api))
    assert str(raised.value).startswith("cannot download octo/app@abc123 from GitHub after 3")
    assert "refused" in str(raised.value).lower()


def test_an_announced_size_beyond_the_free_space_is_refused_before_writing(
    tmp_path: Path, small_disk: Path
) -> None:
    stub = GitHubStub(archive=os.urandom(2 << 20))
    bundle = small_disk / "bundle.tar"
    with github_stub(stub) as api, pytest.raises(BundleError) as caught:
        download_github_bundle_to_disk(_revision(), bundle, _settings(api))
    message = str(caught.value)
    assert f", stored as {bundle}, needs 2.0 MiB" in message
    assert f"the filesystem mounted on {small_disk} has" in message
    assert os.listdir(small_disk) == []


def test_github_tarball_is_unpacked(tmp_path: Path) -> None:
    # GitHub's tarballs are gzipped and hold one folder named after the commit.
    tarball = make_tar(
        tmp_path / "github.tgz",
        [file("octo-app-abc123/appspec.yml", b"version: 0.0\nos: linux\n")],
        compression="gz",
    )
    stub = GitHubStub(archive=tarball.read_bytes())
    deployment = DeploymentDir(tmp_path / "root" / "group" / "d-GHTEST")
    deployment.path.mkdir(parents=True)
    with github_stub(stub) as api:
        download_revision_to_disk(
            _revision(),
            deployment,
            appspec_filename="appspec.yml",
            policy=UnpackPolicy(),
            fetch=_settings(api),
        )
    assert (deployment.archive / "appspec.yml").read_bytes() == b"version: 0.0\nos: linux\n"
