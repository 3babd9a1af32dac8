"""A server of two processes (``server_processes: 2``): both serve the port and, on SQLite
and on PostgreSQL, a poll waiting in one process is woken by a command queued in the
other; on SQLite (the default database of the rest), SIGTERM
stops both with status 0, a copy killed unasked stops the server with a line naming it,
and the copies end with the first process. Below them, the two pieces the processes
share: the write lock and the wake-up channel, each across a real fork."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional, Set

import psutil
import pytest

from agent.aws_clients.command_service import HostCommand
from server.database.write_lock import ProcessWriteLock
from server.web.server_processes import SiblingWakeups
from tests.support.server import ServerFiles, ServerProcess
from tests.support.server_hosts import ROLE, S3_REVISION, Host, operator_client
from tests.support.waiting import wait_until

POLL_WAIT = 300
# A woken poll answers at once; one whose wake-up was lost would look again only when its
# POLL_WAIT is up, long after this.
WOKEN_WITHIN = 60
HOSTS = 8


def _server_files(base: Path, database_url: Optional[str] = None) -> ServerFiles:
    files = ServerFiles(base)
    files.write_config(
        f"poll_wait_seconds: {POLL_WAIT}\nserver_processes: 2\nverbose: true\n", database_url
    )
    return files


@pytest.fixture
def two_process_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(_server_files(tmp_path / "server")) as server:
        yield server


def _copies(server: ServerProcess) -> List[psutil.Process]:
    assert server.process is not None
    return psutil.Process(server.process.pid).children()


def _processes_answering(files: ServerFiles, operation: str) -> Set[str]:
    pattern = re.compile(r" process=(\d+)")
    lines = files.log.read_text(encoding="utf-8").splitlines()
    return {
        match.group(1)
        for line in lines
        if "api request" in line and f" operation={operation} " in line
        for match in [pattern.search(line)]
        if match
    }


def _deploy_to_all(operator: Any, hosts: List[Host]) -> str:
    operator.create_application(applicationName="two-processes")
    operator.create_deployment_group(
        applicationName="two-processes",
        deploymentGroupName="group",
        serviceRoleArn=ROLE,
        onPremisesInstanceTagFilters=[
            {"Key": "host", "Value": host.name, "Type": "KEY_AND_VALUE"} for host in hosts
        ],
        deploymentConfigName="CodeDeployDefault.AllAtOnce",
    )
    created = operator.create_deployment(
        applicationName="two-processes", deploymentGroupName="group", revision=S3_REVISION
    )
    return str(created["deploymentId"])


def test_two_processes_serve_one_fleet_and_wake_each_others_polls(
    tmp_path: Path, database_url: str
) -> None:
    with ServerProcess(_server_files(tmp_path / "server", database_url)) as server:
        _deploy_across_processes(server, server.files)


def _deploy_across_processes(server: ServerProcess, files: ServerFiles) -> None:
    assert len(_copies(server)) == 1
    operator = operator_client(files, server, "processes-operator")
    hosts = [Host(files, server, operator, f"proc-host-{n}", POLL_WAIT) for n in range(HOSTS)]
    answers: List[Optional[HostCommand]] = []
    polls = [
        threading.Thread(target=lambda host=host: answers.append(host.poll()), daemon=True)
        for host in hosts
    ]
    for poll in polls:
        poll.start()
    assert wait_until(lambda: files.log.read_text().count("poll looks for a command") >= HOSTS, 30)
    deployment_id = _deploy_to_all(operator, hosts)
    for poll in polls:
        poll.join(WOKEN_WITHIN)
    assert not any(poll.is_alive() for poll in polls), "a poll was not woken by its command"
    assert len(answers) == HOSTS and all(answer is not None for answer in answers)
    assert {answer.deployment_execution_id for answer in answers if answer} == {deployment_id}
    assert {answer.command_name for answer in answers if answer} == {"ApplicationStop"}
    assert _processes_answering(files, "PollHostCommand") == {"0", "1"}, (
        "the kernel gave every host's connection to one process: nothing crossed processes"
    )


def test_sigterm_to_the_first_process_stops_both_with_status_0(
    two_process_server: ServerProcess,
) -> None:
    copies = _copies(two_process_server)
    assert two_process_server.stop() == 0
    assert wait_until(lambda: not any(copy.is_running() for copy in copies), 30)
    assert "stopped" in two_process_server.files.log.read_text()


def test_a_copy_killed_unasked_stops_the_server_with_a_line_naming_it(
    two_process_server: ServerProcess,
) -> None:
    (copy,) = _copies(two_process_server)
    copy.kill()
    assert two_process_server.process is not None
    assert two_process_server.process.wait(60) == 1
    log = two_process_server.files.log.read_text()
    assert f"server process {copy.pid} was killed by signal 9" in log


def test_the_copies_end_with_the_first_process(two_process_server: ServerProcess) -> None:
    copies = _copies(two_process_server)
    assert two_process_server.process is not None
    two_process_server.process.kill()
    two_process_server.process.wait(30)
    assert wait_until(
        lambda: not any(copy.is_running() and copy.status() != "zombie" for copy in copies), 30
    )


def _fork(child: Any) -> int:
    """Run ``child()`` in a forked process, which exits 0 when it returned True; its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if child() else 1)
        except BaseException:
            os._exit(2)
    return pid


def _exit_status(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _forked(child: Any) -> int:
    """Run ``child()`` in a forked process; its exit status (0 when it returned True)."""
    return _exit_status(_fork(child))


def test_a_forked_process_waits_for_the_write_lock_its_parent_holds(tmp_path: Path) -> None:
    lock = ProcessWriteLock(tmp_path / "server.db.write-lock")

    def try_in_child() -> bool:
        try:
            fcntl.flock(lock._descriptor_on_disk(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True  # it had to wait: its own descriptor, not the parent's
        return False

    with lock.held_on_disk():
        assert _forked(try_in_child) == 0
    assert _forked(lambda: not try_in_child()) == 0  # free once the parent let go
    lock.close()


def test_wake_ups_reach_the_other_process_in_batches(tmp_path: Path) -> None:
    siblings = SiblingWakeups(2)
    names = [f"host-{number:04d}-" + "x" * 90 for number in range(500)]
    read_end, write_end = os.pipe()

    def child() -> bool:
        siblings.keep(1)
        heard: List[str] = []

        async def listen() -> None:
            done = asyncio.Event()

            def wake_here(batch: List[str]) -> None:
                heard.extend(batch)
                if len(heard) >= len(names):
                    done.set()

            siblings.listen(asyncio.get_running_loop(), wake_here)
            os.write(write_end, b"r")
            await asyncio.wait_for(done.wait(), 30)

        asyncio.run(listen())
        return heard == names

    pid = _fork(child)
    siblings.keep(0)
    assert os.read(read_end, 1) == b"r"
    siblings.send(names)
    assert _exit_status(pid) == 0


def test_a_burst_of_wake_ups_waits_for_the_other_process_to_drain_instead_of_dropping() -> None:
    siblings = SiblingWakeups(2)
    receiver = siblings._pairs[1][0]
    burst = 3000  # far more single-name datagrams than a socket buffer holds
    heard: List[bytes] = []

    def drain_late() -> None:
        time.sleep(0.3)  # the buffer is full by now: the sender must wait, not drop
        while len(heard) < burst:
            readable, _, _ = select.select([receiver], [], [], 10)
            if not readable:
                return
            heard.append(receiver.recv(65536))

    reader = threading.Thread(target=drain_late)
    reader.start()
    for number in range(burst):
        siblings.send([f"host-{number}"])
    reader.join(30)
    assert len(heard) == burst
