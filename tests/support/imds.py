"""An EC2 instance metadata service (IMDS) stand-in for tests, on 127.0.0.1.

It behaves like IMDS where the agent depends on it: a PUT to ``/latest/api/token`` with a
TTL header issues a session token, and a GET without a valid token is refused with 401
unless IMDSv1 is allowed. It can also fail its first requests with 503 (IMDS not up yet),
answer the token request as IMDSv2-less (403/404/405), or leave it unanswered (a hop
limit of 1), and it records every request so tests can check what the agent sent.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Dict, List, Optional, Tuple, Type

from agent.aws_clients.instance_metadata import (
    DOCUMENT_PATH,
    PARTITION_PATH,
    TOKEN_HEADER,
    TOKEN_PATH,
    TOKEN_TTL_HEADER,
)

DEFAULT_DOCUMENT: Dict[str, Any] = {
    "accountId": "123456789012",
    "architecture": "x86_64",
    "availabilityZone": "eu-west-1a",
    "imageId": "ami-0123456789abcdef0",
    "instanceId": "i-0123456789abcdef0",
    "instanceType": "t3.micro",
    "pendingTime": "2024-01-01T00:00:00Z",
    "privateIp": "10.0.0.10",
    "region": "eu-west-1",
    "version": "2017-09-30",
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: Dict[str, str]

    def header(self, name: str) -> Optional[str]:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class ImdsBehaviour:
    """What the stub serves and how it misbehaves; change it before or between requests."""

    document: Dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_DOCUMENT))
    partition: Optional[str] = "aws"  # None: the partition path answers 404
    allow_v1: bool = False
    token_status: int = 200  # anything else: the token request answers that status
    token_unanswered: bool = False  # the token request gets no answer until the stub stops
    fail_first: int = 0  # this many requests (of any kind) answer 503 first


class ImdsStub:
    """A threaded IMDS stand-in; use as a context manager, point the agent at ``endpoint``."""

    def __init__(self, behaviour: Optional[ImdsBehaviour] = None) -> None:
        self.behaviour = behaviour or ImdsBehaviour()
        self.requests: List[RecordedRequest] = []
        self.issued_tokens: List[str] = []
        self.token_ttls: List[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # A short poll interval keeps the stop (and so each test) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def requests_to(self, path: str) -> List[RecordedRequest]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def __enter__(self) -> ImdsStub:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: Optional[Type[BaseException]],
        _value: Optional[BaseException],
        _traceback: Optional[TracebackType],
    ) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _answer(self, method: str, path: str, headers: Dict[str, str]) -> Tuple[int, bytes]:
        """The status and body for one request; ``-1`` means leave it unanswered."""
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers))
            behaviour = self.behaviour
            if behaviour.fail_first > 0:
                behaviour.fail_first -= 1
                return 503, b"Service Unavailable"
            lowered = {key.lower(): value for key, value in headers.items()}
            if path == TOKEN_PATH:
                return self._answer_token_request(method, lowered)
            if method != "GET":
                return 405, b"Method Not Allowed"
            token = lowered.get(TOKEN_HEADER.lower())
            if token is not None and token not in self.issued_tokens:
                return 401, b"Unauthorized"
            if token is None and not behaviour.allow_v1:
                return 401, b"Unauthorized"
            if path == DOCUMENT_PATH:
                return 200, json.dumps(behaviour.document, indent=2).encode("utf-8")
            if path == PARTITION_PATH and behaviour.partition is not None:
                return 200, behaviour.partition.encode("utf-8")
            return 404, b"Not Found"

    def _answer_token_request(self, method: str, headers: Dict[str, str]) -> Tuple[int, bytes]:
        behaviour = self.behaviour
        if behaviour.token_unanswered:
            return -1, b""
        if behaviour.token_status != 200:
            return behaviour.token_status, b"IMDSv2 not here"
        if method != "PUT":
            return 405, b"Method Not Allowed"
        ttl = headers.get(TOKEN_TTL_HEADER.lower())
        if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return 400, b"Bad Request"
        token = "stub-imds-" + secrets.token_urlsafe(24)
        self.issued_tokens.append(token)
        self.token_ttls.append(ttl)
        return 200, token.encode("ascii")

    def _handler_class(self) -> Type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, body = stub._answer(self.command, self.path, dict(self.headers.items()))
                if status < 0:
                    stub._stopping.wait()
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _serve
            do_PUT = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
