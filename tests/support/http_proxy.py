"""A plain forwarding HTTP proxy on loopback, to show that a client really goes through
the proxy it is configured with (``proxy_uri``, for the command service and S3 alike)."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, List, Tuple
from urllib.parse import urlsplit


class ForwardingProxy:
    """A plain HTTP proxy on loopback (absolute-form requests, no CONNECT) that records
    the URLs it forwarded (and, in ``seen``, each request's method, URL and User-Agent),
    to show that a client really went through it."""

    def __init__(self) -> None:
        self.forwarded: List[str] = []
        self.seen: List[Tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> ForwardingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _handler(self) -> type:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                self._forward()

            def do_GET(self) -> None:
                self._forward()

            def do_HEAD(self) -> None:
                self._forward()

            def _forward(self) -> None:
                target = urlsplit(self.path)
                if not target.scheme or target.hostname is None:
                    self.send_error(400, "absolute URL expected")
                    return
                with proxy._lock:
                    proxy.forwarded.append(self.path)
                    proxy.seen.append((self.command, self.path, self.headers["User-Agent"] or ""))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in ("proxy-connection", "proxy-authorization")
                }
                path = target.path or "/"
                if target.query:
                    path = f"{path}?{target.query}"
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    upstream.request(self.command, path, body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    kept = name.lower() not in ("content-length", "connection", "transfer-encoding")
                    # A HEAD answer's length is that of the body it would have had.
                    if kept or (self.command == "HEAD" and name.lower() == "content-length"):
                        self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def without_feature_ids(user_agent: str) -> str:
    """A recorded User-Agent without botocore's ``m/`` token (the features a request used,
    which vary per request), so that the agent's requests can be compared with each other."""
    return " ".join(token for token in user_agent.split() if not token.startswith("m/"))
