"""The server's work besides answering requests, started and stopped with it.

Every second, a thread fails the host commands that showed no sign of life for
``host_command_timeout_seconds`` (and so their hosts), one deployment per transaction, and
wakes the hosts that got a command out of it. With PostgreSQL, another thread listens for
commands queued by the other server processes sharing the database
(:class:`server.host_wakeups.PostgresNotifications`). Several processes may sweep at once:
each deployment's row is locked while its commands are looked at, and a command already
decided is left alone.
"""

from __future__ import annotations

import threading
from typing import Optional, Set

import structlog
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from server.host_command_flow import expire_commands, stale_deployment_ids
from server.host_wakeups import PostgresNotifications, announce_in_transaction
from server.web.json_protocol import ApiServices

log = structlog.get_logger(__name__)

SWEEP_SECONDS = 1.0


class BackgroundWork:
    """``start()`` once the event loop runs, ``stop()`` when the server stops."""

    def __init__(self, services: ApiServices) -> None:
        self._services = services
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_forever, name="sweeper", daemon=True)
        self._listener: Optional[PostgresNotifications] = None
        if services.database.dialect == "postgresql":
            self._listener = PostgresNotifications(services.database.url, services.wakeups)

    def start(self) -> None:
        self._sweeper.start()
        if self._listener is not None:
            self._listener.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sweeper.is_alive():
            self._sweeper.join(timeout=10)
        if self._listener is not None:
            self._listener.stop()

    def _sweep_forever(self) -> None:
        while not self._stop.wait(SWEEP_SECONDS):
            try:
                self.sweep_once()
            except SQLAlchemyError as error:
                log.warning("the timeout sweep failed", error=" ".join(str(error).split())[:300])

    def sweep_once(self) -> int:
        """Fail the commands that timed out now; how many (the database)."""
        services = self._services
        timeout = services.config.host_command_timeout_seconds
        now = services.clock()
        with services.database.read() as connection:
            stale = stale_deployment_ids(connection, timeout, now)
        expired = 0
        for deployment_id in stale:
            count = self._expire(deployment_id, timeout, now)
            if count:
                log.warning("host commands timed out", deployment_id=deployment_id, commands=count)
            expired += count
        return expired

    def _expire(self, deployment_id: str, timeout: float, now: float) -> int:
        services = self._services
        woken: Set[str] = set()

        def expire(connection: Connection) -> int:
            woken.clear()
            count = expire_commands(connection, deployment_id, timeout, now, woken)
            announce_in_transaction(connection, woken)
            return count

        count = services.database.write_retrying(expire)
        services.wakeups.wake(woken)
        return count
