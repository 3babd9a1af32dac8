"""Which registered instance a host key's ARN is, remembered for a few seconds.

Every long poll starts by finding the instance its host identifies as, a transaction of
its own: with a fleet polling, three of them for each command handed out. The answer
changes only when an instance is registered or deregistered, so it is kept for
``key_cache_seconds``, as keys are (server/request_auth/key_cache.py): a deregistration
reaches a running server's polls within that time, as a revocation does.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Optional, Tuple

MAX_ENTRIES = 10_000


class HostInstances:
    """Thread-safe: the server's worker threads share one. ``ttl_seconds`` 0 keeps
    nothing."""

    def __init__(self, ttl_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: Dict[str, Tuple[float, Optional[str]]] = {}
        self._lock = threading.Lock()

    def get(self, host_arn: str, read: Callable[[], Optional[str]]) -> Optional[str]:
        """The instance of ``host_arn``; ``read`` (which reads the database) when it is not
        remembered or was read more than ``ttl_seconds`` ago."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(host_arn)
        if entry is not None and now - entry[0] < self._ttl:
            return entry[1]
        instance = read()
        if self._ttl > 0:
            with self._lock:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[host_arn] = (now, instance)
        return instance
