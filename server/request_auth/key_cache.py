"""Keys the server has looked up, so that a busy fleet does not read the database and open
a sealed secret on every request, while a revocation still takes effect within
``ttl_seconds`` (the configuration's ``key_cache_seconds``, 2 s by default).

An opened key is kept until a key is revoked: once per window one request asks the
database for its revocations (their count and latest time, one small query), and any
change empties the cache. A fleet of 1,000 hosts thus reads each host's key once, not
once per host per window. Unknown ids are remembered for one window only, so a key made
since is found; the cache is bounded and starts over when full.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable, Dict, Hashable, Optional, Tuple

from server.access_keys.store import ActiveKey

MAX_ENTRIES = 10_000


class KeyCache:
    """Thread-safe: the server's worker threads share one."""

    def __init__(
        self,
        load: Callable[[str], Optional[ActiveKey]],
        revocations: Callable[[], Hashable],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._revocations = revocations
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: Dict[str, Tuple[float, Optional[ActiveKey]]] = {}
        self._lock = threading.Lock()
        self._checked_at = -math.inf
        self._seen_revocations: Optional[Hashable] = None
        # Bumped each time the cache is emptied: a key loaded before that is not kept.
        self._epoch = 0

    def get(self, access_key_id: str) -> Optional[ActiveKey]:
        """The active key with this id (reads the database when not remembered)."""
        now = self._clock()
        self._forget_all_after_a_revocation(now)
        with self._lock:
            entry = self._entries.get(access_key_id)
            epoch = self._epoch
        if entry is not None and (entry[1] is not None or now - entry[0] < self._ttl):
            return entry[1]
        key = self._load(access_key_id)
        with self._lock:
            if epoch == self._epoch:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[access_key_id] = (now, key)
        return key

    def _forget_all_after_a_revocation(self, now: float) -> None:
        with self._lock:
            if now - self._checked_at < self._ttl:
                return
            self._checked_at = now  # one request per window asks
        state = self._revocations()
        with self._lock:
            if state != self._seen_revocations:
                self._seen_revocations = state
                self._entries.clear()
                self._epoch += 1
