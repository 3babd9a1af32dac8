"""Holding new commands back while the server is saturated, so the calls of hosts that
already have a command are answered promptly.

A host that completes a command polls again at once, and the next command of an
in-place deployment is usually queued for it already. When the whole fleet works at once
(an AllAtOnce deployment to a thousand hosts) nothing then paces the hosts: every one of
them has a call waiting for the database workers, and each call waits behind all the
others, seconds under load, long enough for operators' requests and hosts' acknowledgements
to crawl. The long poll is the one place where waiting costs nothing: an agent expects to
wait there. So a poll hands out a new command only while fewer than ``limit`` requests are
being answered; otherwise it joins a first-come first-served queue and is let through, one
per freed turn, as requests finish. Requests other than hand-outs never wait here. With
hosts that spend their time in hooks the backlog stays short and nobody waits; when the
server is the bottleneck the fleet's total time is the same (the server was busy either
way), and each call's answer stays quick. See docs/server.md, "Under load".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Deque


class RequestBacklog:
    """Requests being answered, counted on the event loop; ``limit`` 0 holds nothing back."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._busy = 0
        self._waiting: Deque[asyncio.Future[None]] = collections.deque()

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def enter(self) -> None:
        """A request other than a hand-out starts being answered (it never waits)."""
        self._busy += 1

    def leave(self) -> None:
        """A request (or a hand-out let through by :meth:`turn`) has been answered."""
        self._busy -= 1
        self._let_through()

    def turn(self) -> asyncio.Future[None]:
        """A future done when a hand-out may start; it then counts as busy until
        :meth:`leave`. Cancel it to give up the place in the queue."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._limit == 0 or (self._busy < self._limit and not self._waiting):
            self._busy += 1
            future.set_result(None)
        else:
            self._waiting.append(future)
        return future

    def give_up(self, turn: asyncio.Future[None]) -> None:
        """The poll no longer wants its turn: counted out if it had been let through."""
        if turn.done() and not turn.cancelled():
            self.leave()
            return
        turn.cancel()
        with contextlib.suppress(ValueError):
            self._waiting.remove(turn)

    def _let_through(self) -> None:
        while self._waiting and (self._limit == 0 or self._busy < self._limit):
            future = self._waiting.popleft()
            if future.done():  # cancelled by a poll that gave up
                continue
            self._busy += 1
            future.set_result(None)
