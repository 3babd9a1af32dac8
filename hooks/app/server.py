#!/usr/bin/env python3
"""The sample service: answers /health and / with the deployment that installed it."""

import http.server
import json
import os
import pathlib

HERE = pathlib.Path(__file__).resolve().parent


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        release = (HERE / "RELEASE").read_text(encoding="utf-8").strip()
        body = json.dumps({"status": "ok", "release": release, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        print(format % args, flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("SAMPLE_APP_PORT", "8642"))
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
