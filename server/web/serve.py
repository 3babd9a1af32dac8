"""Serving the application with uvicorn until SIGTERM, then leaving cleanly.

The listening socket is bound here first, so a port in use or an address that does not
exist is one clear line before anything starts, and port 0 gives a free port whose
number is known. HTTPS when a certificate is configured (its files are loaded once here
too, for the same reason). When uvicorn serves, the server prints one flushed line,
``listening on <URL>``, and tells systemd ``READY=1`` (a ``Type=notify`` unit). SIGTERM
or SIGINT stop accepting connections, let requests in flight finish (up to
``shutdown_grace_seconds``), and ``run`` returns 0. With ``server_processes`` above 1 the
copies are forked once the port is bound (server/web/server_processes.py), and the line and
READY=1 wait until every one of them serves.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import threading
from typing import Callable, List, Mapping, Optional

import structlog
import uvicorn

from agent.daemon.systemd_notify import notify_systemd
from server.configuration import ListenAddress, ServerConfig
from server.errors import ServerError
from server.web.app import ServerApp
from server.web.server_processes import (
    ServerProcesses,
    fork_server_processes,
    stop_copies,
    tell_first_process_ready,
    wait_for_copies_ready,
    watch_copies,
)

log = structlog.get_logger(__name__)


def bind_listening_socket(address: ListenAddress) -> socket.socket:
    """A socket listening on ``address`` (the network); one line when it cannot be."""
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise ServerError(f"cannot listen on {address}: {error.strerror}") from None
    family, kind, protocol, _name, where = infos[0]
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(where)
        listener.listen(1024)
    except OSError as error:
        listener.close()
        raise ServerError(f"cannot listen on {address}: {error.strerror or error}") from None
    listener.setblocking(False)
    return listener


def check_tls_files_on_disk(config: ServerConfig) -> None:
    """Load the certificate and key once, so a bad pair is one line at start-up."""
    if config.tls_certificate_file is None or config.tls_key_file is None:
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(config.tls_certificate_file), str(config.tls_key_file))
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)
        raise ServerError(
            f"TLS certificate {config.tls_certificate_file} with key {config.tls_key_file}"
            f" cannot be used: {reason}"
        ) from None


def listening_url(config: ServerConfig, listener: socket.socket) -> str:
    port = listener.getsockname()[1]
    scheme = "https" if config.tls_enabled else "http"
    host = config.listen.host
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class _ReadyServer(uvicorn.Server):
    """uvicorn's server, starting the app's own work and telling the world once it accepts
    connections, and letting the app answer its waiting polls when it is asked to stop
    (and the server's other processes, from the first one)."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: ServerApp,
        on_ready: Callable[[], None],
        processes: ServerProcesses,
    ) -> None:
        super().__init__(config)
        self._app = app
        self._on_ready = on_ready
        self._processes = processes

    async def startup(self, sockets: Optional[List[socket.socket]] = None) -> None:
        await super().startup(sockets)
        if self.started:
            await self._app.started()
            self._on_ready()

    async def shutdown(self, sockets: Optional[List[socket.socket]] = None) -> None:
        if self._processes.is_first:
            stop_copies(self._processes)
        await self._app.stopping()
        await super().shutdown(sockets)


def serve_until_stopped(config: ServerConfig, app: ServerApp, environ: Mapping[str, str]) -> int:
    """Serve ``app`` until SIGTERM/SIGINT (from ``server_processes`` processes); 0 when it
    stopped as asked."""
    check_tls_files_on_disk(config)
    listener = bind_listening_socket(config.listen)
    url = listening_url(config, listener)
    siblings = app.prepare_for_processes(config.effective_server_processes)
    processes = fork_server_processes(config.effective_server_processes)
    app.become_process(processes.index, siblings)
    watchers: List[threading.Thread] = []
    server: Optional[_ReadyServer] = None

    def stop_unasked() -> None:
        if server is not None:
            server.should_exit = True

    def on_ready() -> None:
        if not processes.is_first:
            tell_first_process_ready(processes)
            return
        wait_for_copies_ready(processes)
        watchers.extend(watch_copies(processes, stop_unasked))
        log.info(
            "serving",
            url=url,
            database=config.effective_database_url.split("://")[0],
            processes=config.effective_server_processes,
        )
        print(f"listening on {url}", flush=True)
        notify_systemd("READY=1", environ)

    server = _ReadyServer(_uvicorn_config(config, app), app, on_ready, processes)
    # uvicorn handles SIGTERM/SIGINT while it serves, then raises the signal again for the
    # handler that was there before: a do-nothing one, so that stopping as asked is exit 0.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: None)
    try:
        asyncio.run(server.serve(sockets=[listener]))
    finally:
        listener.close()
        if processes.is_first:
            stop_copies(processes)
    if not processes.is_first:
        return 0
    for watcher in watchers:
        watcher.join(config.shutdown_grace_seconds + 10)
    notify_systemd("STOPPING=1", environ)
    log.info("stopped")
    if processes.failures:
        raise ServerError("; ".join(processes.failures))
    return 0


def _uvicorn_config(config: ServerConfig, app: ServerApp) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        # The client's address is never used: no X-Forwarded-For to parse per request.
        proxy_headers=False,
        timeout_graceful_shutdown=max(1, round(config.shutdown_grace_seconds)),
        ssl_certfile=str(config.tls_certificate_file) if config.tls_certificate_file else None,
        ssl_keyfile=str(config.tls_key_file) if config.tls_key_file else None,
    )
