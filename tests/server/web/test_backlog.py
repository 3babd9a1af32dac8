"""Polls hold new commands back while the server is busy: the queue's own rules, then a
real server whose one busy request (a hand-out stuck behind a database lock the test
holds) makes another host's poll wait its turn and answer with no command when its time
is up, without touching the database."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any, Iterator, List, Optional

import pytest

from agent.aws_clients.command_service import HostCommand
from server.web.backlog import RequestBacklog
from tests.support.server import ServerFiles, ServerProcess
from tests.support.server_hosts import Host, deploy_to, operator_client
from tests.support.waiting import wait_until

POLL_WAIT = 2


def test_turns_are_given_first_come_first_served_as_requests_finish() -> None:
    async def scenario() -> List[str]:
        backlog = RequestBacklog(2)
        backlog.enter()
        first = backlog.turn()
        assert first.done() and backlog.busy == 2
        order: List[str] = []
        waiting = {name: backlog.turn() for name in ("second", "third")}
        for name, turn in waiting.items():
            turn.add_done_callback(lambda _, name=name: order.append(name))
        assert backlog.waiting == 2 and not any(turn.done() for turn in waiting.values())
        backlog.leave()
        await asyncio.sleep(0)
        backlog.leave()
        await asyncio.sleep(0)
        assert backlog.busy == 2 and backlog.waiting == 0
        return order

    assert asyncio.run(scenario()) == ["second", "third"]


def test_a_poll_that_gives_up_leaves_its_place_and_frees_its_turn() -> None:
    async def scenario() -> None:
        backlog = RequestBacklog(1)
        held = backlog.turn()
        gave_up = backlog.turn()
        last = backlog.turn()
        backlog.give_up(gave_up)
        assert backlog.waiting == 1 and not last.done()
        backlog.give_up(held)  # let through, then no longer wanted: counted out
        assert last.done() and backlog.busy == 1 and backlog.waiting == 0
        backlog.leave()
        assert backlog.busy == 0

    asyncio.run(scenario())


def test_a_limit_of_nought_never_holds_a_poll_back() -> None:
    async def scenario() -> None:
        backlog = RequestBacklog(0)
        for _ in range(50):
            backlog.enter()
        assert backlog.turn().done()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ServerFiles:
    files = ServerFiles(tmp_path_factory.mktemp("server"))
    files.write_config(f"poll_wait_seconds: {POLL_WAIT}\nbusy_request_limit: 1\nverbose: true\n")
    return files


@pytest.fixture
def locked_database(files: ServerFiles) -> Iterator[sqlite3.Connection]:
    """The server's SQLite database with its write lock held by the test."""
    connection = sqlite3.connect(files.data_dir / "server.db", timeout=30, isolation_level=None)
    try:
        yield connection
    finally:
        if connection.in_transaction:
            connection.rollback()
        connection.close()


def _poll_in_thread(host: Host, answers: List[Optional[HostCommand]]) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.append(host.poll()), daemon=True)
    thread.start()
    return thread


def _logged(files: ServerFiles, event: str, instance: str) -> bool:
    return any(
        event in line and f"instance={instance}" in line
        for line in files.log.read_text(encoding="utf-8").splitlines()
    )


def test_a_poll_waits_its_turn_while_the_server_is_busy_then_answers_with_none(
    files: ServerFiles, server: ServerProcess, locked_database: sqlite3.Connection
) -> None:
    operator: Any = operator_client(files, server, "busy-operator")
    busy, held = (Host(files, server, operator, name, POLL_WAIT) for name in ("busy-a", "busy-b"))
    deploy_to(operator, "busy-a", busy)
    deploy_to(operator, "busy-b", held)
    locked_database.execute("BEGIN IMMEDIATE")
    busy_answers: List[Optional[HostCommand]] = []
    busy_poll = _poll_in_thread(busy, busy_answers)
    assert wait_until(lambda: _logged(files, "poll looks for a command", "busy-a"), 30)
    held_answers: List[Optional[HostCommand]] = []
    held_poll = _poll_in_thread(held, held_answers)
    assert wait_until(lambda: _logged(files, "poll waits its turn", "busy-b"), 30)
    held_poll.join(POLL_WAIT + 20)
    assert not held_poll.is_alive(), "the held poll waited behind the busy one in the database"
    assert held_answers == [None]
    assert busy_poll.is_alive(), "the busy hand-out ended while the test held the lock"
    locked_database.rollback()
    busy_poll.join(60)
    assert busy_answers and busy_answers[0] is not None
    assert busy_answers[0].command_name == "ApplicationStop"
    command = held.poll()
    assert command is not None and command.command_name == "ApplicationStop"
    assert any("busy: polls wait their turn" in line for line in files.log.read_text().splitlines())
