"""Waking the long polls of hosts that got a new command.

An agent's PollHostCommand waits on the server's event loop until a command is queued for
its host (or the poll's time is up). :class:`HostWakeups` holds those waits, by instance
name; whatever queued a command (a completion, a new deployment, a timeout, a stop) wakes
the host once its transaction has committed, from any thread. A woken poll looks in the
database again, so a wake-up that finds nothing costs one read, never a wrong answer.

With PostgreSQL, several server processes may share one fleet: a host polling one process
must notice a command queued by another. The transaction that queues commands also sends
``NOTIFY codedeploy_host_commands`` with the hosts' names (delivered at commit, and only
then); :class:`PostgresNotifications` is a thread per process that LISTENs on its own
connection and wakes the named hosts, and all of them after it lost and regained its
connection (a notification may have been missed meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, make_url

from server.database.compiled import CompiledStatement

log = structlog.get_logger(__name__)

CHANNEL = "codedeploy_host_commands"
ALL_HOSTS = "*"
# PostgreSQL refuses payloads of 8000 bytes or more; names are at most 100 characters.
_PAYLOAD_BUDGET = 7000
# Run compiled: one per transaction that queues a command (server/database/compiled.py).
_NOTIFY = CompiledStatement(
    sa.select(sa.func.pg_notify(sa.bindparam("channel"), sa.bindparam("payload")))
)


class HostWakeups:
    """The waiting polls of this process, by instance name (their event loop's own)."""

    def __init__(self) -> None:
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._waiting: Dict[str, Set[asyncio.Future[None]]] = {}
        self._forward: Optional[Callable[[List[str]], None]] = None

    def also_tell(self, forward: Callable[[List[str]], None]) -> None:
        """Pass every wake-up on to ``forward`` too (the other processes of this server,
        when they share a SQLite file: server/web/server_processes.py)."""
        self._forward = forward

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the polls wait on (the server's, once it runs)."""
        self._loop = loop

    @contextlib.contextmanager
    def waiter(self, instance: str) -> Iterator[asyncio.Future[None]]:
        """A future done when ``instance`` is woken: register it, then look in the
        database, then await it, so that no wake-up falls between the two."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(instance, set()).add(future)
        try:
            yield future
        finally:
            waiting = self._waiting.get(instance)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiting[instance]

    def wake(self, instances: Iterable[str]) -> None:
        """Wake these hosts' polls (any thread; nothing happens before :meth:`bind`)."""
        names = list(instances)
        if names and self._forward is not None:
            self._forward(names)
        self.wake_here(names)

    def wake_here(self, names: List[str]) -> None:
        """Wake these polls of this process only (``*``: all of them)."""
        if names and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake_now, names)

    def wake_all(self) -> None:
        self.wake_here([ALL_HOSTS])

    def _wake_now(self, names: List[str]) -> None:
        chosen = list(self._waiting) if ALL_HOSTS in names else names
        for name in chosen:
            for future in self._waiting.get(name, ()):
                if not future.done():
                    future.set_result(None)


def announce_in_transaction(connection: Connection, instances: Iterable[str]) -> None:
    """On PostgreSQL, tell every server process which hosts got commands, at commit."""
    if connection.dialect.name != "postgresql":
        return
    for payload in name_payloads(sorted(set(instances)), _PAYLOAD_BUDGET):
        _NOTIFY.run(connection, {"channel": CHANNEL, "payload": payload})


def name_payloads(names: Iterable[str], budget: int) -> List[str]:
    """The hosts' names, one a line, in as few texts of at most ``budget`` characters as
    they fit in (a name is far shorter than any budget): what a wake-up message carries."""
    payloads: List[str] = []
    batch: List[str] = []
    size = 0
    for name in names:
        if batch and size + len(name) > budget:
            payloads.append("\n".join(batch))
            batch, size = [], 0
        batch.append(name)
        size += len(name) + 1
    if batch:
        payloads.append("\n".join(batch))
    return payloads


class PostgresNotifications:
    """A thread that LISTENs for other processes' announcements and wakes the hosts."""

    RETRY_SECONDS = 1.0

    def __init__(self, database_url: str, wakeups: HostWakeups) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._wakeups = wakeups
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    if not first:
                        self._wakeups.wake_all()
                    first = False
                    self._listen(connection)
            except psycopg.Error as error:
                log.warning("listening for host commands failed; retrying", error=str(error)[:200])
                self._stop.wait(self.RETRY_SECONDS)

    def _listen(self, connection: object) -> None:
        while not self._stop.is_set():
            for notice in connection.notifies(timeout=1.0):  # type: ignore[attr-defined]
                self._wakeups.wake_here(notice.payload.split("\n"))
