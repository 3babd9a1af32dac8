"""Serving one port from several processes, so that the server can use more than one core.

Python runs one thread at a time per process: with a fleet working at once a server
process is bound to a core. With ``server_processes`` above 1, ``run`` forks that many
copies less one, after it has bound the port and migrated the database and before any
thread starts; every process accepts connections on the same listening socket and has its
own database connections, worker threads and timeout sweeper (several sweepers are safe:
a command already decided is left alone). The first process also supervises: it says it
is ready (the ``listening on`` line, systemd's READY=1) once every copy serves, passes
SIGTERM on, and stops with status 1 when a copy dies unasked, so that systemd restarts the
whole server. A copy dies with the first process (parent-death signal).

A host's long poll may wait in one process while another queues its command. PostgreSQL's
NOTIFY reaches every process already; with SQLite the processes tell each other the
hosts' names over datagram socket pairs made before the fork (private to the server: no
address anyone else could send to), and take turns for SQLite's one writer on a lock file
(server/database/write_lock.py).
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set

import structlog

from agent.process_control import die_with_parent, interrupts_held
from server.errors import ServerError
from server.host_wakeups import name_payloads

log = structlog.get_logger(__name__)

# A datagram stays well under what a socket buffer takes; names are at most 100 characters.
_DATAGRAM_BUDGET = 7000
READY_TIMEOUT_SECONDS = 60.0
SEND_TIMEOUT_SECONDS = 1.0


class SiblingWakeups:
    """One datagram socket pair per process: process i reads its pair's one end, every
    process writes to the other ends of the pairs of the others."""

    def __init__(self, count: int) -> None:
        self._pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(count)]
        for receiver, sender in self._pairs:
            receiver.setblocking(False)
            # Senders are worker threads, never the event loop: a burst that fills the
            # other process's buffer waits for it to drain, up to a bound.
            sender.settimeout(SEND_TIMEOUT_SECONDS)
        self._index = 0

    def keep(self, index: int) -> None:
        """In process ``index`` after the fork: only its own receiving end stays open."""
        self._index = index
        for number, (receiver, _sender) in enumerate(self._pairs):
            if number != index:
                receiver.close()

    def send(self, names: List[str]) -> None:
        """Tell every other process (from a worker thread: it may wait while the other
        process drains a full buffer). A wake-up still not taken after
        ``SEND_TIMEOUT_SECONDS`` (a process that stopped reading) is dropped: its poll finds
        the command when it next looks."""
        for payload in name_payloads(names, _DATAGRAM_BUDGET):
            for number, (_receiver, sender) in enumerate(self._pairs):
                if number == self._index:
                    continue
                try:
                    sender.send(payload.encode("utf-8"))
                except OSError:
                    continue

    def listen(
        self, loop: asyncio.AbstractEventLoop, wake_here: Callable[[List[str]], None]
    ) -> None:
        receiver = self._pairs[self._index][0]

        def read() -> None:
            while True:
                try:
                    payload = receiver.recv(65536)
                except (BlockingIOError, InterruptedError):
                    return
                wake_here(payload.decode("utf-8", "replace").split("\n"))

        loop.add_reader(receiver.fileno(), read)


@dataclass
class ServerProcesses:
    """The copies the first process forked: their pids and their ready pipes."""

    index: int = 0
    children: List[int] = field(default_factory=list)
    ready_pipes: Dict[int, int] = field(default_factory=dict)  # pid -> read end (first)
    ready_pipe: Optional[int] = None  # in a copy: the write end
    failures: List[str] = field(default_factory=list)
    ended: Set[int] = field(default_factory=set)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def is_first(self) -> bool:
        return self.index == 0


def fork_server_processes(count: int) -> ServerProcesses:
    """Fork ``count - 1`` copies of this process; returns in each of them (and in the
    first) what it is. Must run before any thread starts."""
    processes = ServerProcesses()
    parent = os.getpid()
    for index in range(1, count):
        read_end, write_end = os.pipe()
        with interrupts_held() as previous_mask:
            pid = os.fork()
            if pid == 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        if pid == 0:
            die_with_parent(parent, signal.SIGTERM)
            os.close(read_end)
            for other in processes.ready_pipes.values():
                os.close(other)
            return ServerProcesses(index=index, ready_pipe=write_end)
        os.close(write_end)
        processes.children.append(pid)
        processes.ready_pipes[pid] = read_end
    return processes


def tell_first_process_ready(processes: ServerProcesses) -> None:
    """In a copy, once it serves."""
    if processes.ready_pipe is not None:
        os.write(processes.ready_pipe, b"1")
        os.close(processes.ready_pipe)
        processes.ready_pipe = None


def wait_for_copies_ready(
    processes: ServerProcesses, timeout: float = READY_TIMEOUT_SECONDS
) -> None:
    """In the first process: every copy serves, or one line on the first that does not."""
    deadline = time.monotonic() + timeout
    waiting = processes.ready_pipes
    while waiting:
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select(list(waiting.values()), [], [], max(0.0, remaining))
        if not readable:
            raise ServerError(f"server process {min(waiting)} did not start within {timeout:g} s")
        for pid, read_end in list(waiting.items()):
            if read_end in readable:
                if os.read(read_end, 1) != b"1":
                    raise ServerError(f"server process {pid} stopped before it served")
                os.close(read_end)
                del waiting[pid]


def watch_copies(
    processes: ServerProcesses, on_unasked_exit: Callable[[], None]
) -> List[threading.Thread]:
    """In the first process: a thread per copy that waits for its end. A copy that ends
    while the server is not stopping, or not with status 0, is a failure (a line, and
    ``on_unasked_exit()``)."""

    def watch(pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        processes.ended.add(pid)
        code = os.waitstatus_to_exitcode(status)
        if processes.stopping.is_set() and code == 0:
            return
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        processes.failures.append(f"server process {pid} {how}")
        log.error("a server process ended unasked: stopping the server", pid=pid, status=code)
        on_unasked_exit()

    threads = [
        threading.Thread(target=watch, args=(pid,), name=f"watch-{pid}", daemon=True)
        for pid in processes.children
    ]
    for thread in threads:
        thread.start()
    return threads


def stop_copies(processes: ServerProcesses) -> None:
    """In the first process, when it stops: SIGTERM to every copy still running."""
    if processes.stopping.is_set():
        return  # told already (shutdown, then the way out of serving)
    processes.stopping.set()
    for pid in processes.children:
        if pid in processes.ended:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
