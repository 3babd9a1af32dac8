"""Keys the server has looked up lately, so that a busy fleet does not read the database
and open a sealed secret on every request, while a revocation still takes effect within
``ttl_seconds`` (the configuration's ``key_cache_seconds``, 2 s by default).

Unknown ids are remembered too (briefly), so garbage ids cost one lookup per window; the
cache is bounded and starts over when full.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Optional, Tuple

from server.access_keys.store import ActiveKey

MAX_ENTRIES = 10_000


class KeyCache:
    """Thread-safe: the server's worker threads share one."""

    def __init__(
        self,
        load: Callable[[str], Optional[ActiveKey]],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: Dict[str, Tuple[float, Optional[ActiveKey]]] = {}
        self._lock = threading.Lock()

    def get(self, access_key_id: str) -> Optional[ActiveKey]:
        """The active key with this id (reads the database when not remembered)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(access_key_id)
        if entry is not None and now - entry[0] < self._ttl:
            return entry[1]
        key = self._load(access_key_id)
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[access_key_id] = (now, key)
        return key
