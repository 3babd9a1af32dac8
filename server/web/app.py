"""The server's ASGI application: ``POST /`` for the JSON 1.1 APIs, ``GET /health``.

The event loop only moves bytes: the body is read (up to ``max_request_bytes``), then
everything that may touch the database (the key lookup, the operation) runs in the
server's worker threads, so a slow query never stalls other clients. An agent's
PollHostCommand waits on the loop, holding no thread, until a command is queued for its
host, its ``poll_wait_seconds`` are up, the agent hangs up (then nothing is handed out to
it), or the server stops (then it answers at once, with no command). While
``busy_request_limit`` requests are being answered, a poll waits its turn before it looks
for a command at all (server/web/backlog.py says why). ``/health`` needs no signature and
says only whether the database answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional, Set, Tuple

import sqlalchemy as sa
import structlog

from server.command_service import HostPoll, hand_out_to_poll
from server.configuration import ServerConfig
from server.errors import ApiError
from server.request_auth.sigv4 import ReceivedRequest
from server.web.background import BackgroundWork
from server.web.backlog import RequestBacklog
from server.web.json_protocol import (
    JSON_CONTENT_TYPE,
    ApiServices,
    Outcome,
    answer_api_request,
    failure_outcome,
)
from server.web.server_processes import SiblingWakeups

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
HEALTH_PATH = "/health"
# At most one line a minute says that polls are being held back (a saturated server).
BUSY_NOTE_SECONDS = 60.0


class _TooLarge(Exception):
    pass


def _headers(scope: Scope) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: List[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_json(send: Send, status: int, document: Any, content_type: str) -> None:
    body = json.dumps(document).encode("utf-8")
    headers: List[Tuple[bytes, bytes]] = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _hang_up(receive: Receive) -> None:
    """Returns when the client has gone (the request's body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _share_of_limit(config: ServerConfig) -> int:
    """This process's share of ``busy_request_limit`` (0 stays 0: no limit)."""
    limit, processes = config.busy_request_limit, config.effective_server_processes
    return 0 if limit == 0 else max(1, -(-limit // processes))


class ServerApp:
    """The ASGI callable uvicorn serves; ``started()`` and ``stopping()`` bracket serving."""

    def __init__(self, services: ApiServices, executor: ThreadPoolExecutor) -> None:
        self._services = services
        self._executor = executor
        self._background = BackgroundWork(services)
        self._backlog = RequestBacklog(_share_of_limit(services.config))
        self._busy_noted_at = -BUSY_NOTE_SECONDS
        self._siblings: Optional[SiblingWakeups] = None
        self._stopping: Optional[asyncio.Event] = None
        # Bound once (logging is configured by now): the proxy would bind on every line.
        self._log = log.bind()

    def prepare_for_processes(self, count: int) -> Optional[SiblingWakeups]:
        """Before ``count`` processes are forked to serve (nothing when 1): no database
        connection crosses the fork, SQLite's writers take turns between processes, and
        (SQLite) the channel over which they wake each other's polls."""
        if count == 1:
            return None
        database = self._services.database
        database.share_writes_with_other_processes()
        database.dispose()
        return SiblingWakeups(count) if database.dialect == "sqlite" else None

    def become_process(self, index: int, siblings: Optional[SiblingWakeups]) -> None:
        """After the fork, in process ``index`` (0: the first) of the server."""
        if self._services.config.effective_server_processes > 1:
            self._log = self._log.bind(process=index)
        self._siblings = siblings
        if siblings is not None:
            siblings.keep(index)
            self._services.wakeups.also_tell(siblings.send)

    async def started(self) -> None:
        """Serving has begun: polls can be woken, the background work runs."""
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._services.wakeups.bind(loop)
        if self._siblings is not None:
            self._siblings.listen(loop, self._services.wakeups.wake_here)
        self._background.start()

    async def stopping(self) -> None:
        """SIGTERM: waiting polls answer now (no command), the background work ends."""
        if self._stopping is not None:
            self._stopping.set()
        await self._run(self._background.stop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == HEALTH_PATH and scope["method"] in ("GET", "HEAD"):
            await self._health(send)
            return
        started = time.monotonic()
        outcome: Optional[Outcome] = await self._api(scope, receive)
        if outcome is not None and outcome.poll is not None:
            outcome = await self._long_poll(outcome, receive)
        if outcome is None:
            self._log.info("api request", operation="PollHostCommand", status=None, error="hung up")
            return
        await _send_json(send, outcome.status, outcome.document, JSON_CONTENT_TYPE)
        self._log.info(
            "api request",
            operation=outcome.operation or None,
            status=outcome.status,
            error=outcome.error or None,
            access_key_id=outcome.caller or None,
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    async def _run(self, work: Callable[[], Any]) -> Any:
        """``work`` on a database worker, counted in the backlog meanwhile."""
        self._backlog.enter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            self._backlog.leave()

    async def _api(self, scope: Scope, receive: Receive) -> Outcome:
        if scope["method"] != "POST" or scope["path"] != "/":
            refusal = ApiError(
                "UnknownOperationException", "Only POST / is served (and GET /health)."
            )
            return Outcome(
                400 if scope["method"] == "POST" else 405, refusal.to_document(), error=refusal.code
            )
        try:
            body = await _read_body(receive, self._services.config.max_request_bytes)
        except _TooLarge:
            refusal = ApiError(
                "SerializationException",
                f"The request body is larger than {self._services.config.max_request_bytes} bytes.",
            )
            return Outcome(413, refusal.to_document(), error=refusal.code)
        request = ReceivedRequest(
            method=scope["method"],
            raw_path=(scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=_headers(scope),
            body=body,
        )
        outcome: Outcome = await self._run(lambda: answer_api_request(self._services, request))
        return outcome

    async def _long_poll(self, outcome: Outcome, receive: Receive) -> Optional[Outcome]:
        """Wait for the host's next command; None when the agent hung up meanwhile."""
        poll = outcome.poll
        assert poll is not None and self._stopping is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._services.config.poll_wait_seconds
        gone = asyncio.ensure_future(_hang_up(receive))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while not gone.done():
                with self._services.wakeups.waiter(poll.instance or "") as woken:
                    if not await self._wait_for_turn(poll, gone, stopping, deadline - loop.time()):
                        break
                    self._log.debug("poll looks for a command", instance=poll.instance)
                    try:
                        answer = await loop.run_in_executor(
                            self._executor,
                            lambda: hand_out_to_poll(
                                self._services.database, poll, self._services.clock()
                            ),
                        )
                    except Exception as error:  # answered as any request's failure
                        return failure_outcome(error, outcome.operation, outcome.caller)
                    finally:
                        self._backlog.leave()
                    remaining = deadline - loop.time()
                    if answer is not None or remaining <= 0 or stopping.done():
                        return dataclasses.replace(outcome, document=answer or {}, poll=None)
                    waiting: Set[asyncio.Future[Any]] = {woken, gone, stopping}
                    await asyncio.wait(
                        waiting,
                        timeout=remaining,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
            if gone.done():
                return None
            return dataclasses.replace(outcome, document={}, poll=None)
        finally:
            gone.cancel()
            stopping.cancel()

    async def _wait_for_turn(
        self,
        poll: HostPoll,
        gone: asyncio.Future[Any],
        stopping: asyncio.Future[Any],
        remaining: float,
    ) -> bool:
        """Wait until the backlog lets this poll look for a command (True: it then counts
        as busy until it leaves); False when the agent hung up, the poll's time is up or
        the server is stopping first."""
        turn = self._backlog.turn()
        try:
            if not turn.done() and remaining > 0 and not stopping.done():
                self._note_held_back(poll)
                await asyncio.wait(
                    {turn, gone, stopping}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        except BaseException:
            self._backlog.give_up(turn)
            raise
        if turn.done() and not gone.done():
            return True
        self._backlog.give_up(turn)
        return False

    def _note_held_back(self, poll: HostPoll) -> None:
        backlog = self._backlog
        self._log.debug(
            "poll waits its turn",
            instance=poll.instance,
            requests_in_progress=backlog.busy,
            polls_waiting=backlog.waiting,
        )
        now = time.monotonic()
        if now - self._busy_noted_at >= BUSY_NOTE_SECONDS:
            self._busy_noted_at = now
            self._log.info(
                "busy: polls wait their turn before new commands are handed out",
                requests_in_progress=backlog.busy,
                polls_waiting=backlog.waiting,
            )

    async def _health(self, send: Send) -> None:
        def probe() -> Optional[str]:
            try:
                with self._services.database.read() as connection:
                    connection.execute(sa.text("SELECT 1"))
            except Exception as error:  # the health check reports, it never fails
                return type(error).__name__
            return None

        problem = await self._run(probe)
        status, document = (
            (200, {"status": "ok"})
            if problem is None
            else (503, {"status": "database unavailable"})
        )
        await _send_json(send, status, document, "application/json")
