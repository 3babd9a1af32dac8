"""The S3 clients a long-running agent keeps, one per distinct set of fetch settings.

Building a botocore S3 client parses the S3 service model, which costs tens of
milliseconds per download; the daemon fetches revisions for its whole life with the same
settings, so it builds each client once and reuses it (botocore clients are thread-safe,
so the part threads of one download and later downloads share it). The cache is an
object the daemon creates and passes in its fetch settings, not module state; it is
bounded, so settings that change cannot make it grow without end.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from agent.revision.fetchers.settings import FetchSettings

DEFAULT_MAX_CLIENTS = 4


class S3Clients:
    """A thread-safe, bounded cache of S3 clients keyed by the fetch settings they serve."""

    def __init__(self, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        if max_clients < 1:
            raise ValueError("an S3 client cache holds at least one client")
        self._max_clients = max_clients
        self._lock = threading.Lock()
        self._clients: OrderedDict[FetchSettings, Any] = OrderedDict()

    def client_for(self, settings: FetchSettings, build: Callable[[FetchSettings], Any]) -> Any:
        """The client built by ``build`` for settings equal to ``settings``, built now if
        there is none; the least recently used client is dropped beyond the bound."""
        # Built under the lock: two downloads starting together build one client, not two.
        with self._lock:
            client = self._clients.get(settings)
            if client is None:
                client = build(settings)
                self._clients[settings] = client
                while len(self._clients) > self._max_clients:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(settings)
            return client
